"""What checking an exercise produces: the outcome of one call, the verdict on each
case and on the whole exercise, and the score. Showing a result is :mod:`render`'s job."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from torch import Tensor

from transformer_course.checks.exercise import Mistake


class Status(StrEnum):
    """The verdict on one exercise. The values are the strings stored in results JSON."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_IMPLEMENTED = "not implemented"
    FORBIDDEN = "forbidden"
    REFERENCE = "reference"  # the submission calls the reference instead of its own code


@dataclass
class Outcome:
    """What calling an implementation on one case produced (tensors and strings only,
    so that it crosses a process boundary without pickling)."""

    outputs: dict[str, Tensor] | None = None
    error: str | None = None
    not_implemented: bool = False
    forbidden: list[str] = field(default_factory=list)


# The autograder names its hidden cases ``hidden: <case>``; a notebook's check() has none.
HIDDEN_PREFIX = "hidden: "


@dataclass
class CaseResult:
    """The verdict on one case: ``message`` says what differs, ``mistake`` names the
    catalogued mistake whose output the student's matches."""

    name: str
    passed: bool
    message: str = ""
    mistake: str | None = None

    @property
    def hidden(self) -> bool:
        """True for one of the autograder's hidden cases."""
        return self.name.startswith(HIDDEN_PREFIX)


@dataclass
class CheckResult:
    """The verdict on one exercise. Shows itself as HTML in Jupyter and as text elsewhere.

    ``passed`` is True only when every case passed and no forbidden built-in was used.
    """

    exercise: str
    chapter: str
    status: Status
    cases: list[CaseResult]
    max_points: float
    hints: list[Mistake] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def passed(self) -> bool:
        return self.status == Status.PASSED

    @property
    def n_passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def score(self) -> float:
        """Points earned: the exercise's points shared equally among its cases."""
        if self.status in (Status.NOT_IMPLEMENTED, Status.FORBIDDEN, Status.REFERENCE) or not self.cases:
            return 0.0
        return self.max_points * self.n_passed / len(self.cases)

    def headline(self) -> str:
        from transformer_course.checks.render import headline

        return headline(self)

    def __str__(self) -> str:
        from transformer_course.checks.render import as_text

        return as_text(self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from transformer_course.checks.render import as_html

        return as_html(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; :meth:`from_dict` reads it back. A hint keeps its mistake's
        name and text, not its implementation."""
        return {
            "exercise": self.exercise,
            "chapter": self.chapter,
            "status": str(self.status),
            "cases": [{"name": c.name, "passed": c.passed, "message": c.message, "mistake": c.mistake}
                      for c in self.cases],
            "max_points": self.max_points,
            "hints": [{"name": h.name, "hint": h.hint} for h in self.hints],
            "forbidden": list(self.forbidden),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        """The result that :meth:`to_dict` wrote (hints without implementations)."""
        return cls(
            exercise=data["exercise"],
            chapter=data["chapter"],
            status=Status(data["status"]),
            cases=[CaseResult(**c) for c in data["cases"]],
            max_points=data["max_points"],
            hints=[Mistake(h["name"], h["hint"], None) for h in data["hints"]],
            forbidden=list(data["forbidden"]),
            note=data["note"],
        )
