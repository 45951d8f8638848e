"""Diagrams of the encoder-decoder Transformer (chapter 5), drawn with matplotlib.

:func:`draw_cross_attention` shows where cross-attention takes its inputs from: the keys
and values are projections of the encoder's output (the memory), the queries are
projections of the decoder's own states, and every query mixes the values of all source
positions with its row of attention weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch
from torch import Tensor

_KEY_COLOUR, _QUERY_COLOUR = "#f4a261", "#2a9d8f"


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, colour: str,
         fontsize: float = 9) -> None:
    """A rounded box centred on ``(x, y)`` with ``text`` inside (a space shown as ``␣``)."""
    text = text if text.strip() else "␣"
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                                boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=colour, edgecolor="black", linewidth=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], text: str = "") -> None:
    """An arrow from ``start`` to ``end``, labelled beside its middle."""
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", lw=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.15, (start[1] + end[1]) / 2, text, fontsize=8, va="center")


def draw_cross_attention(
    source_tokens: Sequence[str],
    target_tokens: Sequence[str],
    weights: Tensor | None = None,
    query: int | None = None,
    ax: Axes | None = None,
    title: str = "cross-attention: queries from the decoder, keys and values from the encoder",
) -> Axes:
    """Draw one cross-attention sub-layer between a source and a target sequence.

    The top row is the memory (one vector per source token, the encoder's output), which
    gives the keys ``K = memory W_K`` and values ``V = memory W_V``; the bottom row is the
    decoder's states (one per target token written so far, after masked self-attention),
    which give the queries ``Q = x W_Q``. A line joins query ``t`` to key ``s``; its
    darkness is the attention weight ``weights[t, s]``.

    Args:
        source_tokens: the ``L_src`` source tokens, as labels.
        target_tokens: the ``L_tgt`` decoder input tokens, as labels.
        weights: ``(L_tgt, L_src)`` attention weights (rows sum to 1), e.g. a trained
            layer's ``cross_attn.attn_weights[0].mean(0)``; None draws every line alike.
        query: the target position whose lines are drawn in full colour (the others
            faintly); None: the last one.
        ax: where to draw; a new figure when None.
        title: the axes' title.

    Returns:
        The axes drawn on.
    """
    n_src, n_tgt = len(source_tokens), len(target_tokens)
    if weights is not None and tuple(weights.shape) != (n_tgt, n_src):
        raise ValueError(f"weights must be (L_tgt, L_src) = ({n_tgt}, {n_src}), got {tuple(weights.shape)}")
    query = n_tgt - 1 if query is None else query
    if ax is None:
        _, ax = plt.subplots(figsize=(max(8.0, 0.55 * max(n_src, n_tgt) + 4), 5.5))
    width = max(n_src, n_tgt)
    src_x = [width * (i + 0.5) / n_src for i in range(n_src)]
    tgt_x = [width * (i + 0.5) / n_tgt for i in range(n_tgt)]
    top, bottom = 3.0, 1.0

    for t in range(n_tgt):
        for s in range(n_src):
            w = (1.0 / n_src) if weights is None else float(weights[t, s])
            strength = min(1.0, w * (3 if weights is None else 1.5))
            highlighted = t == query
            ax.plot([tgt_x[t], src_x[s]], [bottom + 0.22, top - 0.22],
                    color="black" if highlighted else "grey",
                    alpha=0.15 + 0.85 * strength if highlighted else 0.08 + 0.3 * strength,
                    lw=0.6 + (3.0 * strength if highlighted else 0.5), zorder=1)
    for x, token in zip(src_x, source_tokens, strict=True):
        _box(ax, x, top, 0.85, 0.4, token, _KEY_COLOUR)
    for t, (x, token) in enumerate(zip(tgt_x, target_tokens, strict=True)):
        _box(ax, x, bottom, 0.85, 0.4, token, _QUERY_COLOUR if t == query else "#cfe8e4")

    _box(ax, width / 2, top + 1.0, width * 0.6, 0.45, "encoder (reads the whole source at once)",
         "#fde2c8")
    _arrow(ax, (width / 2, top + 0.75), (width / 2, top + 0.25),
           "memory: keys K = memory W_K, values V = memory W_V")
    _box(ax, width / 2, bottom - 1.0, width * 0.6, 0.45, "masked self-attention over the target so far",
         "#d8efe9")
    _arrow(ax, (width / 2, bottom - 0.75), (width / 2, bottom - 0.25), "decoder states: queries Q = x W_Q")
    ax.text(width + 0.3, (top + bottom) / 2,
            "query t takes\nsoftmax(q_t K^T / sqrt(d_k)) V:\na weighted sum of\n"
            "every source position's value",
            fontsize=8, va="center")
    ax.text(-0.3, top, "source\n(keys, values)", ha="right", va="center", fontsize=8)
    ax.text(-0.3, bottom, "target\n(queries)", ha="right", va="center", fontsize=8)
    ax.set_xlim(-1.6, width + 3.2)
    ax.set_ylim(bottom - 1.5, top + 1.5)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    return ax
