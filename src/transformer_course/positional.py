"""Chapter 3: positional information, absolute (sinusoidal, learned) and rotary."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def sinusoidal_positional_encoding(max_len: int, d_model: int) -> Tensor:
    """The fixed sinusoidal table of "Attention Is All You Need".

    ``PE[p, 2i] = sin(p / 10000^(2i / d_model))`` and ``PE[p, 2i+1] = cos(same)``,
    positions counted from 0.

    Args:
        max_len: number of positions ``L``.
        d_model: model width ``D`` (even).

    Returns:
        float32 ``(L, D)``.
    """
    if d_model % 2:
        raise ValueError(f"d_model={d_model} must be even: features come in (sin, cos) pairs")
    ### BEGIN SOLUTION
    # Angles in float64: sin and cos of large angles then stay exact to float32 precision.
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = position / 10000.0 ** (two_i / d_model)  # (L, D/2): one angle per pair
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.float()
    ### END SOLUTION


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal table to token embeddings, then applies dropout.

    Args:
        d_model: model width ``D``.
        max_len: longest sequence supported.
        dropout: dropout probability after the addition.

    The table is a buffer ``pe`` of shape ``(max_len, d_model)``: saved with the model and
    moved by ``.to()``, but not trained.
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0):
        super().__init__()
        ### BEGIN SOLUTION
        self.register_buffer("pe", sinusoidal_positional_encoding(max_len, d_model))
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, L, D) -> x + pe[:L]``, shape unchanged."""
        if x.size(1) > self.pe.size(0):
            raise ValueError(f"sequence length {x.size(1)} exceeds max_len={self.pe.size(0)}")
        ### BEGIN SOLUTION
        return self.dropout(x + self.pe[: x.size(1)].to(x.dtype))
        ### END SOLUTION


class LearnedPositionalEmbedding(nn.Module):
    """A trained vector per position (as GPT-2 and BERT use), added to the input.

    Args:
        max_len: number of positions with an embedding.
        d_model: model width ``D``.
    """

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.embedding = nn.Embedding(max_len, d_model)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, L, D) -> x + embedding(0..L-1)``."""
        if x.size(1) > self.embedding.num_embeddings:
            raise ValueError(
                f"sequence length {x.size(1)} exceeds max_len={self.embedding.num_embeddings}"
            )
        ### BEGIN SOLUTION
        positions = torch.arange(x.size(1), device=x.device)
        return x + self.embedding(positions)
        ### END SOLUTION


def apply_rotary(x: Tensor, positions: Tensor | None = None, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (RoPE), "rotate-half" convention of Llama-family models.

    Feature ``i`` is paired with feature ``i + Dh/2``; the pair at position ``p`` is
    rotated by the angle ``p * base^(-2i/Dh)``. The dot product of two rotated vectors
    then depends only on their positions' difference.

    Args:
        x: ``(..., L, Dh)`` queries or keys (``Dh`` even).
        positions: integer positions, ``(L,)`` or broadcastable to ``x.shape[:-1]``
            (for per-sequence positions of ``x (B, H, L, Dh)`` pass ``(B, 1, L)``);
            defaults to ``0..L-1``.
        base: the frequency base (10000 in the original, 100000 in SmolLM2).

    Returns:
        Tensor shaped and typed like ``x``.
    """
    if x.size(-1) % 2:
        raise ValueError(f"the last dimension of x must be even, got {x.size(-1)}")
    ### BEGIN SOLUTION
    d_head = x.size(-1)
    if positions is None:
        positions = torch.arange(x.size(-2), device=x.device)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # angles in >= fp32
    inv_freq = 1.0 / base ** (torch.arange(0, d_head, 2, device=x.device, dtype=dtype) / d_head)
    angle = positions.to(dtype)[..., None] * inv_freq  # (..., L, Dh/2)
    angle = torch.cat([angle, angle], dim=-1)  # the same angle for i and i + Dh/2
    x1, x2 = x[..., : d_head // 2], x[..., d_head // 2 :]
    rotated_half = torch.cat([-x2, x1], dim=-1)  # (x1, x2) -> (-x2, x1): a quarter turn
    return (x * angle.cos() + rotated_half * angle.sin()).to(x.dtype)
    ### END SOLUTION
