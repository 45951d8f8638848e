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

import torch

import autograder
from transformer_course.checks import VISIBLE_SEED
from transformer_course.checks.render import feedback
from transformer_course.checks.results import CheckResult


def build_result(path: Path, chapter: str, sha: str, seed: int, results: list[CheckResult],
                 flags: dict[str, str], notes: list[str], problems: list[dict],
                 seconds: float) -> dict:
    """Gradescope's results.json for one graded submission."""
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
    for problem in problems[:20]:
        notes.append(f"{problem.get('cell')}, line {problem.get('line')}: {problem.get('error')}")
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
