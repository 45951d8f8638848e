"""Block diagrams the chapters draw with matplotlib: what flows where, not numbers.

- :func:`draw_qkv_flow` (chapter 1): a sequence ``X`` through ``W_Q``, ``W_K``, ``W_V``
  into scores, softmax weights and the weighted sum of the values;
- :func:`draw_multi_head` (chapter 2): the heads side by side, concatenated, then
  projected by ``W_O``;
- :func:`draw_norm_placement` (chapter 4): a post-norm and a pre-norm sub-layer, with
  the residual path of each.

Each returns the axes it drew on; every box is a patch whose ``gid`` names it (``"X"``,
``"softmax"``, ``"LayerNorm"``...), so a test can find where each one sits.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch

_COLOURS = {
    "input": "#e8e8e8",
    "weight": "#cfe2f3",
    "tensor": "#fff2cc",
    "op": "#d9ead3",
    "norm": "#f4cccc",
}


Box = tuple[float, float, float, float]
"""A drawn box: centre ``x, y``, ``width``, ``height``."""


def _box(ax: Axes, x: float, y: float, text: str, kind: str, width: float = 1.6,
         height: float = 0.6, name: str | None = None) -> Box:
    """A labelled box centred on ``(x, y)``, with gid ``name`` (default: ``text``)."""
    patch = FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                           boxstyle="round,pad=0.02,rounding_size=0.08",
                           facecolor=_COLOURS[kind], edgecolor="#444444", linewidth=1)
    patch.set_gid(name or text)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=9)
    return x, y, width, height


def _edge(box: Box, towards: tuple[float, float]) -> tuple[float, float]:
    """Where the line from the centre of ``box`` to ``towards`` leaves the box."""
    x, y, width, height = box
    dx, dy = towards[0] - x, towards[1] - y
    t = min(width / 2 / abs(dx) if dx else float("inf"), height / 2 / abs(dy) if dy else float("inf"))
    return x + t * dx, y + t * dy


def _arrow(ax: Axes, start: Box, end: Box, rad: float = 0.0,
           side: tuple[float, float] | None = None) -> None:
    """An arrow from the edge of ``start`` to the edge of ``end``; with ``side = (dx, dy)``
    it leaves and enters both boxes on that side instead (for a bypass drawn as an arc)."""
    if side is None:
        a, b = _edge(start, end[:2]), _edge(end, start[:2])
    else:
        a = _edge(start, (start[0] + side[0], start[1] + side[1]))
        b = _edge(end, (end[0] + side[0], end[1] + side[1]))
    ax.annotate("", xy=b, xytext=a,
                arrowprops={"arrowstyle": "-|>", "color": "#333333", "lw": 1.2, "shrinkA": 0,
                            "shrinkB": 0, "connectionstyle": f"arc3,rad={rad}"})


def _canvas(ax: Axes | None, size: tuple[float, float], xlim: tuple[float, float],
            ylim: tuple[float, float], title: str) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    ax.set(xlim=xlim, ylim=ylim, title=title)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def draw_qkv_flow(ax: Axes | None = None) -> Axes:
    """Scaled dot-product self-attention as a data flow (rows are tokens).

    ``X (L, d_model)`` is multiplied by three learned matrices into ``Q``, ``K`` and
    ``V``; ``Q K^T / sqrt(d_k)`` gives the ``(L, L)`` scores, a softmax over each row
    the weights, and ``weights @ V`` the output ``(L, d_v)``.
    """
    ax = _canvas(ax, (11, 4.2), (-0.2, 12.6), (-0.6, 4.6), "Self-attention: what flows where")
    x = _box(ax, 0.8, 2.0, "$X$\n(L, d_model)", "input", width=1.4, height=0.9, name="X")
    rows = {"Q": 3.6, "K": 2.0, "V": 0.4}
    shapes = {"Q": "(L, d_k)", "K": "(L, d_k)", "V": "(L, d_v)"}
    made = {}
    for name, y in rows.items():
        w = _box(ax, 3.0, y, f"$W_{name}$", "weight", width=1.0, name=f"W_{name}")
        _arrow(ax, x, w)
        made[name] = _box(ax, 5.0, y, f"${name}$\n{shapes[name]}", "tensor", width=1.3, height=0.8,
                          name=name)
        _arrow(ax, w, made[name])
    scores = _box(ax, 7.4, 2.8, "$QK^\\top / \\sqrt{d_k}$\nscores (L, L)", "op", width=2.0, height=0.9,
                  name="scores")
    _arrow(ax, made["Q"], scores)
    _arrow(ax, made["K"], scores)
    weights = _box(ax, 9.6, 2.8, "softmax of\neach row", "op", width=1.5, height=0.9, name="softmax")
    _arrow(ax, scores, weights)
    out = _box(ax, 11.5, 1.2, "weights @ $V$\noutput (L, d_v)", "tensor", width=1.9, height=0.9,
               name="output")
    _arrow(ax, weights, out)
    _arrow(ax, made["V"], out, rad=0.1)
    ax.text(6.2, -0.4, "the same three matrices for every token; every query meets every key",
            fontsize=8, color="#555555", ha="center")
    return ax


def draw_multi_head(n_heads: int = 3, ax: Axes | None = None) -> Axes:
    """Multi-head attention: ``n_heads`` attentions side by side, each with its own
    ``W_Q^h, W_K^h, W_V^h`` of width ``d_model / H``; their outputs concatenated back to
    ``(L, d_model)`` and mixed by ``W_O``."""
    if n_heads < 1:
        raise ValueError(f"n_heads must be at least 1, got {n_heads}")
    height = 1.3 * n_heads + 0.6
    ax = _canvas(ax, (11, 1.2 + 0.9 * n_heads), (-0.2, 12.6), (-0.5, height),
                 "Multi-head attention: heads side by side, concatenated, projected")
    middle = (height - 0.6) / 2
    x = _box(ax, 0.8, middle, "$X$\n(L, d_model)", "input", width=1.4, height=0.9, name="X")
    heads = []
    for h in range(1, n_heads + 1):
        y = height - 1.0 - 1.3 * (h - 1)
        w = _box(ax, 3.3, y, f"$W_Q^{h}, W_K^{h}, W_V^{h}$", "weight", width=2.0, name=f"W^{h}")
        _arrow(ax, x, w)
        head = _box(ax, 6.0, y, f"head {h}: attention\n(L, d_model / H)", "op", width=2.2,
                    height=0.8, name=f"head {h}")
        _arrow(ax, w, head)
        heads.append(head)
    concat = _box(ax, 8.6, middle, "concat\n(L, d_model)", "tensor", width=1.5, height=0.8,
                  name="concat")
    for head in heads:
        _arrow(ax, head, concat)
    w_o = _box(ax, 10.1, middle, "$W_O$", "weight", width=0.8, name="W_O")
    _arrow(ax, concat, w_o)
    out = _box(ax, 11.6, middle, "output\n(L, d_model)", "tensor", width=1.5, height=0.8,
               name="output")
    _arrow(ax, w_o, out)
    return ax


def draw_norm_placement(axes: tuple[Axes, Axes] | None = None) -> tuple[Axes, Axes]:
    """One sub-layer (attention or feed-forward) in each arrangement, input at the bottom.

    Post-norm: ``LayerNorm(x + sublayer(x))``, the norm sits on the residual path.
    Pre-norm: ``x + sublayer(LayerNorm(x))``, the residual path is a plain sum.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8, 5))
    post, pre = axes
    for ax, title in ((post, "post-norm (the original paper)"), (pre, "pre-norm (GPT-2 and later)")):
        _canvas(ax, (4, 5), (-1.6, 2.6), (-0.6, 6.0), title)
    # post-norm: x -> sublayer -> + -> LayerNorm -> out; the residual joins at +
    x = _box(post, 0.5, 0.0, "x", "input", width=1.0)
    sub = _box(post, 0.5, 1.6, "sublayer", "op")
    add = _box(post, 0.5, 3.0, "+", "op", width=0.6)
    norm = _box(post, 0.5, 4.3, "LayerNorm", "norm")
    out = _box(post, 0.5, 5.5, "out", "input", width=1.0)
    for a, b in ((x, sub), (sub, add), (add, norm), (norm, out)):
        _arrow(post, a, b)
    _arrow(post, x, add, rad=0.5, side=(1, 0))
    post.text(1.7, 1.5, "residual", fontsize=8, color="#555555")
    # pre-norm: x -> LayerNorm -> sublayer -> + -> out; the residual bypasses the norm
    x = _box(pre, 0.5, 0.0, "x", "input", width=1.0)
    norm = _box(pre, 0.5, 1.4, "LayerNorm", "norm")
    sub = _box(pre, 0.5, 2.8, "sublayer", "op")
    add = _box(pre, 0.5, 4.2, "+", "op", width=0.6)
    out = _box(pre, 0.5, 5.5, "out", "input", width=1.0)
    for a, b in ((x, norm), (norm, sub), (sub, add), (add, out)):
        _arrow(pre, a, b)
    _arrow(pre, x, add, rad=0.5, side=(1, 0))
    pre.text(1.8, 2.0, "residual\n(untouched)", fontsize=8, color="#555555")
    return post, pre
