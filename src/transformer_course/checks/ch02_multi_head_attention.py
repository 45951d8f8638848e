"""Chapter 2 (multi-head attention): visible cases and the catalogue of known mistakes.

Behaviours the chapter states, and the case that exercises each:

split_heads
    ``(B, H, L, D // H)``, head h holds      every case; "L == H" and "1 head" for the
    features h*Dh .. (h+1)*Dh - 1            shapes where a wrong order still fits
merge_heads
    ``(B, L, H * Dh)``, heads in order       every case
    works on the non-contiguous transpose    every case but "1 head" ("view after the
    (reshape, not view)                      transpose" raises there)
MultiHeadAttention
    ``w_q``, ``w_k``, ``w_v``, ``w_o`` by    every case (weights loaded by name)
    name; query/key/value projections
    scale by sqrt(d_head)                    every case
    masks (L_q, L_k), (B, 1, L_k) and        "causal self-attention", "cross-attention
    (B, L_q, L_k) (unsqueezed for heads)     with a (B, 1, L_k) padding mask", "(B, L_q,
                                             L_k) mask, different per batch and query"
    L_q != L_k (cross-attention), float64    "cross-attention L_q=3, L_k=7, 4 heads,
                                             float64"
    ``bias=False``                           "bias=False, 6 heads of size 2"
    ``self.attn_weights`` (B, H, L_q, L_k)   every case (second output)
    dropout on the weights, none in eval     "dropout=0.5 in eval mode (no dropout)"

The cases are built so that every catalogued mistake changes the result: shapes where
``L != H`` and ``L_q != L_k``, random (asymmetric) projections with biases, so that
swapping the query and key projections matters, and ``(B, L_q, L_k)`` masks that differ
per batch element and per query, with ``B == H`` so that a mask missing its head
dimension broadcasts silently instead of raising.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_course import multi_head as ref
from transformer_course.attention import causal_mask, padding_mask, scaled_dot_product_attention
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.kit import STATE, build_module, mutant, randn, random_state
from transformer_course.checks.registry import register
from transformer_course.checks.running import OutputError

CHAPTER = "02_multi_head_attention"

# --------------------------------------------------------------------------- split_heads


def _split_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("x (2, 5, 12), 3 heads", {"x": randn(g, 2, 5, 12), "n_heads": 3}),
        Case("x (1, 4, 8), 4 heads (L == H), float64",
             {"x": randn(g, 1, 4, 8, dtype=torch.float64), "n_heads": 4}),
        Case("x (3, 7, 6), 6 heads of size 1", {"x": randn(g, 3, 7, 6), "n_heads": 6}),
        Case("x (2, 3, 8), 1 head", {"x": randn(g, 2, 3, 8), "n_heads": 1}),
    ]


def _split_no_transpose(x: Tensor, n_heads: int) -> Tensor:
    b, n, d = x.shape
    return x.view(b, n, n_heads, d // n_heads)


def _split_direct_view(x: Tensor, n_heads: int) -> Tensor:
    b, n, d = x.shape
    return x.reshape(b, n_heads, n, d // n_heads)


def _split_strided(x: Tensor, n_heads: int) -> Tensor:
    b, n, d = x.shape
    return x.view(b, n, d // n_heads, n_heads).permute(0, 3, 1, 2)


SPLIT = Exercise(
    name="split_heads",
    chapter=CHAPTER,
    reference=ref.split_heads,
    make_cases=_split_cases,
    run=lambda f, a: f(a["x"], a["n_heads"]),
    mistakes=[
        Mistake("no transpose",
                "You return (B, L, H, Dh): after the view, transpose(1, 2) so the heads come "
                "before the positions and the result is (B, H, L, Dh).", _split_no_transpose),
        Mistake("reshaped straight to (B, H, L, Dh)",
                "Heads split without the transpose: reshaping (B, L, D) straight to "
                "(B, H, L, Dh) mixes different positions into one head. View as "
                "(B, L, H, Dh) first, then transpose(1, 2).", _split_direct_view),
        Mistake("features strided across heads",
                "Head h gets features h, h+H, h+2H, ...; it should get the consecutive block "
                "h*Dh .. (h+1)*Dh - 1: view as (B, L, H, Dh), not (B, L, Dh, H).",
                _split_strided),
    ],
)

# --------------------------------------------------------------------------- merge_heads


def _merge_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("x (2, 3, 5, 4)", {"x": randn(g, 2, 3, 5, 4)}),
        Case("x (1, 2, 6, 3), float64", {"x": randn(g, 1, 2, 6, 3, dtype=torch.float64)}),
        Case("x (3, 4, 4, 2) (L == H)", {"x": randn(g, 3, 4, 4, 2)}),
        Case("x (2, 1, 3, 5), 1 head", {"x": randn(g, 2, 1, 3, 5)}),
    ]


def _merge_no_transpose(x: Tensor) -> Tensor:
    b, h, n, dh = x.shape
    return x.reshape(b, n, h * dh)


def _merge_view(x: Tensor) -> Tensor:
    b, h, n, dh = x.shape
    return x.transpose(1, 2).view(b, n, h * dh)


def _merge_interleaved(x: Tensor) -> Tensor:
    b, h, n, dh = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, n, dh * h)


MERGE = Exercise(
    name="merge_heads",
    chapter=CHAPTER,
    reference=ref.merge_heads,
    make_cases=_merge_cases,
    run=lambda f, a: f(a["x"]),
    mistakes=[
        Mistake("no transpose",
                "Merged without the transpose: reshaping (B, H, L, Dh) straight to "
                "(B, L, H*Dh) mixes positions. transpose(1, 2) first, then reshape "
                "(reshape, not view: the transposed tensor is not contiguous).",
                _merge_no_transpose),
        Mistake("features interleaved",
                "The heads' features are interleaved (feature 0 of every head, then "
                "feature 1, ...); concatenate whole heads: transpose(1, 2) to "
                "(B, L, H, Dh), then reshape.", _merge_interleaved),
        Mistake("view after the transpose",
                "view() raises on the transposed tensor: after transpose(1, 2) its memory is "
                "no longer contiguous. Use reshape (or .contiguous().view).", _merge_view),
        Mistake("not reshaped",
                "You return (B, L, H, Dh): reshape to (B, L, H * Dh) to concatenate the heads.",
                lambda x: x.transpose(1, 2)),
    ],
)

# --------------------------------------------------------------------------- MultiHeadAttention


def _mha_case(g: torch.Generator, name: str, *, batch: int, l_q: int, l_k: int, d_model: int,
              n_heads: int, mask: Tensor | None = None, cross: bool = True, bias: bool = True,
              dtype: torch.dtype = torch.float32, dropout: float | None = None) -> Case:
    init = {"d_model": d_model, "n_heads": n_heads, "bias": bias}
    if dropout is not None:
        init["dropout"] = dropout
    # Random weights with a spread that gives peaked but not one-hot attention; the
    # biases are large enough that forgetting one shows.
    state = random_state(ref.MultiHeadAttention(**init), g, dtype, scale=1.5, bias=0.3)
    query = randn(g, batch, l_q, d_model, dtype=dtype)
    if cross:
        key, value = randn(g, batch, l_k, d_model, dtype=dtype), randn(g, batch, l_k, d_model, dtype=dtype)
    else:
        key = value = query
    return Case(name, {"init": init, STATE: state, "query": query, "key": key,
                       "value": value, "mask": mask})


def _per_query_mask(g: torch.Generator, batch: int, l_q: int, l_k: int) -> Tensor:
    """A random (B, L_q, L_k) mask, different for every batch element and query, with
    at least one visible key per query (fully masked rows are not graded)."""
    mask = torch.rand(batch, l_q, l_k, generator=g) < 0.5
    mask[..., 0] |= ~mask.any(-1)
    return mask


def _mha_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        _mha_case(g, "self-attention (2, 5, 12), 3 heads, no mask",
                  batch=2, l_q=5, l_k=5, d_model=12, n_heads=3, cross=False),
        _mha_case(g, "cross-attention L_q=3, L_k=7, 4 heads, float64",
                  batch=2, l_q=3, l_k=7, d_model=16, n_heads=4, dtype=torch.float64),
        _mha_case(g, "causal self-attention, (L, L) mask, float64",
                  batch=3, l_q=6, l_k=6, d_model=8, n_heads=2, cross=False,
                  mask=causal_mask(6), dtype=torch.float64),
        _mha_case(g, "cross-attention with a (B, 1, L_k) padding mask",
                  batch=3, l_q=4, l_k=6, d_model=8, n_heads=2,
                  mask=padding_mask(torch.tensor([6, 2, 4]), 6)),
        _mha_case(g, "(B, L_q, L_k) mask, different per batch and query, float64",
                  batch=2, l_q=4, l_k=5, d_model=12, n_heads=2,
                  mask=_per_query_mask(g, 2, 4, 5), dtype=torch.float64),
        _mha_case(g, "bias=False, 6 heads of size 2",
                  batch=1, l_q=5, l_k=4, d_model=12, n_heads=6, bias=False),
        _mha_case(g, "dropout=0.5 in eval mode (no dropout), causal mask",
                  batch=2, l_q=5, l_k=5, d_model=8, n_heads=2, cross=False,
                  mask=causal_mask(5), dropout=0.5),
    ]


def _run_mha(cls: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    module = build_module(cls, a["init"], a[STATE])
    out = module(a["query"], a["key"], a["value"], mask=a["mask"])
    weights = getattr(module, "attn_weights", None)
    if not isinstance(weights, Tensor):
        raise OutputError(
            "after a forward pass, self.attn_weights should hold the (B, H, L_q, L_k) "
            f"attention weights; it is {type(weights).__name__}"
        )
    return out, weights


class _MHAMutant(ref.MultiHeadAttention):
    """The reference with one step done wrong (switched on by class attributes)."""

    split_without_transpose = False
    merge_without_transpose = False
    scale_by_d_model = False
    no_output_projection = False
    swap_q_k = False
    mask_without_head_dim = False
    dropout_always = False

    def forward(self, query, key, value, mask=None):
        w_q, w_k = (self.w_k, self.w_q) if self.swap_q_k else (self.w_q, self.w_k)
        split = _split_direct_view if self.split_without_transpose else ref.split_heads
        q = split(w_q(query), self.n_heads)
        k = split(w_k(key), self.n_heads)
        v = split(self.w_v(value), self.n_heads)
        if self.scale_by_d_model:  # sdpa divides by sqrt(Dh); make it sqrt(D)
            q = q * math.sqrt(q.size(-1) / self.d_model)
        if mask is not None and mask.dim() == 3 and not self.mask_without_head_dim:
            mask = mask.unsqueeze(1)
        out, self.attn_weights = scaled_dot_product_attention(q, k, v, mask)
        if self.dropout_always:  # F.dropout's training=True default, whatever the mode
            out = F.dropout(self.attn_weights, self.dropout.p) @ v
        merged = _merge_no_transpose(out) if self.merge_without_transpose else ref.merge_heads(out)
        return merged if self.no_output_projection else self.w_o(merged)


MHA = Exercise(
    name="MultiHeadAttention",
    chapter=CHAPTER,
    reference=ref.MultiHeadAttention,
    make_cases=_mha_cases,
    run=_run_mha,
    outputs=("output", "attn_weights"),
    mistakes=[
        Mistake("heads split without transpose",
                "Heads split without the transpose: (B, L, D) reshaped straight to "
                "(B, H, L, Dh) mixes positions across heads. Use split_heads (view as "
                "(B, L, H, Dh), then transpose(1, 2)).", mutant(_MHAMutant, split_without_transpose=True)),
        Mistake("merge without transpose",
                "Heads merged without the transpose: (B, H, L, Dh) reshaped straight to "
                "(B, L, D) mixes positions. Use merge_heads (transpose(1, 2), then reshape).",
                mutant(_MHAMutant, merge_without_transpose=True)),
        Mistake("scaled by sqrt(d_model)",
                "The scores are divided by sqrt(d_model); each head works in d_head = "
                "d_model // n_heads dimensions, so divide by sqrt(d_head) (chapter 1's "
                "attention does this when it is given the split q and k).",
                mutant(_MHAMutant, scale_by_d_model=True)),
        Mistake("no output projection",
                "The output projection is missing: pass the merged heads through self.w_o.",
                mutant(_MHAMutant, no_output_projection=True)),
        Mistake("query and key projections swapped",
                "The query and key projections are swapped: queries come from w_q(query), "
                "keys from w_k(key).", mutant(_MHAMutant, swap_q_k=True)),
        Mistake("3-D mask without head dimension",
                "A (B, L_q, L_k) mask broadcast against the (B, H, L_q, L_k) scores lines its "
                "batch dimension up with the heads. Add the head dimension first: "
                "mask.unsqueeze(1) for a 3-D mask.", mutant(_MHAMutant, mask_without_head_dim=True)),
        Mistake("dropout in eval mode",
                "Dropout changes the output in eval mode: F.dropout(weights, p) drops "
                "whatever the mode (its training argument defaults to True). Use the "
                "nn.Dropout module (self.dropout(weights)), or pass training=self.training.",
                mutant(_MHAMutant, dropout_always=True)),
    ],
)

register(SPLIT, MERGE, MHA)
