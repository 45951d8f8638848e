"""Correct answers to chapter 8, written the ways students write them
(``ALTERNATIVES`` maps an exercise to its variants)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from transformer_course.positional import apply_rotary


class RMSNormNorm(nn.Module):
    """The RMS as the vector norm divided by sqrt(D)."""

    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        mean_square = x.norm(dim=-1, keepdim=True) ** 2 / x.size(-1)
        return self.weight * x / torch.sqrt(mean_square + self.eps)


class RMSNormSquare(nn.Module):
    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return x * (x * x).mean(-1, keepdim=True).add(self.eps).rsqrt() * self.weight


class SwiGLUSigmoid(nn.Module):
    """SiLU written as x * sigmoid(x)."""

    def __init__(self, d_model, d_ff):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        gate = self.gate_proj(x)
        return self.down_proj(gate * torch.sigmoid(gate) * self.up_proj(x))


class SwiGLUFused(nn.Module):
    """Both branches in one product with the stacked weights."""

    def __init__(self, d_model, d_ff):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        both = x @ torch.cat([self.gate_proj.weight, self.up_proj.weight]).T
        gate, up = both.chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_proj.weight)


def repeat_kv_interleave(x, n_rep):
    return torch.repeat_interleave(x, n_rep, dim=1)


def repeat_kv_index(x, n_rep):
    heads = torch.arange(x.size(1) * n_rep) // n_rep
    return x[:, heads]


class GroupedQueryAttentionEinsum(nn.Module):
    """Query heads grouped by a reshape instead of repeating keys and values."""

    def __init__(self, d_model, n_heads, n_kv_heads, rope_base=10000.0):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.d_head = d_model // n_heads
        self.rope_base = rope_base
        self.q_proj = nn.Linear(d_model, n_heads * self.d_head, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=False)
        self.o_proj = nn.Linear(n_heads * self.d_head, d_model, bias=False)

    def forward(self, x, positions=None):
        b, length, _ = x.shape
        group = self.n_heads // self.n_kv_heads
        q = self.q_proj(x).view(b, length, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k_proj(x).view(b, length, self.n_kv_heads, self.d_head).transpose(1, 2)
        v = self.v_proj(x).view(b, length, self.n_kv_heads, self.d_head).transpose(1, 2)
        q = apply_rotary(q, positions, self.rope_base)
        k = apply_rotary(k, positions, self.rope_base)
        q = q.view(b, self.n_kv_heads, group, length, self.d_head)
        scores = torch.einsum("bkgqd,bkld->bkgql", q, k) / math.sqrt(self.d_head)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        out = torch.einsum("bkgql,bkld->bkgqd", scores.softmax(-1), v)
        out = out.reshape(b, self.n_heads, length, self.d_head).transpose(1, 2)
        return self.o_proj(out.reshape(b, length, -1))


class GroupedQueryAttentionTorch(nn.Module):
    """PyTorch's attention with ``is_causal`` after repeating the key/value heads."""

    def __init__(self, d_model, n_heads, n_kv_heads, rope_base=10000.0):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.rope_base = rope_base
        d_head = d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * d_head, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * d_head, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * d_head, bias=False)
        self.o_proj = nn.Linear(n_heads * d_head, d_model, bias=False)

    def forward(self, x, positions=None):
        q = self.q_proj(x).unflatten(-1, (self.n_heads, -1)).transpose(1, 2)
        k = self.k_proj(x).unflatten(-1, (self.n_kv_heads, -1)).transpose(1, 2)
        v = self.v_proj(x).unflatten(-1, (self.n_kv_heads, -1)).transpose(1, 2)
        if positions is None:
            positions = torch.arange(x.size(1))
        q, k = apply_rotary(q, positions, self.rope_base), apply_rotary(k, positions, self.rope_base)
        rep = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).flatten(2))


class LlamaBlockResidual(nn.Module):
    """A helper for "x + sublayer(norm(x))", keyword arguments, parts written above."""

    def __init__(self, config):
        super().__init__()
        self.input_layernorm = RMSNormNorm(config.d_model, config.eps)
        self.self_attn = GroupedQueryAttentionTorch(config.d_model, config.n_heads,
                                                    config.n_kv_heads, config.rope_base)
        self.post_attention_layernorm = RMSNormNorm(config.d_model, config.eps)
        self.mlp = SwiGLUSigmoid(config.d_model, config.d_ff)

    @staticmethod
    def _residual(x, norm, sublayer):
        return x + sublayer(norm(x))

    def forward(self, x, positions=None, cache=None):
        x = self._residual(x, self.input_layernorm,
                           lambda h: self.self_attn(h, positions=positions))
        return self._residual(x, self.post_attention_layernorm, self.mlp)


class LlamaBlockAdd(nn.Module):
    """torch.add with named intermediates; the other written parts."""

    def __init__(self, config):
        super().__init__()
        d = config.d_model
        self.self_attn = GroupedQueryAttentionEinsum(d, config.n_heads, config.n_kv_heads,
                                                     rope_base=config.rope_base)
        self.mlp = SwiGLUFused(d, config.d_ff)
        self.input_layernorm = RMSNormSquare(d, eps=config.eps)
        self.post_attention_layernorm = RMSNormSquare(d, eps=config.eps)

    def forward(self, x, positions=None, cache=None):
        attended = self.self_attn(self.input_layernorm(x), positions)
        hidden = torch.add(x, attended)
        return torch.add(hidden, self.mlp(self.post_attention_layernorm(hidden)))


class LlamaLinear(nn.Module):
    """The head as F.linear with the embedding's matrix when tied; blocks in a list."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList([LlamaBlockResidual(config) for _ in range(config.n_layers)])
        self.norm = RMSNormNorm(config.d_model, config.eps)
        if not config.tie_embeddings:
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, idx, cache=None):
        x = self.embed_tokens(idx)
        positions = torch.arange(idx.shape[1])
        for layer in self.layers:
            x = layer(x, positions=positions)
        head = self.embed_tokens.weight if self.config.tie_embeddings else self.lm_head.weight
        return F.linear(self.norm(x), head)


class LlamaOneHot(nn.Module):
    """Embedding as a one-hot product with the table; the head tied after creation."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(LlamaBlockAdd(config) for _ in range(config.n_layers))
        self.norm = RMSNormSquare(config.d_model, eps=config.eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def forward(self, idx, cache=None):
        one_hot = F.one_hot(idx, self.config.vocab_size).to(self.embed_tokens.weight.dtype)
        x = one_hot @ self.embed_tokens.weight
        for layer in self.layers:
            x = layer(x, torch.arange(x.size(1)))
        return self.lm_head(self.norm(x))


ALTERNATIVES = {
    "RMSNorm": [RMSNormNorm, RMSNormSquare],
    "SwiGLU": [SwiGLUSigmoid, SwiGLUFused],
    "repeat_kv": [repeat_kv_interleave, repeat_kv_index],
    "GroupedQueryAttention": [GroupedQueryAttentionEinsum, GroupedQueryAttentionTorch],
    "LlamaBlock": [LlamaBlockResidual, LlamaBlockAdd],
    "Llama": [LlamaLinear, LlamaOneHot],
}
