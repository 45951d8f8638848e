"""Chapter 8: the parts that turned the 2017 Transformer into today's open LLMs.

RMSNorm, rotary positions (chapter 3's :func:`apply_rotary`), the gated SwiGLU
feed-forward and grouped-query attention, assembled into a pre-norm, Llama-style decoder
with a KV cache. Parameter names follow ``transformers``' Llama, so real weights load by
name (see :mod:`transformer_course.pretrained.smollm2`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_course.attention import scaled_dot_product_attention
from transformer_course.kv_cache import KVCache
from transformer_course.multi_head import merge_heads, split_heads
from transformer_course.positional import apply_rotary


class RMSNorm(nn.Module):
    """Root-mean-square normalization: ``x / sqrt(mean(x^2) + eps) * weight``.

    Unlike LayerNorm it neither subtracts the mean nor adds a bias: it only rescales
    each vector to unit RMS and then applies a learned per-feature gain.

    Args:
        d_model: size ``D`` of the normalized (last) dimension.
        eps: added to the mean square, inside the square root.
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        ### BEGIN SOLUTION
        self.weight = nn.Parameter(torch.ones(d_model))
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """``x (..., D) -> (..., D)``, each vector scaled to unit RMS, times ``weight``."""
        ### BEGIN SOLUTION
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return x * inv_rms * self.weight
        ### END SOLUTION


class SwiGLU(nn.Module):
    """Gated feed-forward network: ``down_proj(silu(gate_proj(x)) * up_proj(x))``.

    The gate branch, passed through SiLU, decides feature by feature how much of the
    (linear) up branch gets through. No biases, as in Llama.

    Args:
        d_model: model width ``D``.
        d_ff: hidden width of both branches.
    """

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """``x (..., D) -> (..., D)``."""
        ### BEGIN SOLUTION
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        ### END SOLUTION


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Repeat each key/value head ``n_rep`` times so that query heads can share it.

    Head ``j`` of the result is head ``j // n_rep`` of the input: the copies of one head
    sit next to each other (``[k0, k0, k1, k1]`` for ``n_rep=2``), so query heads
    ``g*n_rep .. (g+1)*n_rep - 1`` form group ``g``.

    Args:
        x: ``(B, H_kv, L, Dh)``.
        n_rep: copies per head (``n_heads // n_kv_heads``).

    Returns:
        ``(B, H_kv * n_rep, L, Dh)``.
    """
    ### BEGIN SOLUTION
    batch, n_kv_heads, length, d_head = x.shape
    if n_rep == 1:
        return x
    x = x[:, :, None].expand(batch, n_kv_heads, n_rep, length, d_head)
    return x.reshape(batch, n_kv_heads * n_rep, length, d_head)
    ### END SOLUTION


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with rotary positions and fewer key/value heads than query
    heads (GQA). ``n_kv_heads == n_heads`` is ordinary multi-head attention;
    ``n_kv_heads == 1`` is multi-query attention.

    Args:
        d_model: model width ``D``; ``Dh = D // n_heads``.
        n_heads: query heads ``H``.
        n_kv_heads: key/value heads ``H_kv``; ``H`` must be a multiple of it.
        rope_base: frequency base of the rotary embedding.
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, rope_base: float = 10000.0):
        super().__init__()
        if d_model % n_heads or n_heads % n_kv_heads:
            raise ValueError(
                f"d_model={d_model} must be divisible by n_heads={n_heads}, and n_heads by "
                f"n_kv_heads={n_kv_heads}"
            )
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.d_head = d_model // n_heads
        self.rope_base = rope_base
        ### BEGIN SOLUTION
        self.q_proj = nn.Linear(d_model, n_heads * self.d_head, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=False)
        self.o_proj = nn.Linear(n_heads * self.d_head, d_model, bias=False)
        ### END SOLUTION

    def forward(
        self, x: Tensor, positions: Tensor | None = None, cache: KVCache | None = None
    ) -> Tensor:
        """Attend causally over ``x`` (and over what ``cache`` holds).

        Args:
            x: ``(B, L, D)``, the new tokens.
            positions: ``(L,)`` their positions, for the rotary embedding; defaults to
                ``0..L-1``.
            cache: when given, the new keys and values are appended to it, and the new
                queries attend to every cached position as well.

        Returns:
            ``(B, L, D)``.
        """
        ### BEGIN SOLUTION
        q = split_heads(self.q_proj(x), self.n_heads)  # (B, H, L, Dh)
        k = split_heads(self.k_proj(x), self.n_kv_heads)  # (B, H_kv, L, Dh)
        v = split_heads(self.v_proj(x), self.n_kv_heads)
        q = apply_rotary(q, positions, base=self.rope_base)
        k = apply_rotary(k, positions, base=self.rope_base)  # values carry no position
        if cache is not None:
            k, v = cache.update(k, v)
        n_rep = self.n_heads // self.n_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        # Query i is the (L_k - L_q + i)-th position: it may see keys up to that one.
        l_q, l_k = q.size(-2), k.size(-2)
        mask = torch.ones(l_q, l_k, dtype=torch.bool, device=x.device).tril(l_k - l_q)
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        return self.o_proj(merge_heads(out))
        ### END SOLUTION


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class LlamaConfig:
    """Sizes of a Llama-style decoder (the defaults are a toy model for tests)."""

    vocab_size: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    d_ff: int = 172
    rope_base: float = 10000.0
    eps: float = 1e-5
    tie_embeddings: bool = True


class LlamaBlock(nn.Module):
    """Pre-norm decoder block: ``x = x + attn(norm(x))``, then ``x = x + mlp(norm(x))``.

    Built from this chapter's parts, by the names they have where the block is defined
    (in the notebook: your ``RMSNorm``, ``GroupedQueryAttention`` and ``SwiGLU``). The
    sub-module names are those of ``transformers``' Llama, so real weights load by name.

    Args:
        config: the sizes; the block uses ``d_model``, ``n_heads``, ``n_kv_heads``,
            ``d_ff``, ``rope_base`` and ``eps``.

    Sub-modules: ``input_layernorm`` and ``post_attention_layernorm`` (RMSNorm with
    ``eps=config.eps``), ``self_attn`` (GroupedQueryAttention with
    ``rope_base=config.rope_base``), ``mlp`` (SwiGLU).
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        ### BEGIN SOLUTION
        self.input_layernorm = RMSNorm(config.d_model, eps=config.eps)
        self.self_attn = GroupedQueryAttention(
            config.d_model, config.n_heads, config.n_kv_heads, rope_base=config.rope_base
        )
        self.post_attention_layernorm = RMSNorm(config.d_model, eps=config.eps)
        self.mlp = SwiGLU(config.d_model, config.d_ff)
        ### END SOLUTION

    def forward(
        self, x: Tensor, positions: Tensor | None = None, cache: KVCache | None = None
    ) -> Tensor:
        """One block.

        Args:
            x: ``(B, L, D)``, the residual stream.
            positions: ``(L,)`` positions of the tokens, passed on to the attention.
            cache: this block's :class:`KVCache`, passed on to the attention.

        Returns:
            ``(B, L, D)``.
        """
        ### BEGIN SOLUTION
        # Each sublayer reads a normalized copy; the stream itself only gets additions.
        x = x + self.self_attn(self.input_layernorm(x), positions, cache)
        return x + self.mlp(self.post_attention_layernorm(x))
        ### END SOLUTION


class Llama(nn.Module):
    """A Llama-style decoder-only language model: token embedding, ``n_layers`` pre-norm
    :class:`LlamaBlock` s, a final RMSNorm and an output head, tied to the embedding
    when ``config.tie_embeddings``. No position embedding: positions enter through the
    rotary embedding in attention.

    Args:
        config: the sizes.

    Sub-modules: ``embed_tokens`` (nn.Embedding), ``layers`` (nn.ModuleList of
    LlamaBlock), ``norm`` (RMSNorm), ``lm_head`` (nn.Linear without bias).
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        ### BEGIN SOLUTION
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(LlamaBlock(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, eps=config.eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight  # one matrix, two uses
        ### END SOLUTION

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache: one :class:`KVCache` per layer."""
        return [KVCache() for _ in self.layers]

    def forward(self, idx: Tensor, cache: list[KVCache] | None = None) -> Tensor:
        """Next-token logits.

        Args:
            idx: LongTensor ``(B, L)`` of token ids; with a cache, only the new tokens.
            cache: from :meth:`new_cache`; filled as a side effect. The new tokens'
                positions continue from the number of positions it already holds.

        Returns:
            ``(B, L, vocab_size)`` logits.
        """
        ### BEGIN SOLUTION
        start = len(cache[0]) if cache is not None else 0
        positions = torch.arange(start, start + idx.size(1), device=idx.device)
        x = self.embed_tokens(idx)
        for i, layer in enumerate(self.layers):
            x = layer(x, positions, None if cache is None else cache[i])
        return self.lm_head(self.norm(x))
        ### END SOLUTION


class Generation(NamedTuple):
    """What :func:`generate_greedy` returns."""

    tokens: Tensor
    """``(1, L + n)``: the prompt and the ``n`` generated tokens."""
    tokens_per_s: float
    """New tokens per second, prompt processing included."""
    cached: bool
    """Whether the steps ran on a KV cache (else each step reran the whole sequence)."""


def _keeps_cache(cache: list | None, length: int) -> bool:
    """Whether a forward pass over ``length`` tokens left them in every layer's ``cache``
    (a model whose forward ignores the cache leaves it empty)."""
    return cache is not None and all(len(layer) == length for layer in cache)


@torch.no_grad()
def generate_greedy(
    model: nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    eos_id: int | None = None,
    use_cache: bool = True,
) -> Generation:
    """Greedy decoding: append the most likely next token, one at a time.

    With ``use_cache`` and a model that keeps a KV cache (a ``new_cache()`` whose caches
    its forward fills, as the course's :class:`Llama` does) the prompt is run once to
    fill the cache, then every step feeds only the newest token. Otherwise every step
    reruns the whole sequence: without ``use_cache``, or with a model that has no
    ``new_cache()`` or leaves its caches empty (chapter 8's check grades ``Llama``
    without a cache, so a passing one may have none). Both give the same tokens; the
    result says which ran.

    Args:
        model: ``forward(idx (1, L)) -> logits (1, L, V)``, taking a cache as its second
            argument when it has ``new_cache()``; in eval mode.
        idx: LongTensor ``(1, L)``, the prompt.
        max_new_tokens: most tokens to add.
        eos_id: stop after producing this token.
        use_cache: reuse keys and values of earlier positions where the model keeps them.

    Returns:
        A :class:`Generation`: the ``(1, L + n)`` tokens, the speed in new tokens per
        second (prompt processing included) and whether the KV cache ran.
    """
    if idx.dim() != 2 or idx.size(0) != 1:
        raise ValueError(f"generate_greedy takes one prompt of shape (1, L), got {tuple(idx.shape)}")
    cache = model.new_cache() if use_cache and hasattr(model, "new_cache") else None
    start = time.perf_counter()
    n_new = 0
    logits = model(idx) if cache is None else model(idx, cache)
    if not _keeps_cache(cache, idx.size(1)):
        cache = None  # the forward left the cache empty: rerun the whole sequence instead
    while n_new < max_new_tokens:
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)  # (1, 1)
        idx = torch.cat([idx, next_id], dim=1)
        n_new += 1
        if n_new == max_new_tokens or (eos_id is not None and next_id.item() == eos_id):
            break
        logits = model(idx) if cache is None else model(next_id, cache)
    elapsed = time.perf_counter() - start
    return Generation(idx, n_new / elapsed, cache is not None)


def kv_cache_bytes(
    context: int, n_layers: int, n_kv_heads: int, d_head: int, bytes_per_value: int = 2
) -> int:
    """Memory a KV cache needs for one sequence: keys and values of every layer.

    ``2 * n_layers * n_kv_heads * d_head * context * bytes_per_value`` (2 bytes for
    float16/bfloat16).
    """
    return 2 * n_layers * n_kv_heads * d_head * context * bytes_per_value
