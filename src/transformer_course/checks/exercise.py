"""The declarative description of a graded exercise: its cases, how to call an
implementation on one, and the catalogue of known mistakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from transformer_course.checks.rubric import points_for


@dataclass(frozen=True)
class Case:
    """One test case: a name a student can read and the arguments of the call.

    ``args`` values are tensors, dicts of tensors (a state dict) or JSON values
    (numbers, strings, booleans, None, lists), so a case can cross a process boundary.
    """

    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Mistake:
    """A known wrong variant of an exercise and the hint shown when a student's output
    matches it. ``impl`` stands in for the student's object (same signature)."""

    name: str
    hint: str
    impl: Any


@dataclass
class Exercise:
    """A graded exercise: one function or class a student writes, checked on
    deterministic cases against the reference and worth the points ``rubric.toml`` gives.

    Attributes:
        name: the graded object's name (``softmax``, ``MultiHeadAttention``).
        chapter: the chapter id (``01_attention``).
        reference: the reference object.
        make_cases: ``seed -> list[Case]``; deterministic for a given seed.
        run: ``(implementation, args) -> output``; calls the object the way the
            exercise asks (for a class: build it, load weights, call forward).
        outputs: names of the returned tensors; one name means a single tensor,
            several mean a tuple in that order.
        mistakes: the catalogue of known wrong variants.
        forbidden: ``{label: function}`` that the implementation may not call: torch
            functions, or Python functions such as the course's own helpers.
        rtol, atol: the floor of the tolerance for floating-point outputs (float64
            cases use ``atol64``); on top of it comes ``judging.BAND_FACTOR`` times the
            reference's own error on the case (see ``prepare.prepare``).
        keep: names of tensor arguments copied into the case data (``args/<name>``)
            for ``compare`` (a prompt that must come back unchanged).
        compare: optional ``(case data, actual outputs) -> message or None`` replacing
            the default comparison (``judging.compare_outputs``) of a whole case; the
            case data is what ``prepare.prepare`` stored for it. Sampling exercises use
            it to judge the distribution of what was drawn.
    """

    name: str
    chapter: str
    reference: Any
    make_cases: Callable[[int], list[Case]]
    run: Callable[[Any, dict[str, Any]], Any]
    outputs: tuple[str, ...] = ("output",)
    mistakes: list[Mistake] = field(default_factory=list)
    forbidden: dict[str, Callable] = field(default_factory=dict)
    rtol: float = 1e-4
    atol: float = 1e-5
    atol64: float = 1e-9
    keep: tuple[str, ...] = ()
    compare: Callable[[dict[str, Tensor], dict[str, Tensor]], str | None] | None = None

    @property
    def points(self) -> int:
        return points_for(self.chapter, self.name)
