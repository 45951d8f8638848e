"""The machinery shared by the in-notebook checks and the autograder.

An :class:`Exercise` knows how to build its test cases, how to call an implementation on
a case (:attr:`Exercise.run`) and which known mistakes to recognise. Running a case
(:func:`execute`) and judging the outputs (:func:`judge`) are separate steps so that the
autograder can run the student's code in a child process and judge in the parent, while
``check`` does both in the notebook's own process.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

# --------------------------------------------------------------------------- data model


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
    """A graded exercise of the course, as COURSE_SPEC.md names it.

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
        forbidden: ``{label: torch function}`` that the implementation may not call.
        rtol, atol: tolerances for floating-point outputs (float64 cases use
            ``atol64``).
        compare: optional ``(expected, actual) -> message or None`` replacing the
            default tensor comparison for one output.
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
    compare: Callable[[Tensor, Tensor], str | None] | None = None

    @property
    def points(self) -> int:
        from transformer_course.checks.rubric import points_for

        return points_for(self.chapter, self.name)


@dataclass
class Outcome:
    """What calling an implementation on one case produced (picklable-free: tensors and
    strings only)."""

    outputs: dict[str, Tensor] | None = None
    error: str | None = None
    not_implemented: bool = False
    forbidden: list[str] = field(default_factory=list)


@dataclass
class CaseResult:
    name: str
    passed: bool
    message: str = ""
    mistake: str | None = None


@dataclass
class CheckResult:
    """The verdict on one exercise. Shows itself as HTML in Jupyter and as text elsewhere.

    ``passed`` is True only when every case passed and no forbidden built-in was used.
    """

    exercise: str
    chapter: str
    status: str  # "passed", "failed", "not implemented", "forbidden"
    cases: list[CaseResult]
    max_points: float
    hints: list[Mistake] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def n_passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def score(self) -> float:
        """Points earned: the exercise's points shared equally among its cases."""
        if self.status in ("not implemented", "forbidden") or not self.cases:
            return 0.0
        return self.max_points * self.n_passed / len(self.cases)

    def headline(self) -> str:
        if self.status == "passed":
            return f"{self.exercise}: passed all {len(self.cases)} cases."
        if self.status == "not implemented":
            return f"{self.exercise}: not implemented yet (it still raises NotImplementedError)."
        if self.status == "forbidden":
            used = ", ".join(self.forbidden)
            return (
                f"{self.exercise}: uses {used}, which this exercise asks you to write "
                "yourself. Replace it with your own code (earlier exercises are fine)."
            )
        return f"{self.exercise}: {self.n_passed} of {len(self.cases)} cases passed."

    def __str__(self) -> str:
        lines = [("PASS " if self.passed else "FAIL ") + self.headline()]
        if self.note:
            lines.append(f"  {self.note}")
        for hint in self.hints:
            lines.append(f"  Likely mistake: {hint.hint}")
        if self.status == "failed":
            for case in self.cases:
                mark = "ok  " if case.passed else "FAIL"
                lines.append(f"  [{mark}] {case.name}" + ("" if case.passed else f": {case.message}"))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from html import escape

        colour = "#1a7f37" if self.passed else "#cf222e"
        if self.status == "not implemented":
            colour = "#9a6700"
        icon = "&#10004;" if self.passed else "&#10008;"
        parts = [
            f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">',
            f'<b style="color:{colour}">{icon} {escape(self.headline())}</b>',
        ]
        if self.note:
            parts.append(f"<div>{escape(self.note)}</div>")
        for hint in self.hints:
            parts.append(f"<div><b>Likely mistake:</b> {escape(hint.hint)}</div>")
        if self.status == "failed":
            rows = "".join(
                f"<tr><td>{'&#10004;' if c.passed else '&#10008;'}</td>"
                f"<td>{escape(c.name)}</td><td>{escape(c.message)}</td></tr>"
                for c in self.cases
            )
            parts.append(f'<table style="font-size:90%">{rows}</table>')
        parts.append("</div>")
        return "".join(parts)


# --------------------------------------------------------------------------- running


class OutputError(Exception):
    """The implementation returned something of the wrong kind (not a shape mismatch)."""


class _ForbiddenCalls(TorchFunctionMode):
    """Records calls to forbidden torch functions, however they are reached
    (``torch.softmax``, ``F.softmax``, ``x.softmax``, or inside ``nn.LayerNorm``)."""

    def __init__(self, forbidden: dict[str, Callable]):
        super().__init__()
        self.labels = {func: label for label, func in forbidden.items()}
        self.used: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        label = self.labels.get(func)
        if label is not None and label not in self.used:
            self.used.append(label)
        return func(*args, **(kwargs or {}))


def collect_outputs(raw: Any, names: Sequence[str]) -> dict[str, Tensor]:
    """Turn what an implementation returned into ``{name: plain Tensor}``.

    Raises:
        OutputError: with a message a student can act on, for a wrong kind of return.
    """
    if len(names) == 1:
        values = [raw]
    else:
        if not isinstance(raw, (tuple, list)) or len(raw) != len(names):
            got = type(raw).__name__ + (f" of length {len(raw)}" if isinstance(raw, (tuple, list)) else "")
            raise OutputError(f"expected a tuple ({', '.join(names)}), got {got}")
        values = list(raw)
    outputs = {}
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, Tensor):
            raise OutputError(f"'{name}' should be a torch.Tensor, got {type(value).__name__}")
        outputs[name] = value.detach().as_subclass(Tensor).clone()
    return outputs


def execute(exercise: Exercise, impl: Any, case: Case) -> Outcome:
    """Call ``impl`` on one case and capture outputs, errors and forbidden calls.

    Never raises for anything the implementation does wrong.
    """
    monitor = _ForbiddenCalls(exercise.forbidden)
    try:
        torch.manual_seed(0)
        with torch.no_grad(), monitor:
            raw = exercise.run(impl, case.args)
        outputs = collect_outputs(raw, exercise.outputs)
        return Outcome(outputs=outputs, forbidden=monitor.used)
    except NotImplementedError:
        return Outcome(not_implemented=True, forbidden=monitor.used)
    except OutputError as err:
        return Outcome(error=str(err), forbidden=monitor.used)
    except Exception as err:  # noqa: BLE001 - any student error becomes feedback
        return Outcome(error=_describe_exception(err), forbidden=monitor.used)


def _describe_exception(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    where = ""
    for frame in reversed(frames):
        if "transformer_course" not in frame.filename.replace("\\", "/").split("/site-packages/")[-1]:
            where = f" (line {frame.lineno}: {frame.line})" if frame.line else f" (line {frame.lineno})"
            break
    return f"raised {type(err).__name__}: {err}{where}"


# --------------------------------------------------------------------------- judging


def compare_tensors(expected: Tensor, actual: Tensor, rtol: float, atol: float) -> str | None:
    """None when ``actual`` matches ``expected``; otherwise what differs, in words."""
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    if expected.numel() == 0:
        return None
    if expected.dtype.is_floating_point or expected.dtype.is_complex:
        nan_expected, nan_actual = expected.isnan(), actual.isnan()
        if (nan_actual & ~nan_expected).any():
            index = _first_index(nan_actual & ~nan_expected)
            return f"NaN at index {index}, expected {expected[index].item():.6g}"
        inf_actual = actual.isinf() & ~expected.isinf()
        if inf_actual.any():
            index = _first_index(inf_actual)
            return f"{actual[index].item()} at index {index}, expected {expected[index].item():.6g}"
        close = torch.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
        if bool(close.all()):
            return None
        diff = (actual - expected).abs().nan_to_num(0.0, posinf=math.inf)
        index = _first_index(~close)
        return (
            f"values differ: max abs error {diff.max().item():.3g}; first at index {index}: "
            f"got {actual[index].item():.6g}, expected {expected[index].item():.6g}"
        )
    different = actual != expected
    if not different.any():
        return None
    index = _first_index(different)
    return (
        f"{int(different.sum())} of {expected.numel()} values differ; first at index {index}: "
        f"got {actual[index].item()}, expected {expected[index].item()}"
    )


def _first_index(flags: Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in flags.nonzero()[0])


def compare_outputs(
    exercise: Exercise, expected: dict[str, Tensor], actual: dict[str, Tensor]
) -> str | None:
    """None when every output matches; otherwise a message naming the first mismatch."""
    for name in exercise.outputs:
        want, got = expected[name], actual[name]
        if exercise.compare is not None:
            problem = exercise.compare(want, got)
        else:
            atol = exercise.atol64 if want.dtype == torch.float64 else exercise.atol
            problem = compare_tensors(want, got, exercise.rtol, atol)
        if problem:
            return problem if len(exercise.outputs) == 1 else f"{name}: {problem}"
    return None


def judge(
    exercise: Exercise,
    cases: Sequence[Case],
    outcomes: Sequence[Outcome],
    expected: Sequence[dict[str, Tensor]],
    mistake_outputs: Callable[[], dict[str, Sequence[dict[str, Tensor] | None]]] | None = None,
) -> CheckResult:
    """Compare a student's outcomes with the expected outputs and name likely mistakes.

    Args:
        mistake_outputs: returns ``{mistake name: outputs per case (None if it
            raised)}``; called only when a case fails. Defaults to computing them in
            this process.
    """
    if mistake_outputs is None:
        mistake_outputs = lambda: catalogue_outputs(exercise, cases)  # noqa: E731
    catalogue: dict[str, Sequence[dict[str, Tensor] | None]] | None = None
    forbidden = sorted({label for o in outcomes for label in o.forbidden})
    if any(o.not_implemented for o in outcomes):
        status = "not implemented"
    elif forbidden:
        status = "forbidden"
    else:
        status = "passed"
    results: list[CaseResult] = []
    matches: dict[str, int] = {}
    for i, (case, outcome, want) in enumerate(zip(cases, outcomes, expected, strict=True)):
        if outcome.not_implemented:
            results.append(CaseResult(case.name, False, "not implemented yet"))
            continue
        if outcome.error is not None or outcome.outputs is None:
            results.append(CaseResult(case.name, False, outcome.error or "no output"))
            continue
        problem = compare_outputs(exercise, want, outcome.outputs)
        if problem is None:
            results.append(CaseResult(case.name, True))
            continue
        result = CaseResult(case.name, False, problem)
        if catalogue is None:
            catalogue = mistake_outputs()
        for mistake in exercise.mistakes:
            theirs = catalogue[mistake.name][i]
            if theirs is not None and compare_outputs(exercise, theirs, outcome.outputs) is None:
                matches[mistake.name] = matches.get(mistake.name, 0) + 1
                result.mistake = result.mistake or mistake.name
        results.append(result)
    if status == "passed" and not all(r.passed for r in results):
        status = "failed"
    hints = []
    if status == "failed" and matches:
        best = max(matches.values())
        hints = [m for m in exercise.mistakes if matches.get(m.name) == best]
    return CheckResult(
        exercise=exercise.name,
        chapter=exercise.chapter,
        status=status,
        cases=results,
        max_points=exercise.points,
        hints=hints,
        forbidden=forbidden,
    )


# --------------------------------------------------------------------------- caching

_CACHE: dict[tuple[str, int], tuple[list[Case], list[dict[str, Tensor]], dict]] = {}


def reference_run(exercise: Exercise, seed: int) -> tuple[list[Case], list[dict[str, Tensor]]]:
    """The cases for ``seed`` and the reference's outputs on them (cached)."""
    cases, expected, _ = _prepared(exercise, seed)
    return cases, expected


def _prepared(exercise: Exercise, seed: int):
    key = (exercise.name, seed)
    if key not in _CACHE and (shipped := stored.load_prepared(exercise.name, seed)) is not None:
        _CACHE[key] = shipped  # the student edition: stored at release time, no reference
    if key not in _CACHE:
        cases = exercise.make_cases(seed)
        expected = []
        for case in cases:
            outcome = execute(exercise, exercise.reference, case)
            if outcome.outputs is None:
                raise RuntimeError(
                    f"reference for {exercise.name} failed on case {case.name!r}: {outcome.error}"
                )
            expected.append(outcome.outputs)
        _CACHE[key] = (cases, expected, {})
    return _CACHE[key]


def catalogue_outputs(
    exercise: Exercise, cases: Sequence[Case]
) -> dict[str, list[dict[str, Tensor] | None]]:
    """Each catalogued mistake's outputs on ``cases`` (None where it raised)."""
    found: dict[str, list[dict[str, Tensor] | None]] = {}
    for mistake in exercise.mistakes:
        found[mistake.name] = [execute(exercise, mistake.impl, case).outputs for case in cases]
    return found


def mistake_run(exercise: Exercise, seed: int) -> dict[str, list[dict[str, Tensor] | None]]:
    """Cached :func:`catalogue_outputs` for the cases of ``seed``."""
    cases, _, mistakes = _prepared(exercise, seed)
    if not mistakes and exercise.mistakes:
        mistakes.update(catalogue_outputs(exercise, cases))
    return mistakes


# --------------------------------------------------------------------------- helpers for runs


def build_module(cls: type, init: dict[str, Any], state_dict: dict[str, Tensor] | None) -> nn.Module:
    """Instantiate ``cls(**init)``, load ``state_dict`` by name and switch to eval mode.

    Raises:
        OutputError: when a parameter the exercise names is missing or misshapen.
    """
    module = cls(**init)
    if not isinstance(module, nn.Module):
        raise OutputError(f"{cls.__name__}(...) should be an nn.Module subclass")
    if state_dict is not None:
        own = module.state_dict()
        missing = [k for k in state_dict if k not in own]
        if missing:
            raise OutputError(
                f"{cls.__name__} has no parameter or buffer named {missing[0]!r}; the checks load "
                f"reference weights by name, so use the names the exercise gives "
                f"(expected: {', '.join(sorted(state_dict))})"
            )
        for key, value in state_dict.items():
            if own[key].shape != value.shape:
                raise OutputError(
                    f"{cls.__name__}.{key} has shape {tuple(own[key].shape)}, "
                    f"expected {tuple(value.shape)}"
                )
        dtype = _state_dtype(state_dict)
        if dtype is not None:
            module.to(dtype)  # before loading, so float64 weights are not rounded
        module.load_state_dict(state_dict, strict=False)
    return module.eval()


def _state_dtype(state_dict: dict[str, Tensor] | None) -> torch.dtype | None:
    if not state_dict:
        return None
    for value in state_dict.values():
        if value.dtype.is_floating_point:
            return value.dtype
    return None


def randn(generator: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal tensor from ``generator`` (float64 draws cast, so that a float32
    and a float64 case with the same seed hold the same numbers)."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


from transformer_course.checks import stored  # noqa: E402 - stored data needs Case, defined above
