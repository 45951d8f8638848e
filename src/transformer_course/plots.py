"""Plotting helpers shared by the chapters (matplotlib only)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from torch import Tensor


def plot_attention(
    weights: Tensor,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    annotate: bool | None = None,
) -> Axes:
    """Heatmap of one attention matrix: a row per query, a column per key.

    Args:
        weights: ``(L_q, L_k)`` attention weights (rows sum to one).
        query_labels, key_labels: tick labels, e.g. the tokens.
        ax: axes to draw on; a new figure when None.
        title: axes title.
        annotate: write each weight in its cell; by default when the matrix is small.

    Returns:
        The axes drawn on.
    """
    weights = torch.as_tensor(weights).detach().float().cpu()
    if weights.dim() != 2:
        raise ValueError(f"plot_attention takes one (L_q, L_k) matrix, got shape {tuple(weights.shape)}")
    if ax is None:
        size = max(3.0, 0.45 * max(weights.shape) + 1.5)
        _, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=max(1e-9, float(weights.max())))
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    n_q, n_k = weights.shape
    ax.set_xticks(range(n_k), key_labels if key_labels is not None else range(n_k),
                  rotation=90 if key_labels is not None else 0)
    ax.set_yticks(range(n_q), query_labels if query_labels is not None else range(n_q))
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if annotate is None:
        annotate = max(n_q, n_k) <= 12
    if annotate:
        for i in range(n_q):
            for j in range(n_k):
                value = float(weights[i, j])
                colour = "black" if value > 0.6 * float(weights.max()) else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    if title:
        ax.set_title(title)
    return ax


def plot_mask(mask: Tensor, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Show a boolean mask: light cells may attend (True), dark cells are hidden."""
    mask = torch.as_tensor(mask).detach().cpu()
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(mask.float(), cmap="Greys_r", vmin=0, vmax=1)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    return ax


def plot_heads(
    weights: Tensor,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    title: str | None = None,
    annotate: bool | None = None,
) -> list[Axes]:
    """One attention heatmap per head, side by side.

    Args:
        weights: ``(H, L_q, L_k)`` attention weights of one sequence (e.g.
            ``mha.attn_weights[0]``).
        query_labels, key_labels: tick labels, e.g. the tokens.
        title: figure title.
        annotate: as for :func:`plot_attention`.

    Returns:
        The axes, one per head.
    """
    weights = torch.as_tensor(weights).detach().float().cpu()
    if weights.dim() != 3:
        raise ValueError(f"plot_heads takes (H, L_q, L_k) weights, got shape {tuple(weights.shape)}")
    n_heads, n_q, n_k = weights.shape
    size = max(2.5, 0.4 * max(n_q, n_k) + 1.0)
    fig, axes = plt.subplots(1, n_heads, figsize=(n_heads * (size + 0.8), size), squeeze=False)
    for h, ax in enumerate(axes[0]):
        plot_attention(weights[h], query_labels, key_labels, ax=ax, title=f"head {h}",
                       annotate=annotate)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return list(axes[0])


def plot_feature_grid(
    positions: Tensor, features: Tensor, d_head: int, ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Draw a 2-D slice of an activation tensor as a grid of labelled cells, to follow
    where each entry goes through a reshape.

    Each cell shows which position ``t`` and feature ``f`` of the original ``(L, D)``
    input it holds, coloured by the head that feature belongs to (``f // d_head``).

    Args:
        positions, features: ``(R, C)`` integer tensors: the origin of each cell.
        d_head: features per head, for the colours.
        ax: axes to draw on; a new figure when None.
        title: axes title.
    """
    positions, features = torch.as_tensor(positions).cpu(), torch.as_tensor(features).cpu()
    if positions.shape != features.shape or positions.dim() != 2:
        raise ValueError("positions and features must be 2-D tensors of the same shape")
    rows, cols = positions.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * cols + 1, 0.45 * rows + 1))
    heads = (features // d_head).float()
    ax.imshow(heads, cmap="Pastel1", vmin=0, vmax=8, aspect="auto")
    for r in range(rows):
        for c in range(cols):
            ax.text(c, r, f"t{int(positions[r, c])}\nf{int(features[r, c])}", ha="center",
                    va="center", fontsize=7, linespacing=0.9)
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_similarity(
    matrix: Tensor,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float = 1.0,
) -> Axes:
    """Heatmap of a similarity matrix (e.g. cosine similarities), every value written
    in its cell.

    Args:
        matrix: ``(N, M)`` similarities.
        row_labels, col_labels: tick labels.
        ax: axes to draw on; a new figure when None.
        title: axes title.
        vmin, vmax: colour range; ``vmin`` defaults to the smallest value.

    Returns:
        The axes drawn on.
    """
    matrix = torch.as_tensor(matrix).detach().float().cpu()
    if matrix.dim() != 2:
        raise ValueError(f"plot_similarity takes one (N, M) matrix, got shape {tuple(matrix.shape)}")
    n, m = matrix.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * m + 3, 0.5 * n + 1.5))
    low = float(matrix.min()) if vmin is None else vmin
    image = ax.imshow(matrix, cmap="magma", vmin=low, vmax=vmax)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(m), col_labels if col_labels is not None else range(m), rotation=90)
    ax.set_yticks(range(n), row_labels if row_labels is not None else range(n))
    middle = (low + vmax) / 2
    for i in range(n):
        for j in range(m):
            value = float(matrix[i, j])
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > middle else "white")
    if title:
        ax.set_title(title)
    return ax
