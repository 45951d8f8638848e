"""Gradescope's result for one graded submission, ``results.json`` (the batch reports
read the same dict).

Gradescope's schema: ``score``, ``max_score``, ``output`` and ``tests`` (one per exercise,
with its own ``score``, ``max_score``, ``status`` and ``output``). The course's own fields
go in ``extra_data``: for the submission, its chapter, seed, sha256, flags and notes; for
each exercise, its whole :class:`~transformer_course.checks.results.CheckResult`
(``to_dict``), from which the reports render it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import autograder
from transformer_course.checks import VISIBLE_SEED
from transformer_course.checks.registry import exercises
from transformer_course.checks.render import feedback
from transformer_course.checks.results import CheckResult, Status

# How much of what the child reported reaches a result (its notes, flags and problems).
MAX_NOTES = 50
MAX_TEXT = 2000


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    return str(value)[:limit] if isinstance(value, (str, int, float)) else type(value).__name__


def build_result(path: Path, chapter: str, sha: str, seed: int, results: list[CheckResult],
                 flags: dict[str, str], notes: list[str], problems: list,
                 seconds: float) -> dict:
    """Gradescope's results.json for one graded submission.

    ``flags``, ``notes`` and ``problems`` may hold what the submission's process wrote:
    only strings and numbers are taken from them, cut to a bounded length and count.
    """
    notes = [_text(note) for note in notes[:MAX_NOTES]] if isinstance(notes, list) else []
    flags = ({_text(k, 200): _text(v, 200) for k, v in list(flags.items())[:MAX_NOTES]}
             if isinstance(flags, dict) else {})
    problems = [p for p in problems if isinstance(p, dict)][:20] if isinstance(problems, list) else []
    tests = []
    for result in results:
        points = round(result.score, 4)
        tests.append({
            "name": f"{result.exercise}: {len(result.cases)} test cases",
            "score": points,
            "max_score": result.max_points,
            "status": "passed" if result.passed and points == result.max_points else "failed",
            "output": feedback(result),
            "visibility": "visible",
            "extra_data": result.to_dict(),  # what the reports render from
        })
    for problem in problems:
        notes.append(f"{_text(problem.get('cell'), 200)}, line {_text(problem.get('line'), 20)}: "
                     f"{_text(problem.get('error'))}")
    result = {
        "score": round(sum(t["score"] for t in tests), 4),
        "max_score": sum(t["max_score"] for t in tests),
        "execution_time": round(seconds, 3),
        "visibility": "visible",
        "tests": tests,
        "extra_data": {
            "chapter": chapter, "submission": path.name, "sha256": sha,
            "grader_version": autograder.__version__, "seed": seed,
            "visible_seed": VISIBLE_SEED, "time_taken": round(seconds, 3),
            "flags": flags, "notes": notes, "torch": torch.__version__,
        },
    }
    result["output"] = "\n".join([headline(result), *remarks(result)])
    return result


def headline(result: dict) -> str:
    """The first line of a submission's feedback: its chapter and points."""
    return f"{result['extra_data']['chapter']}: {result['score']:g} / {result['max_score']:g} points"


def remarks(result: dict) -> list[str]:
    """The lines under the headline: the grader's notes on the submission, and the
    exercises flagged for calling the reference solution."""
    extra = result["extra_data"]
    return [f"Note: {note}" for note in extra["notes"]] + [
        f"Flagged: {name} uses the reference solution ({where})" for name, where in extra["flags"].items()]


def exercise_result(test: dict) -> CheckResult:
    """The exercise's result stored with one of ``result["tests"]``."""
    return CheckResult.from_dict(test["extra_data"])


def failed_result(path: Path, chapter: str, seed: int, why: str, sha: str = "") -> dict:
    """The result of a submission the grader could not grade: every exercise of the
    chapter failed for ``why``, which the student and the instructor both see."""
    results = [CheckResult(e.name, chapter, Status.FAILED, [], e.points, note=why)
               for e in exercises(chapter)]
    result = build_result(path, chapter, sha, seed, results, {}, [why], [], 0.0)
    result["extra_data"]["failed"] = why
    return result


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def result_problem(result: Any) -> str | None:
    """What is wrong with the shape of a result read back from a file, or None when the
    reports can render it (every field they read is there, with its type)."""
    if not isinstance(result, dict):
        return "not a JSON object"
    if not (_number(result.get("score")) and _number(result.get("max_score"))
            and _number(result.get("execution_time"))):
        return "score, max_score or execution_time is missing or not a number"
    extra, tests = result.get("extra_data"), result.get("tests")
    if not isinstance(extra, dict) or not isinstance(tests, list):
        return "extra_data or tests is missing"
    if not (isinstance(extra.get("chapter"), str) and isinstance(extra.get("grader_version"), str)
            and isinstance(extra.get("sha256"), str)
            and isinstance(extra.get("notes"), list) and all(isinstance(n, str) for n in extra["notes"])
            and isinstance(extra.get("flags"), dict)
            and all(isinstance(v, str) for v in extra["flags"].values())):
        return "extra_data lacks its chapter, grader_version, sha256, notes or flags"
    for test in tests:
        if not (isinstance(test, dict) and _number(test.get("score")) and _number(test.get("max_score"))
                and test.get("status") in ("passed", "failed") and isinstance(test.get("output"), str)):
            return "a test lacks its score, max_score, status or output"
        try:
            exercise = exercise_result(test)
        except (KeyError, TypeError, ValueError, AttributeError):
            return "a test's extra_data is not an exercise result"
        texts = [exercise.exercise, exercise.chapter, exercise.note, *exercise.forbidden]
        texts += [t for c in exercise.cases for t in (c.name, c.message, c.mistake or "")]
        texts += [t for h in exercise.hints for t in (h.name, h.hint)]
        if not (all(isinstance(t, str) for t in texts) and _number(exercise.max_points)
                and all(isinstance(c.passed, bool) for c in exercise.cases)):
            return "a test's exercise result holds a value of the wrong type"
    return None
