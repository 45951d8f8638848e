"""Chapter 02: multi-head attention, built on chapter 01's scaled dot-product attention.

One module serves self-attention (query = key = value), cross-attention (keys and values
from another sequence) and causal attention (a causal mask).

The module computes attention the way chapter 01 wrote it, and keeps the weights for
heatmaps. When the weights are not needed (``need_weights = False``, e.g. inside
:func:`fused_kernels` while a model trains), the same mathematics runs through
PyTorch's fused ``F.scaled_dot_product_attention``, which never stores the
``(L_q, L_k)`` matrices and is several times faster.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_course.attention import scaled_dot_product_attention


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """Split the model dimension into heads.

    Args:
        x: ``(B, L, D)`` with ``D`` divisible by ``n_heads``.
        n_heads: number of heads ``H``.

    Returns:
        ``(B, H, L, D // H)``: head ``h`` holds features ``h*Dh .. (h+1)*Dh - 1``.
    """
    ### BEGIN SOLUTION
    batch, length, d_model = x.shape
    # (B, L, D) -> (B, L, H, Dh): cut each feature vector into H consecutive blocks;
    # then swap L and H so that each head sees a whole (L, Dh) sequence of its own.
    return x.view(batch, length, n_heads, d_model // n_heads).transpose(1, 2)
    ### END SOLUTION


def merge_heads(x: Tensor) -> Tensor:
    """Inverse of :func:`split_heads`.

    Args:
        x: ``(B, H, L, Dh)``.

    Returns:
        ``(B, L, H * Dh)``, the heads concatenated feature-wise.
    """
    ### BEGIN SOLUTION
    batch, n_heads, length, d_head = x.shape
    # Positions back in front of heads, then glue each position's H blocks together.
    # reshape (not view): after the transpose the memory is no longer contiguous.
    return x.transpose(1, 2).reshape(batch, length, n_heads * d_head)
    ### END SOLUTION


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections.

    Args:
        d_model: model width ``D``; must be divisible by ``n_heads``.
        n_heads: number of heads ``H``; each works in ``D // H`` dimensions.
        dropout: dropout on the attention weights (training only).
        bias: whether the four projections have biases.

    After a forward pass, ``self.attn_weights`` holds the ``(B, H, L_q, L_k)`` weights
    (detached, before dropout). Setting ``need_weights = False`` (the default is True)
    runs the fused ``F.scaled_dot_product_attention`` instead: the same outputs and
    gradients, faster, and ``attn_weights`` is None.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model, self.n_heads = d_model, n_heads
        ### BEGIN SOLUTION
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION
        self.attn_weights: Tensor | None = None
        self.need_weights = True

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: ``(B, L_q, D)``.
            key, value: ``(B, L_k, D)``.
            mask: bool, True = may attend; ``(L_q, L_k)``, ``(B, L_q, L_k)`` or
                ``(B, 1, L_k)`` (a 4-D mask is taken to have its head dimension already).

        Returns:
            ``(B, L_q, D)``.
        """
        if mask is not None and mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor (True = may attend), got {mask.dtype}; "
                "for nn.MultiheadAttention-style masks (True = hidden) pass ~mask.bool()"
            )
        if not self.need_weights:
            return self._fused_forward(query, key, value, mask)
        ### BEGIN SOLUTION
        q = split_heads(self.w_q(query), self.n_heads)  # (B, H, L_q, Dh)
        k = split_heads(self.w_k(key), self.n_heads)  # (B, H, L_k, Dh)
        v = split_heads(self.w_v(value), self.n_heads)  # (B, H, L_k, Dh)
        if mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (B, 1, L_q or 1, L_k): the same mask for every head
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        self.attn_weights = weights.detach()
        if self.training and self.dropout.p > 0:
            out = self.dropout(weights) @ v  # dropout acts on the weights, as in PyTorch
        return self.w_o(merge_heads(out))
        ### END SOLUTION

    def _fused_forward(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None) -> Tensor:
        """:meth:`forward` through ``F.scaled_dot_product_attention``: same arguments and
        result, no weights kept. A square causal mask becomes ``is_causal=True``, which
        lets the kernel skip the hidden half of the scores."""
        self.attn_weights = None
        if query is key and key is value:
            # Self-attention: one matrix product for the three projections (the weights
            # are concatenated on the fly; the parameters stay w_q, w_k, w_v).
            weight = torch.cat([self.w_q.weight, self.w_k.weight, self.w_v.weight])
            bias = None if self.w_q.bias is None else torch.cat([self.w_q.bias, self.w_k.bias, self.w_v.bias])
            q, k, v = F.linear(query, weight, bias).split(self.d_model, dim=-1)
        else:
            q, k, v = self.w_q(query), self.w_k(key), self.w_v(value)
        q, k, v = (split_heads(t, self.n_heads) for t in (q, k, v))
        is_causal = (mask is not None and mask.dim() == 2 and mask.size(0) == mask.size(1)
                     and torch.equal(mask, torch.ones_like(mask).tril()))
        if is_causal:
            mask = None
        elif mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (B, 1, L_q or 1, L_k): the same mask for every head
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout.p if self.training else 0.0,
            is_causal=is_causal)
        return self.w_o(merge_heads(out))


@contextmanager
def fused_kernels(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, the course's modules in ``model`` that have a fused path take it:
    every multi-head attention runs ``F.scaled_dot_product_attention``
    (``need_weights = False``) and every course ``LayerNorm`` runs ``F.layer_norm``
    (``fused = True``). Afterwards each module gets its own setting back.

    Training helpers use it: training never looks at the attention weights, and the
    heatmaps drawn after training still find them in ``attn_weights``. The results are
    the same up to rounding; only the speed changes.

    Args:
        model: any module. Its sub-modules with a boolean ``need_weights`` or ``fused``
            attribute switch (the course's classes, or classes a notebook wrote from them).

    Yields:
        ``model``.
    """
    switches = [(m, name, value) for m in model.modules()
                for name, value in (("need_weights", False), ("fused", True))
                if isinstance(getattr(m, name, None), bool)]
    saved = [getattr(m, name) for m, name, _ in switches]
    for m, name, value in switches:
        setattr(m, name, value)
    try:
        yield model
    finally:
        for (m, name, _), old in zip(switches, saved, strict=True):
            setattr(m, name, old)


def copy_to_torch(mha: MultiHeadAttention, target: nn.MultiheadAttention) -> nn.MultiheadAttention:
    """Copy the weights of ``mha`` into PyTorch's ``nn.MultiheadAttention``.

    PyTorch keeps the query, key and value projections stacked in one
    ``in_proj_weight`` of shape ``(3 * D, D)`` (rows ``0..D-1`` for the query, then key,
    then value) and calls the output projection ``out_proj``.

    Args:
        mha: the source module.
        target: an ``nn.MultiheadAttention(D, H, bias=...)`` of the same width, heads
            and bias setting, e.g. the ``self_attn`` of an ``nn.TransformerEncoderLayer``.

    Returns:
        ``target``, with its weights overwritten.
    """
    if (target.embed_dim, target.num_heads) != (mha.d_model, mha.n_heads):
        raise ValueError(
            f"target has embed_dim={target.embed_dim}, num_heads={target.num_heads}; "
            f"expected {mha.d_model} and {mha.n_heads}"
        )
    if (target.in_proj_bias is None) != (mha.w_q.bias is None):
        raise ValueError("source and target must agree on bias=True/False")
    with torch.no_grad():
        target.in_proj_weight.copy_(torch.cat([mha.w_q.weight, mha.w_k.weight, mha.w_v.weight]))
        target.out_proj.weight.copy_(mha.w_o.weight)
        if target.in_proj_bias is not None:
            target.in_proj_bias.copy_(torch.cat([mha.w_q.bias, mha.w_k.bias, mha.w_v.bias]))
            target.out_proj.bias.copy_(mha.w_o.bias)
    return target
