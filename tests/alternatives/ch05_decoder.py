"""Correct answers to chapter 5, written the ways students write them
(``ALTERNATIVES`` maps an exercise to its variants)."""

import math

import torch
from torch import nn

from transformer_course.attention import causal_mask
from transformer_course.encoder import Encoder, FeedForward, LayerNorm
from transformer_course.multi_head import MultiHeadAttention
from transformer_course.positional import PositionalEncoding


class DecoderLayerBranches(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False,
                 eps=1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model, eps=eps)
        self.norm2 = nn.LayerNorm(d_model, eps=eps)
        self.norm3 = nn.LayerNorm(d_model, eps=eps)

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        if not self.norm_first:
            x = self.norm1(x + self.self_attn(x, x, x, tgt_mask))
            x = self.norm2(x + self.cross_attn(x, memory, memory, memory_mask))
            return self.norm3(x + self.ff(x))
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, tgt_mask)
        h = self.norm2(x)
        x = x + self.cross_attn(h, memory, memory, memory_mask)
        return x + self.ff(self.norm3(x))


class DecoderLayerSublayers(nn.Module):
    """The three sub-layers as a list of (norm, function) pairs."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False,
                 eps=1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = LayerNorm(d_model, eps)
        self.norm2 = LayerNorm(d_model, eps)
        self.norm3 = LayerNorm(d_model, eps)

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        steps = [
            (self.norm1, lambda h: self.self_attn(h, h, h, tgt_mask)),
            (self.norm2, lambda h: self.cross_attn(h, memory, memory, memory_mask)),
            (self.norm3, self.ff),
        ]
        for norm, fn in steps:
            x = x + fn(norm(x)) if self.norm_first else norm(x + fn(x))
        return x


class DecoderLoop(nn.Module):
    def __init__(self, vocab_size, d_model, n_heads, d_ff, n_layers, max_len=5000, dropout=0.0,
                 activation="relu", norm_first=False):
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model, max_len, dropout)
        self.layers = nn.ModuleList([
            DecoderLayerBranches(d_model, n_heads, d_ff, dropout, activation, norm_first)
            for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d_model) if norm_first else None

    def forward(self, tgt_ids, memory, tgt_mask=None, memory_mask=None):
        length = tgt_ids.shape[1]
        if tgt_mask is None:
            tgt_mask = torch.tril(torch.ones(length, length)).bool()
        x = self.pos(self.embed(tgt_ids) * math.sqrt(self.d_model))
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, memory_mask)
        return x if self.norm is None else self.norm(x)


class DecoderSequential(nn.Module):
    def __init__(self, vocab_size, d_model, n_heads, d_ff, n_layers, max_len=5000, dropout=0.0,
                 activation="relu", norm_first=False):
        super().__init__()
        self.scale = d_model ** 0.5
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model, max_len, dropout)
        self.layers = nn.ModuleList(
            DecoderLayerSublayers(d_model, n_heads, d_ff, dropout, activation, norm_first)
            for _ in range(n_layers))
        if norm_first:
            self.norm = LayerNorm(d_model)
        self.norm_first = norm_first

    def forward(self, tgt_ids, memory, tgt_mask=None, memory_mask=None):
        mask = causal_mask(tgt_ids.size(1)) if tgt_mask is None else tgt_mask
        x = self.embed(tgt_ids) * self.scale
        x = self.pos(x)
        for layer in self.layers:
            x = layer(x, memory, mask, memory_mask)
        return self.norm(x) if self.norm_first else x


class TransformerDirect(nn.Module):
    def __init__(self, src_vocab_size, tgt_vocab_size, d_model=128, n_heads=4, d_ff=512,
                 n_layers=2, max_len=512, dropout=0.0):
        super().__init__()
        self.encoder = Encoder(src_vocab_size, d_model, n_heads, d_ff, n_layers, max_len, dropout)
        self.decoder = DecoderLoop(tgt_vocab_size, d_model, n_heads, d_ff, n_layers, max_len, dropout)
        self.generator = nn.Linear(d_model, tgt_vocab_size)

    def encode(self, src, src_mask=None):
        return self.encoder(src, src_mask)

    def decode(self, tgt, memory, src_mask=None, tgt_mask=None):
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=src_mask)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None):
        memory = self.encoder(src, src_mask)
        states = self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=src_mask)
        return self.generator(states)


class TransformerComposed(nn.Module):
    def __init__(self, src_vocab_size, tgt_vocab_size, d_model=128, n_heads=4, d_ff=512,
                 n_layers=2, max_len=512, dropout=0.0):
        super().__init__()
        self.encoder = Encoder(src_vocab_size, d_model, n_heads, d_ff, n_layers, max_len, dropout)
        self.decoder = DecoderSequential(tgt_vocab_size, d_model, n_heads, d_ff, n_layers, max_len,
                                         dropout)
        self.generator = nn.Linear(d_model, tgt_vocab_size)

    def encode(self, src, src_mask=None):
        return self.encoder(src, mask=src_mask)

    def decode(self, tgt, memory, src_mask=None, tgt_mask=None):
        return self.decoder(tgt, memory, tgt_mask, src_mask)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None):
        return self.generator(self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask))


@torch.no_grad()
def greedy_decode_list(model, src, max_len, bos_id, eos_id, src_mask=None):
    """Rows kept in a Python list of finished flags; stops when all are done."""
    memory = model.encode(src, src_mask)
    ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
    done = [False] * src.shape[0]
    while ys.shape[1] < max_len and not all(done):
        logits = model.generator(model.decode(ys, memory, src_mask))
        next_ids = logits[:, -1, :].argmax(dim=-1)
        for row in range(len(done)):
            if done[row]:
                next_ids[row] = eos_id
            elif next_ids[row] == eos_id:
                done[row] = True
        ys = torch.cat([ys, next_ids.unsqueeze(1)], dim=1)
    return ys


@torch.no_grad()
def greedy_decode_where(model, src, max_len, bos_id, eos_id, src_mask=None):
    """A fixed-size output filled step by step, cut where every row has ended."""
    memory = model.encode(src, src_mask)
    out = torch.full((src.size(0), max_len), eos_id, dtype=torch.long)
    out[:, 0] = bos_id
    ended = torch.zeros(src.size(0), dtype=torch.bool)
    for t in range(1, max_len):
        states = model.decode(out[:, :t], memory, src_mask)
        token = model.generator(states[:, -1]).argmax(-1)
        out[:, t] = torch.where(ended, torch.full_like(token, eos_id), token)
        ended = ended | (token == eos_id)
        if bool(ended.all()):
            return out[:, : t + 1]
    return out


ALTERNATIVES = {
    "DecoderLayer": [DecoderLayerBranches, DecoderLayerSublayers],
    "Decoder": [DecoderLoop, DecoderSequential],
    "Transformer": [TransformerDirect, TransformerComposed],
    "greedy_decode": [greedy_decode_list, greedy_decode_where],
}
