"""Correct answers to chapter 2, written the ways students write them
(``ALTERNATIVES`` maps an exercise to its variants)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from transformer_course.attention import scaled_dot_product_attention


def split_heads_reshape_permute(x, n_heads):
    b, length, d = x.shape
    return x.reshape(b, length, n_heads, d // n_heads).permute(0, 2, 1, 3)


def split_heads_stack(x, n_heads):
    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)


def merge_heads_permute_contiguous(x):
    b, h, length, dh = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(b, length, h * dh)


def merge_heads_cat(x):
    return torch.cat(x.unbind(dim=1), dim=-1)


class MultiHeadAttentionEinsum(nn.Module):
    """Heads as an extra einsum index; the mask broadcast with ``view``."""

    def __init__(self, d_model, n_heads, dropout=0.0, bias=True):
        super().__init__()
        self.d_model, self.n_heads = d_model, n_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.attn_weights = None

    def forward(self, query, key, value, mask=None):
        b, lq, d = query.shape
        lk = key.size(1)
        dh = d // self.n_heads
        q = self.w_q(query).view(b, lq, self.n_heads, dh)
        k = self.w_k(key).view(b, lk, self.n_heads, dh)
        v = self.w_v(value).view(b, lk, self.n_heads, dh)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(dh)
        if mask is not None:
            if mask.dim() == 3:
                mask = mask[:, None]
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        self.attn_weights = weights.detach()
        out = torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, lq, d)
        return self.w_o(out)


class MultiHeadAttentionFunctional(nn.Module):
    """Projections through ``F.linear``, a head loop, and the chapter 1 attention."""

    def __init__(self, d_model, n_heads, dropout=0.0, bias=True):
        super().__init__()
        self.d_model, self.n_heads = d_model, n_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.attn_weights = None

    def forward(self, query, key, value, mask=None):
        dh = self.d_model // self.n_heads
        q = F.linear(query, self.w_q.weight, self.w_q.bias)
        k = F.linear(key, self.w_k.weight, self.w_k.bias)
        v = F.linear(value, self.w_v.weight, self.w_v.bias)
        outs, weights = [], []
        for h in range(self.n_heads):
            part = slice(h * dh, (h + 1) * dh)
            out, w = scaled_dot_product_attention(q[..., part], k[..., part], v[..., part], mask)
            outs.append(out)
            weights.append(w)
        self.attn_weights = torch.stack(weights, dim=1).detach()
        return self.w_o(torch.cat(outs, dim=-1))


ALTERNATIVES = {
    "split_heads": [split_heads_reshape_permute, split_heads_stack],
    "merge_heads": [merge_heads_permute_contiguous, merge_heads_cat],
    "MultiHeadAttention": [MultiHeadAttentionEinsum, MultiHeadAttentionFunctional],
}
