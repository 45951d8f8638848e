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
