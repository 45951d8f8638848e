"""Chapter 1: scaled dot-product attention, written from scratch.

Conventions (the whole course): inputs are batch-first, ``q (..., L_q, d_k)``,
``k (..., L_k, d_k)``, ``v (..., L_k, d_v)``; boolean masks broadcast to
``(..., L_q, L_k)`` and **True means "may attend"**, as in
``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax of ``x`` along ``dim``.

    Subtracting the maximum first leaves the result unchanged (softmax is invariant to
    adding a constant) but keeps ``exp`` from overflowing for large inputs.

    Args:
        x: any shape, floating point.
        dim: the dimension whose entries sum to one.

    Returns:
        Tensor of the same shape and dtype as ``x``.
    """
    ### BEGIN SOLUTION
    shifted = x - x.amax(dim=dim, keepdim=True)
    exp = shifted.exp()
    return exp / exp.sum(dim=dim, keepdim=True)
    ### END SOLUTION


def attention_scores(q: Tensor, k: Tensor) -> Tensor:
    """Scaled dot products between every query and every key.

    Args:
        q: ``(..., L_q, d_k)`` queries.
        k: ``(..., L_k, d_k)`` keys.

    Returns:
        ``(..., L_q, L_k)`` scores ``q @ k^T / sqrt(d_k)``.
    """
    ### BEGIN SOLUTION
    d_k = q.size(-1)
    return q @ k.transpose(-2, -1) / math.sqrt(d_k)
    ### END SOLUTION


def causal_mask(seq_len: int) -> Tensor:
    """Mask that lets each position attend to itself and to earlier positions only.

    Args:
        seq_len: sequence length ``L``.

    Returns:
        Bool tensor ``(L, L)``, True on and below the diagonal.
    """
    ### BEGIN SOLUTION
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    ### END SOLUTION


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Mask that hides the padding at the end of each sequence of a batch.

    Args:
        lengths: LongTensor ``(batch,)``, the number of real tokens in each sequence.
        max_len: the padded length ``L``.

    Returns:
        Bool tensor ``(batch, 1, L)``, True at real tokens; it broadcasts over queries.
    """
    ### BEGIN SOLUTION
    positions = torch.arange(max_len, device=lengths.device)
    return (positions[None, :] < lengths[:, None])[:, None, :]
    ### END SOLUTION


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Attention: ``softmax(q @ k^T / sqrt(d_k)) @ v``, with an optional boolean mask.

    A masked position gets a score of ``-inf`` before the softmax, so it receives
    exactly zero weight. A query row whose keys are all masked would be ``0/0``; this
    reference returns zeros for such a row (weights and output) instead of NaN.

    Args:
        q: ``(..., L_q, d_k)`` queries.
        k: ``(..., L_k, d_k)`` keys.
        v: ``(..., L_k, d_v)`` values.
        mask: optional bool tensor broadcastable to ``(..., L_q, L_k)``; True = may attend.

    Returns:
        ``output (..., L_q, d_v)`` and ``weights (..., L_q, L_k)``.
    """
    ### BEGIN SOLUTION
    scores = attention_scores(q, k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)
    # A fully masked row is all -inf, whose softmax is NaN: give it zero weight instead.
    weights = weights.nan_to_num(0.0)
    return weights @ v, weights
    ### END SOLUTION
