"""Planning a chapter's grading, in the parent process, before any student code runs.

For each exercise: the cases (the visible ones, then hidden ones that differ), everything
judging needs (:func:`transformer_course.checks.prepare.prepare`), the reference objects the
worker disables while the exercise runs, and the catalogued mistakes' outputs on the
same cases. Plans depend only on the chapter and the seed, so they are cached.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from autograder import GradingError
from autograder.sandbox import functions_of
from transformer_course.checks import VISIBLE_SEED
from transformer_course.checks.exercise import Case, Exercise
from transformer_course.checks.prepare import expected_outputs, mistake_run, reference_run
from transformer_course.checks.registry import chapters, exercises
from transformer_course.checks.results import HIDDEN_PREFIX
from transformer_course.checks.running import execute

HIDDEN_SEED = 1
"""Default seed of the hidden cases; instructors can choose another (``--seed``)."""


@dataclass
class ExercisePlan:
    """How one exercise is graded.

    Attributes:
        cases: the visible cases, then the hidden ones (named ``hidden: ...``).
        data: the prepared data of each case (layout: :func:`~transformer_course.checks.prepare.prepare`).
        seeds: the seed each case comes from.
        reference_seconds: how long the reference took on all the cases (the timeout
            scales with it).
        disable: ``(module, qualname)`` of the reference objects to disable.
    """

    exercise: Exercise
    cases: list[Case]
    data: list[dict[str, Tensor]]
    seeds: list[int]
    reference_seconds: float
    disable: list[tuple[str, str]]

    @property
    def expected(self) -> list[dict[str, Tensor]]:
        """The reference's outputs on each case."""
        return [expected_outputs(d) for d in self.data]


_PLANS: dict[tuple[str, int], list[ExercisePlan]] = {}
_PLAN_LOCK = threading.Lock()


def plan_chapter(chapter: str, seed: int = HIDDEN_SEED) -> list[ExercisePlan]:
    """Cases (visible, then hidden ones that differ), reference outputs and the
    reference objects to disable, for every exercise of ``chapter`` (cached).

    Raises:
        GradingError: when ``chapter`` has no graded exercises.
    """
    with _PLAN_LOCK:
        if (chapter, seed) not in _PLANS:
            _PLANS[chapter, seed] = _plan(chapter, seed)
        return _PLANS[chapter, seed]


def _plan(chapter: str, seed: int) -> list[ExercisePlan]:
    found = exercises(chapter)
    if not found:
        known = ", ".join(chapters())
        raise GradingError(f"no graded exercises for chapter {chapter!r}; the chapters are: {known}")
    plans = []
    for exercise in found:
        start = time.perf_counter()
        cases, data = reference_run(exercise, VISIBLE_SEED)
        cases, data, seeds = list(cases), list(data), [VISIBLE_SEED] * len(cases)
        if seed != VISIBLE_SEED:
            hidden, hidden_data = reference_run(exercise, seed)
            for case, want in zip(hidden, hidden_data, strict=True):
                if not any(_same_args(case.args, c.args) for c in cases):
                    cases.append(Case(HIDDEN_PREFIX + case.name, case.args))
                    data.append(want)
                    seeds.append(seed)
        elapsed = time.perf_counter() - start
        plans.append(ExercisePlan(exercise, cases, data, seeds, elapsed,
                                  _to_disable(exercise, found, cases)))
    return plans


def _same_args(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool((a == b).all()))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_args(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_args(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _to_disable(exercise: Exercise, chapter: list[Exercise], cases: list[Case]) -> list[tuple[str, str]]:
    """The chapter's reference objects to disable while ``exercise`` runs: all of them,
    except those the exercise's own ``run`` needs outside the reference implementation
    (a reference model handed to ``greedy_decode``, say). Found by tracing a reference
    run: a reference object entered while no frame of the exercise's reference is on
    the stack belongs to the harness."""
    owners = {func.__code__: other.name for other in chapter
              for _, func in functions_of(other.reference)}
    own = {code for code, name in owners.items() if name == exercise.name}
    needed: set[str] = set()

    def profile(frame, event, arg):
        if event != "call":
            return
        name = owners.get(frame.f_code)
        if name is None or name == exercise.name or name in needed:
            return
        caller = frame.f_back
        while caller is not None:
            if caller.f_code in own:
                return
            caller = caller.f_back
        needed.add(name)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        for case in cases:
            execute(exercise, exercise.reference, case)
    finally:
        sys.setprofile(previous)
    return [(other.reference.__module__, other.reference.__qualname__) for other in chapter
            if other.name not in needed and functions_of(other.reference)]


def mistake_outputs(plan: ExercisePlan, seed: int) -> dict[str, list[dict[str, Tensor] | None]]:
    """The catalogued mistakes' prepared data on each of the plan's cases (None where a
    mistake raises), taken from the cached catalogues of the visible seed and of the
    hidden ``seed``."""
    visible = mistake_run(plan.exercise, VISIBLE_SEED)
    hidden: dict[str, list[dict[str, Tensor] | None]] = {}
    place: dict[str, int] = {}  # a hidden case's place in the hidden catalogue
    if seed != VISIBLE_SEED:
        hidden = mistake_run(plan.exercise, seed)
        cases, _ = reference_run(plan.exercise, seed)
        place = {HIDDEN_PREFIX + c.name: i for i, c in enumerate(cases)}
    rows = {}
    for mistake in plan.exercise.mistakes:
        # the visible cases come first, in the visible catalogue's order
        rows[mistake.name] = [visible[mistake.name][i] if case_seed == VISIBLE_SEED
                              else hidden[mistake.name][place[case.name]]
                              for i, (case, case_seed) in enumerate(zip(plan.cases, plan.seeds, strict=True))]
    return rows
