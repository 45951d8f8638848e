"""In-notebook feedback: ``check(softmax)`` runs an exercise's visible test cases.

>>> from transformer_course.checks import check
>>> check(scaled_dot_product_attention)          # doctest: +SKIP
PASS scaled_dot_product_attention: passed all 7 visible cases; the grader also runs hidden ones.
"""

from __future__ import annotations

from typing import Any

from transformer_course import workspace
from transformer_course.checks.exercise import Exercise
from transformer_course.checks.judging import judge
from transformer_course.checks.prepare import mistake_run, reference_run
from transformer_course.checks.registry import exercises, get
from transformer_course.checks.results import CheckResult
from transformer_course.checks.running import execute

VISIBLE_SEED = 0
"""Seed of the visible cases that ``check`` runs (the autograder adds hidden ones)."""

__all__ = ["check", "CheckResult", "exercises"]


def check(obj: Any, name: str | None = None) -> CheckResult:
    """Run the visible test cases of the exercise that ``obj`` implements.

    Args:
        obj: your function or class; the exercise is found by its ``__name__``.
        name: the exercise's name, when ``obj`` has another name.

    Returns:
        A :class:`CheckResult`; it never raises because the answer is wrong.
    """
    exercise_name = name or getattr(obj, "__name__", None)
    if exercise_name is None:
        raise TypeError(
            f"check() takes the function or class you wrote (e.g. check(softmax)), "
            f"not a {type(obj).__name__}"
        )
    exercise = get(exercise_name)
    cases, data = reference_run(exercise, VISIBLE_SEED)
    outcomes = []
    for case in cases:
        outcome = execute(exercise, obj, case)
        outcomes.append(outcome)
        if outcome.not_implemented:
            break  # a stub fails every case the same way; no need to run the rest
    outcomes += [outcomes[-1]] * (len(cases) - len(outcomes))
    result = judge(exercise, cases, outcomes, data, lambda: mistake_run(exercise, VISIBLE_SEED))
    if result.passed:
        _keep(obj, exercise, result)
    return result


def _keep(obj: Any, exercise: Exercise, result: CheckResult) -> None:
    """Keep a passing implementation of the student's in their workspace; the course's
    own objects (references, kept files being checked again) are never kept."""
    if not workspace.enabled() or getattr(obj, "__module__", "").startswith("transformer_course"):
        return
    try:
        path = workspace.keep(obj, exercise.name, exercise.chapter)
    except workspace.NotKept as err:
        result.note = f"Not kept for later chapters: {err}."
    else:
        result.note = f"Kept in {workspace.shown(path)}: later chapters run this {exercise.name} of yours."
