"""Judging a case: compare an implementation's outputs with the prepared data within a
tolerance, and turn a whole exercise's outcomes into a :class:`CheckResult`. A pure
step: nothing here runs the reference or a mistake."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from transformer_course.checks.exercise import Case, Exercise
from transformer_course.checks.results import CaseResult, CheckResult, Outcome, Status

BAND_FACTOR = 10.0
"""A floating-point output passes when its error against the float64 truth is within
``atol + rtol * |truth| + BAND_FACTOR * band``, ``band`` being the reference's own error
on the case (``prepare.prepare``): a correct implementation written another way makes errors
of the same size as the reference's, on well- and ill-conditioned cases alike."""


def compare_tensors(expected: Tensor, actual: Tensor, rtol: float, atol: float,
                    truth: Tensor | None = None) -> str | None:
    """None when ``actual`` matches; otherwise what differs, in words.

    Shape and dtype must be those of ``expected``. Values are compared with ``truth``
    when given (the float64 reference), else with ``expected``, within
    ``atol + rtol * |want|`` for floating-point tensors and exactly otherwise.
    """
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    if expected.numel() == 0:
        return None
    if expected.dtype.is_floating_point or expected.dtype.is_complex:
        want = expected if truth is None else truth
        actual = actual.to(want.dtype)
        nan_expected, nan_actual = want.isnan(), actual.isnan()
        if (nan_actual & ~nan_expected).any():
            index = _first_index(nan_actual & ~nan_expected)
            return f"NaN at index {index}, expected {want[index].item():.6g}"
        inf_actual = actual.isinf() & ~want.isinf()
        if inf_actual.any():
            index = _first_index(inf_actual)
            return f"{actual[index].item()} at index {index}, expected {want[index].item():.6g}"
        close = torch.isclose(actual, want, rtol=rtol, atol=atol, equal_nan=True)
        if bool(close.all()):
            return None
        diff = (actual - want).abs().nan_to_num(0.0, posinf=math.inf)
        index = _first_index(~close)
        return (
            f"values differ: max abs error {diff.max().item():.3g}; first at index {index}: "
            f"got {actual[index].item():.6g}, expected {want[index].item():.6g}"
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


def tolerance(exercise: Exercise, data: Mapping[str, Tensor], name: str) -> tuple[float, float]:
    """``(rtol, atol)`` for output ``name`` of a case whose prepared data is ``data``:
    the exercise's floor plus :data:`BAND_FACTOR` times the reference's own error."""
    expected = data[f"expected/{name}"]
    atol = exercise.atol64 if expected.dtype == torch.float64 else exercise.atol
    band = data.get(f"band/{name}")
    return exercise.rtol, atol + (BAND_FACTOR * float(band) if band is not None else 0.0)


def compare_outputs(
    exercise: Exercise, data: Mapping[str, Tensor], actual: Mapping[str, Tensor]
) -> str | None:
    """None when every output of a case matches its prepared data (layout in
    ``prepare.prepare``); otherwise a message naming the first mismatch."""
    if exercise.compare is not None:
        return exercise.compare(dict(data), dict(actual))
    for name in exercise.outputs:
        rtol, atol = tolerance(exercise, data, name)
        problem = compare_tensors(data[f"expected/{name}"], actual[name], rtol, atol,
                                  data.get(f"truth/{name}"))
        if problem:
            return problem if len(exercise.outputs) == 1 else f"{name}: {problem}"
    return None


def error_ratio(exercise: Exercise, data: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> float:
    """The largest ``|actual - truth| / tolerance`` over the floating-point outputs of a
    case (a case passes at most 1); ``inf`` for a wrong shape, dtype, NaN or any
    difference in an exact output; 0 for an exact match."""
    worst = 0.0
    for name in exercise.outputs:
        want, got = data[f"expected/{name}"], actual[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            return math.inf
        truth = data.get(f"truth/{name}")
        if truth is None:
            if not torch.equal(got, want):
                return math.inf
            continue
        rtol, atol = tolerance(exercise, data, name)
        got = got.to(torch.float64)
        if bool(((got.isnan() != truth.isnan()) | (got.isinf() & (got != truth))).any()):
            return math.inf
        finite = truth.isfinite()
        err = (got - truth).abs()[finite]
        tol = atol + rtol * truth.abs()[finite]
        if err.numel():
            worst = max(worst, float((err / tol).max()))
    return worst


MistakeData = Mapping[str, Sequence["dict[str, Tensor] | None"]]


def judge(
    exercise: Exercise,
    cases: Sequence[Case],
    outcomes: Sequence[Outcome],
    data: Sequence[Mapping[str, Tensor]],
    mistakes: MistakeData | Callable[[], MistakeData],
) -> CheckResult:
    """Compare a student's outcomes with the prepared data and name likely mistakes.

    A pure function of its arguments: it never runs the reference or a mistake.

    Args:
        cases: the cases the outcomes belong to.
        outcomes: what the student's code produced on each case.
        data: the prepared data of each case (layout in ``prepare.prepare``).
        mistakes: ``{mistake name: prepared data per case (None where it raised)}``,
            or a function returning it, called only when a case fails.
    """
    catalogue: MistakeData | None = None
    forbidden = sorted({label for o in outcomes for label in o.forbidden})
    if any(o.not_implemented for o in outcomes):
        status = Status.NOT_IMPLEMENTED
    elif forbidden:
        status = Status.FORBIDDEN
    else:
        status = Status.PASSED
    results: list[CaseResult] = []
    matches: dict[str, int] = {}
    raised: list[int] = []
    for i, (case, outcome, want) in enumerate(zip(cases, outcomes, data, strict=True)):
        if outcome.not_implemented:
            results.append(CaseResult(case.name, False, "not implemented yet"))
            continue
        if outcome.error is not None or outcome.outputs is None:
            results.append(CaseResult(case.name, False, outcome.error or "no output"))
            raised.append(i)
            continue
        problem = compare_outputs(exercise, want, outcome.outputs)
        if problem is None:
            results.append(CaseResult(case.name, True))
            continue
        result = CaseResult(case.name, False, problem)
        if catalogue is None:
            catalogue = mistakes() if callable(mistakes) else mistakes
        for mistake in exercise.mistakes:
            theirs = catalogue[mistake.name][i]
            if theirs is not None and compare_outputs(exercise, theirs, outcome.outputs) is None:
                matches[mistake.name] = matches.get(mistake.name, 0) + 1
                result.mistake = result.mistake or mistake.name
        results.append(result)
    if raised and len(raised) < len(results) and exercise.mistakes:
        # An error where a catalogued mistake raises too (and only there) matches it:
        # a generate that never crops its context fails exactly on the long case.
        catalogue = catalogue or (mistakes() if callable(mistakes) else mistakes)
        for mistake in exercise.mistakes:
            theirs = catalogue[mistake.name]
            if [i for i, d in enumerate(theirs) if d is None] == raised:
                matches[mistake.name] = matches.get(mistake.name, 0) + len(raised)
                for i in raised:
                    results[i].mistake = results[i].mistake or mistake.name
    if status == Status.PASSED and not all(r.passed for r in results):
        status = Status.FAILED
    hints = []
    if status == Status.FAILED and matches:
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

