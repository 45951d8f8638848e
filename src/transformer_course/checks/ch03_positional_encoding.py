"""Chapter 3 (positional encoding): visible cases and the catalogue of known mistakes.

Behaviours the chapter states, and the case that exercises each:

sinusoidal_positional_encoding
    float32 ``(max_len, d_model)``; sin in   every case ("table left in float64" and the
    even, cos in odd columns; exponent       layout mistakes); "max_len=1" (row 0 is
    2i/d_model; positions from 0             0, 1, 0, 1, ...)
PositionalEncoding
    buffer ``pe`` ``(max_len, d_model)``     every case (second output)
    ``x + pe[:L]``, L = x.size(1)            every case; "batch of one", "L == max_len"
    default ``max_len``                      "d_model=4, default max_len"
    follows the dtype of x; dropout none     "dropout=0.5 in eval mode (no dropout), ...
    in eval                                  float64 (the dtype of x)"
LearnedPositionalEmbedding
    ``x + embedding(0..L-1)``, float64 kept  every case; "(L == max_len), float64"
apply_rotary
    rotate-half pairs, ``base^(-2i/Dh)``     every case
    ``positions`` default 0..L-1             "x (2, 5, 8), default positions"
    given positions, (L,) or broadcast       "positions 4..9", "positions out of order",
    (B, 1, L)                                "per-sequence positions (2, 1, 5)"
    ``base``                                 "base=100000 (SmolLM2)"
    same shape and dtype as x                "x (7, 12), float64, ..."
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_course import positional as ref
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.kit import STATE, build_module, mutant, randn, random_state, run_module
from transformer_course.checks.registry import register
from transformer_course.checks.running import OutputError

CHAPTER = "03_positional_encoding"

# --------------------------------------------------------------------------- sinusoidal table


def _table(max_len: int, d_model: int, *, swap: bool = False, exponent: str = "2i",
           first: int = 0, layout: str = "interleaved") -> Tensor:
    """The sinusoidal table, with one thing optionally done wrong."""
    position = torch.arange(first, first + max_len, dtype=torch.float64)[:, None]
    if exponent == "2i":  # the right one: pair i uses 2i / d_model
        angle = position / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    elif exponent == "i":  # pair i uses i / d_model
        angle = position / 10000.0 ** (torch.arange(d_model // 2, dtype=torch.float64) / d_model)
    else:  # "column": column j uses j / d_model, so cos columns get (2i + 1) / d_model
        column = position / 10000.0 ** (torch.arange(d_model, dtype=torch.float64) / d_model)
        sin, cos = column[:, 0::2].sin(), column[:, 1::2].cos()
        return torch.stack([sin, cos], -1).flatten(1).float()
    sin, cos = angle.sin(), angle.cos()
    if swap:
        sin, cos = cos, sin
    if layout == "halves":
        return torch.cat([sin, cos], dim=-1).float()
    return torch.stack([sin, cos], dim=-1).flatten(1).float()  # sin, cos, sin, cos, ...


def _sinusoidal_cases(seed: int) -> list[Case]:
    return [Case(f"max_len={n}, d_model={d}", {"max_len": n, "d_model": d})
            for n, d in ((10, 16), (50, 6), (7, 64), (1, 4))]


SINUSOIDAL = Exercise(
    name="sinusoidal_positional_encoding",
    chapter=CHAPTER,
    reference=ref.sinusoidal_positional_encoding,
    make_cases=_sinusoidal_cases,
    run=lambda f, a: f(a["max_len"], a["d_model"]),
    mistakes=[
        Mistake("sin and cos swapped",
                "sin and cos are swapped: even columns 2i hold the sine, odd columns 2i+1 the "
                "cosine (row 0 reads 0, 1, 0, 1, ...).",
                lambda n, d: _table(n, d, swap=True)),
        Mistake("i/d_model exponent",
                "The frequencies use i/d_model; the exponent is 2i/d_model, where i numbers "
                "the (sin, cos) pairs (so it equals the even column index 2i / d_model).",
                lambda n, d: _table(n, d, exponent="i")),
        Mistake("column index exponent",
                "The cosine column 2i+1 uses the exponent (2i+1)/d_model; both columns of a "
                "pair share one angle, p / 10000^(2i/d_model).",
                lambda n, d: _table(n, d, exponent="column")),
        Mistake("positions from 1",
                "Positions are counted from 1; the first row is position 0 (sin 0 = 0, "
                "cos 0 = 1). Use torch.arange(max_len).",
                lambda n, d: _table(n, d, first=1)),
        Mistake("concatenated halves",
                "The table is [all sines | all cosines]; the original interleaves them: "
                "column 2i is sin, column 2i+1 is cos (pe[:, 0::2] and pe[:, 1::2]).",
                lambda n, d: _table(n, d, layout="halves")),
        Mistake("table left in float64",
                "The table is float64; the exercise returns float32 (compute the angles in "
                "float64 if you like, then .float() the result).",
                lambda n, d: _table(n, d).double()),
    ],
)

# --------------------------------------------------------------------------- PositionalEncoding


def _pe_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("d_model=8, max_len=20, x (2, 5, 8)",
             {"init": {"d_model": 8, "max_len": 20}, "x": randn(g, 2, 5, 8)}),
        Case("d_model=16, max_len=50, x (1, 12, 16) (batch of one)",
             {"init": {"d_model": 16, "max_len": 50}, "x": randn(g, 1, 12, 16)}),
        Case("d_model=6, max_len=6, x (3, 6, 6) (L == max_len)",
             {"init": {"d_model": 6, "max_len": 6}, "x": randn(g, 3, 6, 6)}),
        Case("d_model=4, default max_len, x (2, 3, 4)",
             {"init": {"d_model": 4}, "x": randn(g, 2, 3, 4)}),
        Case("dropout=0.5 in eval mode (no dropout), x (2, 4, 8) float64 (the dtype of x)",
             {"init": {"d_model": 8, "max_len": 10, "dropout": 0.5},
              "x": randn(g, 2, 4, 8, dtype=torch.float64)}),
    ]


def _run_pe(cls: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    module = build_module(cls, a["init"], None)
    pe = dict(module.named_buffers()).get("pe")
    if pe is None:
        raise OutputError(
            "PositionalEncoding has no buffer named 'pe': store the table with "
            "self.register_buffer('pe', table) (a buffer is saved and moved with the model "
            "but not trained)"
        )
    return module(a["x"]), pe


class _PEMutant(ref.PositionalEncoding):
    mistake = ""

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0):
        super().__init__(d_model, max_len, dropout)
        if self.mistake == "3-D buffer":
            self.pe = self.pe[None]  # (1, max_len, D), as some tutorials store it

    def forward(self, x):
        if self.mistake == "3-D buffer":
            return x + self.pe[:, : x.size(1)]
        if self.mistake == "batch slice":
            return x + self.pe[: x.size(0)]
        if self.mistake == "not added":
            return self.pe[: x.size(1)]
        if self.mistake == "scaled":
            return x * math.sqrt(self.pe.size(-1)) + self.pe[: x.size(1)]
        if self.mistake == "dropout always":  # F.dropout's training=True default
            return F.dropout(x + self.pe[: x.size(1)], self.dropout.p)
        return super().forward(x)  # no mistake: the reference


POSITIONAL_ENCODING = Exercise(
    name="PositionalEncoding",
    chapter=CHAPTER,
    reference=ref.PositionalEncoding,
    make_cases=_pe_cases,
    run=_run_pe,
    outputs=("output", "pe"),
    mistakes=[
        Mistake("sliced along the batch",
                "pe[:x.size(0)] takes as many rows as the batch has sequences; the table is "
                "indexed by position, x.size(1) (x is batch-first, (B, L, D)).",
                mutant(_PEMutant, mistake="batch slice")),
        Mistake("input not added",
                "forward returns the table alone; it should return x + pe[:L].",
                mutant(_PEMutant, mistake="not added")),
        Mistake("input scaled by sqrt(d_model)",
                "x is multiplied by sqrt(d_model); that scaling belongs to the token "
                "embedding (chapter 4), not here: return x + pe[:L].", mutant(_PEMutant, mistake="scaled")),
        Mistake("pe stored as (1, max_len, d_model)",
                "The buffer pe has an extra leading dimension; store it as "
                "(max_len, d_model), the shape later chapters load by name, and slice "
                "pe[:L].", mutant(_PEMutant, mistake="3-D buffer")),
        Mistake("dropout in eval mode",
                "Dropout changes the output in eval mode: F.dropout(x, p) drops whatever the "
                "mode (its training argument defaults to True). Apply the nn.Dropout module "
                "created in __init__ (self.dropout(x + pe[:L])).",
                mutant(_PEMutant, mistake="dropout always")),
    ],
)

# --------------------------------------------------------------------------- learned positions


def _learned_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, max_len, d_model, shape, dtype=torch.float32):
        init = {"max_len": max_len, "d_model": d_model}
        state = random_state(ref.LearnedPositionalEmbedding(**init), g, dtype)
        return Case(name, {"init": init, STATE: state, "x": randn(g, *shape, dtype=dtype)})

    return [
        case("max_len=10, x (2, 6, 8)", 10, 8, (2, 6, 8)),
        case("max_len=12, x (1, 7, 4) (batch of one)", 12, 4, (1, 7, 4)),
        case("max_len=5, x (3, 5, 6) (L == max_len), float64", 5, 6, (3, 5, 6), torch.float64),
    ]


class _LearnedMutant(ref.LearnedPositionalEmbedding):
    mistake = ""

    def forward(self, x):
        length = x.size(1)
        if self.mistake == "from 1":
            return x + self.embedding(torch.arange(1, length + 1))
        if self.mistake == "batch slice":
            return x + self.embedding(torch.arange(x.size(0)))
        if self.mistake == "not added":
            return self.embedding(torch.arange(length))
        return super().forward(x)  # no mistake: the reference


LEARNED = Exercise(
    name="LearnedPositionalEmbedding",
    chapter=CHAPTER,
    reference=ref.LearnedPositionalEmbedding,
    make_cases=_learned_cases,
    run=lambda cls, a: run_module(cls, a, "x"),
    mistakes=[
        Mistake("positions from 1",
                "Positions are counted from 1; the first token has position 0: "
                "self.embedding(torch.arange(L)).", mutant(_LearnedMutant, mistake="from 1")),
        Mistake("sliced along the batch",
                "You look up positions 0..B-1 (x.size(0)); the positions are 0..L-1, "
                "L = x.size(1).", mutant(_LearnedMutant, mistake="batch slice")),
        Mistake("input not added",
                "forward returns the position embeddings alone; return x + embedding(0..L-1).",
                mutant(_LearnedMutant, mistake="not added")),
    ],
)

# --------------------------------------------------------------------------- rotary


def _rotary(x: Tensor, positions: Tensor | None = None, base: float = 10000.0, *,
            pairs: str = "half", direction: float = 1.0, first: int = 0, exponent: str = "2i",
            angles: str = "cat", use_positions: bool = True, use_base: bool = True) -> Tensor:
    """RoPE with one thing optionally done wrong."""
    d_head, length = x.size(-1), x.size(-2)
    if positions is None or not use_positions:
        positions = torch.arange(first, first + length)
    else:
        positions = positions + first
    base = base if use_base else 10000.0
    half = torch.arange(d_head // 2, dtype=torch.float64)
    exp = (2 * half if exponent == "2i" else half) / d_head
    angle = positions.to(torch.float64)[..., None] * base ** -exp * direction  # (..., L, Dh/2)
    cos, sin = angle.cos(), angle.sin()
    x64 = x.to(torch.float64)
    if pairs == "interleaved":  # pairs (2i, 2i+1), as in GPT-J or llama.cpp
        x1, x2 = x64[..., 0::2], x64[..., 1::2]
        out = torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).flatten(-2)
        return out.to(x.dtype)
    if angles == "repeat_interleave":  # frequencies f0, f0, f1, f1, ... with rotate-half
        cos, sin = cos.repeat_interleave(2, -1), sin.repeat_interleave(2, -1)
    else:
        cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    x1, x2 = x64[..., : d_head // 2], x64[..., d_head // 2 :]
    return (x64 * cos + torch.cat([-x2, x1], -1) * sin).to(x.dtype)


def _rotary_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("x (2, 5, 8), default positions",
             {"x": randn(g, 2, 5, 8), "positions": None, "base": 10000.0}),
        Case("x (1, 3, 6, 16), positions 4..9 (continuing a sequence)",
             {"x": randn(g, 1, 3, 6, 16), "positions": torch.arange(4, 10), "base": 10000.0}),
        Case("x (2, 2, 4, 8), base=100000 (SmolLM2)",
             {"x": randn(g, 2, 2, 4, 8), "positions": None, "base": 100000.0}),
        Case("x (7, 12), float64, positions out of order",
             {"x": randn(g, 7, 12, dtype=torch.float64),
              "positions": torch.tensor([0, 3, 3, 10, 2, 25, 1]), "base": 10000.0}),
        Case("x (2, 3, 5, 8), per-sequence positions (2, 1, 5)",
             {"x": randn(g, 2, 3, 5, 8), "positions": torch.tensor([[[0, 1, 2, 3, 4]],
                                                                     [[7, 8, 9, 10, 11]]]),
              "base": 10000.0}),
    ]


def _rotary_mutant(**options: Any):
    return lambda x, positions=None, base=10000.0: _rotary(x, positions, base, **options)


ROTARY = Exercise(
    name="apply_rotary",
    chapter=CHAPTER,
    reference=ref.apply_rotary,
    make_cases=_rotary_cases,
    run=lambda f, a: f(a["x"], positions=a["positions"], base=a["base"]),
    # A float64 case is there to check that the dtype is kept; angles computed in
    # float32 (as transformers does) are fine, so float64 gets the float32 tolerance.
    atol64=1e-5,
    mistakes=[
        Mistake("interleaved pairs",
                "You rotate adjacent pairs (2i, 2i+1) (the GPT-J / llama.cpp layout); Llama "
                "in transformers pairs feature i with i + Dh/2 (\"rotate half\"): "
                "x * cos + cat([-x2, x1]) * sin with x1, x2 the two halves.",
                _rotary_mutant(pairs="interleaved")),
        Mistake("wrong direction",
                "The rotation goes the wrong way (by -angle): rotate_half(x) is "
                "cat([-x2, x1]), not cat([x2, -x1]); or sin has the wrong sign.",
                _rotary_mutant(direction=-1.0)),
        Mistake("positions from 1",
                "Positions are counted from 1; the first token is position 0 (it is not "
                "rotated at all).", _rotary_mutant(first=1)),
        Mistake("i/Dh frequencies",
                "The frequencies use base^(-i/Dh); pair i rotates with base^(-2i/Dh) "
                "(torch.arange(0, Dh, 2) / Dh).", _rotary_mutant(exponent="i")),
        Mistake("angles interleaved",
                "The angles are repeated as f0, f0, f1, f1, ... (repeat_interleave), which "
                "belongs to the interleaved-pair layout; with rotate-half, feature i and "
                "i + Dh/2 share an angle: torch.cat([angle, angle], -1).",
                _rotary_mutant(angles="repeat_interleave")),
        Mistake("positions ignored",
                "The positions argument is ignored; use it when it is given, and 0..L-1 "
                "only when it is None.", _rotary_mutant(use_positions=False)),
        Mistake("base ignored",
                "The base argument is ignored (10000 is used); SmolLM2 uses base=100000.",
                _rotary_mutant(use_base=False)),
    ],
)

register(SINUSOIDAL, POSITIONAL_ENCODING, LEARNED, ROTARY)
