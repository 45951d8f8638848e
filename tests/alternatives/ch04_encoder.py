"""Correct answers to chapter 4, written the ways students write them
(``ALTERNATIVES`` maps an exercise to its variants)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from transformer_course.multi_head import MultiHeadAttention
from transformer_course.positional import PositionalEncoding


class LayerNormVarMean(nn.Module):
    """``torch.var_mean`` with ``correction=0`` and ``rsqrt``."""

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class LayerNormSquares(nn.Module):
    """The variance as the mean of squared deviations, written out."""

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        centered = x - x.mean(-1, keepdim=True)
        std = (centered.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        return self.weight * (centered / std) + self.bias


class FeedForwardSequential(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.0, activation="relu"):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.dropout(self.act(self.linear1(x))))


class FeedForwardFormula(nn.Module):
    """GELU written with erf, ReLU with clamp."""

    def __init__(self, d_model, d_ff, dropout=0.0, activation="relu"):
        super().__init__()
        self.activation = activation
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        h = x @ self.linear1.weight.T + self.linear1.bias
        if self.activation == "relu":
            h = h.clamp(min=0)
        else:
            h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
        return h @ self.linear2.weight.T + self.linear2.bias


class EncoderLayerBranches(nn.Module):
    """Two separate code paths, the chapter's own sub-layers written inline."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False,
                 eps=1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForwardSequential(d_model, d_ff, dropout, activation)
        self.norm1 = LayerNormVarMean(d_model, eps)
        self.norm2 = LayerNormVarMean(d_model, eps)

    def forward(self, x, mask=None):
        if self.norm_first:
            y = self.norm1(x)
            x = x + self.self_attn(y, y, y, mask)
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self.self_attn(x, x, x, mask))
        return self.norm2(x + self.ff(x))


class EncoderLayerTorchNorm(nn.Module):
    """PyTorch's own LayerNorm (same parameter names) and a sub-layer helper."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False,
                 eps=1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForwardFormula(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model, eps=eps)
        self.norm2 = nn.LayerNorm(d_model, eps=eps)

    def _sublayer(self, x, norm, fn):
        return x + fn(norm(x)) if self.norm_first else norm(x + fn(x))

    def forward(self, x, mask=None):
        x = self._sublayer(x, self.norm1, lambda h: self.self_attn(h, h, h, mask))
        return self._sublayer(x, self.norm2, self.ff)


class EncoderLoop(nn.Module):
    def __init__(self, vocab_size, d_model, n_heads, d_ff, n_layers, max_len=5000, dropout=0.0,
                 activation="relu", norm_first=False):
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model, max_len, dropout)
        self.layers = nn.ModuleList([
            EncoderLayerBranches(d_model, n_heads, d_ff, dropout, activation, norm_first)
            for _ in range(n_layers)])
        if norm_first:
            self.norm = LayerNormSquares(d_model)
        self.norm_first = norm_first

    def forward(self, src_ids, mask=None):
        x = self.embed(src_ids) * self.d_model ** 0.5
        x = self.pos(x)
        for layer in self.layers:
            x = layer(x, mask)
        if self.norm_first:
            x = self.norm(x)
        return x


class EncoderFunctional(nn.Module):
    """Embedding through ``F.embedding``, positions added by hand."""

    def __init__(self, vocab_size, d_model, n_heads, d_ff, n_layers, max_len=5000, dropout=0.0,
                 activation="relu", norm_first=False):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model, max_len, dropout)
        self.layers = nn.ModuleList(
            EncoderLayerTorchNorm(d_model, n_heads, d_ff, dropout, activation, norm_first)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()

    def forward(self, src_ids, mask=None):
        x = F.embedding(src_ids, self.embed.weight) * math.sqrt(self.embed.embedding_dim)
        x = x + self.pos.pe[: src_ids.size(1)]
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


ALTERNATIVES = {
    "LayerNorm": [LayerNormVarMean, LayerNormSquares],
    "FeedForward": [FeedForwardSequential, FeedForwardFormula],
    "EncoderLayer": [EncoderLayerBranches, EncoderLayerTorchNorm],
    "Encoder": [EncoderLoop, EncoderFunctional],
}
