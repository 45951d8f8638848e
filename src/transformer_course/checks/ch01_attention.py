"""Chapter 01 (attention): visible cases and the catalogue of known mistakes.

Behaviours the chapter states, and the case that exercises each (hidden seeds build the
same cases with other numbers):

softmax
    same shape and dtype as ``x``            "3-D float64, last dim"
    any number of dims, any ``dim``;         "3-D, dim=1", "1-D, dim=0"; "dim not given
    default ``dim=-1``                       (default -1)"
    max subtracted along ``dim``             "large logits (x 1000)"; "rows on very
                                             different scales" (a global max fails it)
    ``-inf`` entries give exactly 0          "-inf entries get zero probability"
    no torch/F/Tensor.softmax                forbidden calls, every case
attention_scores
    leading dims carry through; d_k is the   "batch: ..."; "batch and heads, float64"
    last dim (L_q != L_k tells them apart)
causal_mask
    bool ``(L, L)``, True on and below the   every case ("float mask", "strictly lower")
    diagonal
padding_mask
    bool ``(B, 1, L)``, True where p < length every case ("off by one", "missing query
                                             dimension"); "... (no padding)"
scaled_dot_product_attention
    ``(output, weights)``, weights over keys  every case
    sum to one (softmax over dim=-1)
    mask before the softmax, filled with     "causal mask (6, 6)", "padding mask ...",
    -inf; True = may attend; any mask that   "heads with a (batch, 1, 1, L_k) mask"
    broadcasts
    L_q != L_k, d_v != d_k, float64 kept     "heads, L_q != L_k, d_v != d_k, float64"
    no F.scaled_dot_product_attention        forbidden calls
    (a fully masked row is stated as not graded)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_course import attention as ref
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.kit import randn
from transformer_course.checks.registry import register

CHAPTER = "01_attention"

# --------------------------------------------------------------------------- softmax


def _softmax_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    wide = randn(g, 2, 6)
    wide[1] -= 40.0  # a row far below the other: a global max underflows it to 0/0
    with_inf = randn(g, 3, 5)
    with_inf[:, 0] = float("-inf")  # masked entries get exactly zero probability
    return [
        Case("2-D, last dim", {"x": randn(g, 4, 7), "dim": -1}),
        Case("3-D float64, last dim", {"x": randn(g, 2, 3, 5, dtype=torch.float64), "dim": -1}),
        Case("3-D, dim=1", {"x": randn(g, 2, 5, 3), "dim": 1}),
        Case("large logits (x 1000): must not overflow", {"x": randn(g, 3, 6) * 1000, "dim": -1}),
        Case("rows on very different scales", {"x": wide, "dim": -1}),
        Case("-inf entries get zero probability", {"x": with_inf, "dim": -1}),
        Case("dim not given (default -1)", {"x": randn(g, 3, 4, 5), "dim": None}),
        Case("1-D, dim=0", {"x": randn(g, 9) * 5, "dim": 0}),
    ]


def _run_softmax(f, a):
    # dim None: called without it, so the default (-1) is what gets tested
    return f(a["x"]) if a["dim"] is None else f(a["x"], dim=a["dim"])


def _softmax_no_max(x: Tensor, dim: int = -1) -> Tensor:
    exp = x.exp()
    return exp / exp.sum(dim=dim, keepdim=True)


def _softmax_global_max(x: Tensor, dim: int = -1) -> Tensor:
    exp = (x - x.max()).exp()
    return exp / exp.sum(dim=dim, keepdim=True)


def _softmax_wrong_dim(x: Tensor, dim: int = -1) -> Tensor:
    other = 0 if dim not in (0, -x.dim()) else 1
    exp = (x - x.amax(dim=other, keepdim=True)).exp()
    return exp / exp.sum(dim=other, keepdim=True)


def _softmax_no_exp(x: Tensor, dim: int = -1) -> Tensor:
    return x / x.sum(dim=dim, keepdim=True)


SOFTMAX = Exercise(
    name="softmax",
    chapter=CHAPTER,
    reference=ref.softmax,
    make_cases=_softmax_cases,
    run=_run_softmax,
    forbidden={"torch.softmax": torch.softmax, "F.softmax": F.softmax,
               "Tensor.softmax": Tensor.softmax},
    mistakes=[
        Mistake("no max subtraction",
                "exp() of large logits overflows to inf and inf/inf is NaN: subtract the "
                "maximum along `dim` (keepdim=True) before exponentiating.", _softmax_no_max),
        Mistake("global max",
                "You subtract the maximum of the whole tensor; a row far below it underflows "
                "to 0/0. Subtract each row's own maximum: x.amax(dim=dim, keepdim=True).",
                _softmax_global_max),
        Mistake("wrong dim",
                "The probabilities sum to one along the wrong dimension: use the `dim` "
                "argument for both the max and the sum.", _softmax_wrong_dim),
        Mistake("no exp",
                "You normalise x itself; softmax normalises exp(x).", _softmax_no_exp),
    ],
)

# --------------------------------------------------------------------------- attention_scores


def _scores_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("q (5, 8), k (5, 8)", {"q": randn(g, 5, 8), "k": randn(g, 5, 8)}),
        Case("batch: q (2, 4, 16), k (2, 6, 16)", {"q": randn(g, 2, 4, 16), "k": randn(g, 2, 6, 16)}),
        Case("batch and heads, float64: q (2, 3, 4, 8), k (2, 3, 7, 8)",
             {"q": randn(g, 2, 3, 4, 8, dtype=torch.float64),
              "k": randn(g, 2, 3, 7, 8, dtype=torch.float64)}),
    ]


SCORES = Exercise(
    name="attention_scores",
    chapter=CHAPTER,
    reference=ref.attention_scores,
    make_cases=_scores_cases,
    run=lambda f, a: f(a["q"], a["k"]),
    mistakes=[
        Mistake("no scaling",
                "Scores are not divided by sqrt(d_k); without it the softmax saturates as d_k "
                "grows.", lambda q, k: q @ k.transpose(-2, -1)),
        Mistake("divided by d_k",
                "You divide by d_k; the scale is sqrt(d_k) (math.sqrt(q.size(-1))).",
                lambda q, k: q @ k.transpose(-2, -1) / q.size(-1)),
        Mistake("multiplied by sqrt(d_k)",
                "You multiply by sqrt(d_k); divide by it.",
                lambda q, k: q @ k.transpose(-2, -1) * math.sqrt(q.size(-1))),
        Mistake("scaled by sqrt(L_k)",
                "You scale by the square root of the number of keys; the scale is sqrt(d_k), "
                "the size of the last dimension.",
                lambda q, k: q @ k.transpose(-2, -1) / math.sqrt(k.size(-2))),
    ],
)

# --------------------------------------------------------------------------- masks


def _causal_cases(seed: int) -> list[Case]:
    return [Case(f"seq_len={n}", {"seq_len": n}) for n in (1, 4, 9)]


CAUSAL = Exercise(
    name="causal_mask",
    chapter=CHAPTER,
    reference=ref.causal_mask,
    make_cases=_causal_cases,
    run=lambda f, a: f(a["seq_len"]),
    mistakes=[
        Mistake("strictly lower",
                "The diagonal is masked, so a position cannot attend to itself: keep it "
                "(tril with diagonal=0).",
                lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1)),
        Mistake("inverted",
                "True marks the future here; in this course True means 'may attend' (the "
                "convention of F.scaled_dot_product_attention), so the past is True.",
                lambda n: torch.ones(n, n, dtype=torch.bool).triu(1)),
        Mistake("upper triangle",
                "You kept the upper triangle: a query may attend to keys at or before its "
                "own position, which is the lower triangle (tril).",
                lambda n: torch.ones(n, n, dtype=torch.bool).triu()),
        Mistake("float mask",
                "The mask must be a bool tensor (dtype=torch.bool), not 0/1 numbers.",
                lambda n: torch.ones(n, n).tril()),
    ],
)


def _padding_cases(seed: int) -> list[Case]:
    return [
        Case("lengths [3, 1, 5], max_len 5", {"lengths": torch.tensor([3, 1, 5]), "max_len": 5}),
        Case("lengths [2], max_len 6", {"lengths": torch.tensor([2]), "max_len": 6}),
        Case("lengths [4, 4], max_len 4 (no padding)", {"lengths": torch.tensor([4, 4]), "max_len": 4}),
    ]


def _padding_2d(lengths: Tensor, max_len: int) -> Tensor:
    return torch.arange(max_len)[None, :] < lengths[:, None]


PADDING = Exercise(
    name="padding_mask",
    chapter=CHAPTER,
    reference=ref.padding_mask,
    make_cases=_padding_cases,
    run=lambda f, a: f(a["lengths"], a["max_len"]),
    mistakes=[
        Mistake("off by one",
                "One padding position too many is marked real: position p is real when "
                "p < length, not p <= length.",
                lambda lengths, n: (torch.arange(n)[None, :] <= lengths[:, None])[:, None, :]),
        Mistake("inverted",
                "True marks the padding here (like nn.MultiheadAttention's key_padding_mask); "
                "in this course True means 'may attend', so real tokens are True.",
                lambda lengths, n: ~_padding_2d(lengths, n)[:, None, :]),
        Mistake("missing query dimension",
                "The mask is (batch, max_len); add the query dimension so it is "
                "(batch, 1, max_len) and broadcasts over the queries.", _padding_2d),
    ],
)

# --------------------------------------------------------------------------- attention


def _sdpa_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    return [
        Case("self-attention (2, 5, 8), no mask",
             {"q": randn(g, 2, 5, 8), "k": randn(g, 2, 5, 8), "v": randn(g, 2, 5, 8), "mask": None}),
        Case("heads, L_q != L_k, d_v != d_k, float64",
             {"q": randn(g, 2, 3, 4, 8, dtype=f64), "k": randn(g, 2, 3, 6, 8, dtype=f64),
              "v": randn(g, 2, 3, 6, 5, dtype=f64), "mask": None}),
        Case("causal mask (6, 6)",
             {"q": randn(g, 2, 6, 4), "k": randn(g, 2, 6, 4), "v": randn(g, 2, 6, 3),
              "mask": ref.causal_mask(6)}),
        Case("padding mask (batch, 1, L_k)",
             {"q": randn(g, 3, 5, 4), "k": randn(g, 3, 5, 4), "v": randn(g, 3, 5, 4),
              "mask": ref.padding_mask(torch.tensor([5, 2, 3]), 5)}),
        Case("heads with a (batch, 1, 1, L_k) mask, float64",
             {"q": randn(g, 2, 2, 3, 4, dtype=f64), "k": randn(g, 2, 2, 5, 4, dtype=f64),
              "v": randn(g, 2, 2, 5, 4, dtype=f64),
              "mask": ref.padding_mask(torch.tensor([4, 1]), 5)[:, None]}),
        Case("large logits (x 30) with a causal mask",
             {"q": randn(g, 1, 5, 16) * 30, "k": randn(g, 1, 5, 16) * 30, "v": randn(g, 1, 5, 2),
              "mask": ref.causal_mask(5)}),
    ]


def _sdpa(q, k, v, mask=None, *, scale=True, fill=float("-inf"), dim=-1, invert=False):
    scores = q @ k.transpose(-2, -1)
    if scale:
        scores = scores / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(mask if invert else ~mask, fill)
    weights = ref.softmax(scores, dim=dim).nan_to_num(0.0)
    return weights @ v, weights


def _sdpa_mask_after_softmax(q, k, v, mask=None):
    weights = ref.softmax(ref.attention_scores(q, k), dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ v, weights


def _sdpa_weights_transposed(q, k, v, mask=None):
    out, weights = ref.scaled_dot_product_attention(q, k, v, mask)
    return out, weights.transpose(-2, -1)


SDPA = Exercise(
    name="scaled_dot_product_attention",
    chapter=CHAPTER,
    reference=ref.scaled_dot_product_attention,
    make_cases=_sdpa_cases,
    run=lambda f, a: f(a["q"], a["k"], a["v"], mask=a["mask"]),
    outputs=("output", "weights"),
    forbidden={"F.scaled_dot_product_attention": F.scaled_dot_product_attention},
    mistakes=[
        Mistake("no scaling",
                "The scores are not divided by sqrt(d_k).",
                lambda q, k, v, mask=None: _sdpa(q, k, v, mask, scale=False)),
        Mistake("softmax over queries",
                "The softmax runs over the query axis (dim=-2); each query's weights over "
                "the keys must sum to one (dim=-1).",
                lambda q, k, v, mask=None: _sdpa(q, k, v, mask, dim=-2)),
        Mistake("mask after softmax",
                "The mask is applied after the softmax, so the remaining weights no longer "
                "sum to one. Fill masked scores with -inf before the softmax.",
                _sdpa_mask_after_softmax),
        Mistake("masked with zero",
                "Masked scores are set to 0, which still gets weight after the softmax; use "
                "float('-inf').",
                lambda q, k, v, mask=None: _sdpa(q, k, v, mask, fill=0.0)),
        Mistake("inverted mask",
                "You hide the positions where the mask is True; True means 'may attend', "
                "so fill where the mask is False (~mask).",
                lambda q, k, v, mask=None: _sdpa(q, k, v, mask, invert=True)),
        Mistake("weights transposed",
                "The returned weights are (L_k, L_q); return them as (..., L_q, L_k).",
                _sdpa_weights_transposed),
    ],
)

register(SOFTMAX, SCORES, CAUSAL, PADDING, SDPA)
