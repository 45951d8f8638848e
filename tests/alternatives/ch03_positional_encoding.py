"""Correct answers to chapter 3, written the ways students write them
(``ALTERNATIVES`` maps an exercise to its variants)."""

import math

import torch
from torch import nn


def sinusoidal_positional_encoding_exp_log(max_len, d_model):
    position = torch.arange(max_len).unsqueeze(1).float()
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


def sinusoidal_positional_encoding_loops(max_len, d_model):
    pe = torch.zeros(max_len, d_model)
    for pos in range(max_len):
        for i in range(0, d_model, 2):
            angle = pos / (10000 ** (i / d_model))
            pe[pos, i] = math.sin(angle)
            pe[pos, i + 1] = math.cos(angle)
    return pe


def sinusoidal_positional_encoding_stack(max_len, d_model):
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    freq = torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    angle = pos * freq
    return torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(max_len, d_model)


class PositionalEncodingExpLog(nn.Module):
    def __init__(self, d_model, max_len=5000, dropout=0.0):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.register_buffer("pe", sinusoidal_positional_encoding_exp_log(max_len, d_model))

    def forward(self, x):
        return self.dropout(x + self.pe[: x.size(1), :])


class PositionalEncodingLoops(nn.Module):
    def __init__(self, d_model, max_len=5000, dropout=0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_positional_encoding_stack(max_len, d_model))

    def forward(self, x):
        length = x.shape[1]
        return self.drop(x + self.pe[:length].unsqueeze(0).type_as(x))


class LearnedPositionalEmbeddingParameter(nn.Module):
    def __init__(self, max_len, d_model):
        super().__init__()
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, x):
        if x.size(1) > self.embedding.num_embeddings:
            raise ValueError(f"{x.size(1)} positions, only {self.embedding.num_embeddings} learned")
        return x + self.embedding.weight[: x.size(1)]


class LearnedPositionalEmbeddingExpand(nn.Module):
    def __init__(self, max_len, d_model):
        super().__init__()
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, x):
        batch, length, _ = x.shape
        positions = torch.arange(length).unsqueeze(0).expand(batch, length)
        return x + self.embedding(positions)


def apply_rotary_complex(x, positions=None, base=10000.0):
    d = x.size(-1)
    if positions is None:
        positions = torch.arange(x.size(-2))
    real = torch.float64 if x.dtype == torch.float64 else torch.float32
    freqs = base ** (-torch.arange(0, d, 2, dtype=real) / d)
    angle = positions.to(real)[..., None] * freqs
    rotation = torch.polar(torch.ones_like(angle), angle)
    pairs = torch.complex(x[..., : d // 2].to(real), x[..., d // 2:].to(real))
    turned = pairs * rotation
    return torch.cat([turned.real, turned.imag], dim=-1).to(x.dtype)


def apply_rotary_halves(x, positions=None, base=10000.0):
    half = x.shape[-1] // 2
    if positions is None:
        positions = torch.arange(x.shape[-2], device=x.device)
    inv_freq = 1.0 / (base ** (torch.arange(half, dtype=torch.float32) * 2 / x.shape[-1]))
    if x.dtype == torch.float64:
        inv_freq = inv_freq.double()
    angles = positions.unsqueeze(-1).to(inv_freq.dtype) * inv_freq
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


ALTERNATIVES = {
    "sinusoidal_positional_encoding": [sinusoidal_positional_encoding_exp_log,
                                       sinusoidal_positional_encoding_loops,
                                       sinusoidal_positional_encoding_stack],
    "PositionalEncoding": [PositionalEncodingExpLog, PositionalEncodingLoops],
    "LearnedPositionalEmbedding": [LearnedPositionalEmbeddingParameter,
                                   LearnedPositionalEmbeddingExpand],
    "apply_rotary": [apply_rotary_complex, apply_rotary_halves],
}
