"""Gradescope's result for one graded submission: the score rule, each exercise's
feedback text, and ``results.json`` (the batch reports read the same dict).

Gradescope's schema: ``score``, ``max_score``, ``output`` and ``tests`` (one per exercise,
with its own ``score``, ``max_score``, ``status`` and ``output``); the course's own
fields (chapter, seed, sha256 of the submission, flags, notes) go in ``extra_data``.
"""

from __future__ import annotations

from pathlib import Path

import torch

import autograder
from transformer_course.checks import VISIBLE_SEED
from transformer_course.checks.results import CheckResult


def score(result: CheckResult) -> float:
    """The points of one exercise: none for one that uses the reference solution."""
    return 0.0 if result.status == "reference" else round(result.score, 4)


def test_output(result: CheckResult) -> str:
    """The feedback text of one exercise."""
    if result.status == "reference" or (
        result.note and all(not c.passed and c.message == result.note for c in result.cases)
    ):
        return result.note  # one reason for every case: missing, timed out, crashed, ...
    lines = [result.headline()]
    lines += [f"Likely mistake: {hint.hint}" for hint in result.hints]
    if result.status == "failed":
        for case in result.cases:
            if case.passed:
                lines.append(f"  [ok]   {case.name}")
            else:
                extra = f" (matches the known mistake '{case.mistake}')" if case.mistake else ""
                lines.append(f"  [FAIL] {case.name}: {case.message}{extra}")
    return "\n".join(lines)


def build_result(path: Path, chapter: str, sha: str, seed: int, results: list[CheckResult],
                 flags: dict[str, str], notes: list[str], problems: list[dict],
                 seconds: float) -> dict:
    """Gradescope's results.json for one graded submission."""
    tests = []
    for result in results:
        points = score(result)
        tests.append({
            "name": f"{result.exercise}: {len(result.cases)} test cases",
            "score": points,
            "max_score": result.max_points,
            "status": "passed" if result.passed and points == result.max_points else "failed",
            "output": test_output(result),
            "visibility": "visible",
            "extra_data": {"exercise": result.exercise, "status": result.status,
                           "passed_cases": result.n_passed, "cases": len(result.cases),
                           "mistakes": [h.name for h in result.hints]},
        })
    for problem in problems[:20]:
        notes.append(f"{problem.get('cell')}, line {problem.get('line')}: {problem.get('error')}")
    total = round(sum(t["score"] for t in tests), 4)
    maximum = sum(t["max_score"] for t in tests)
    summary = [f"{chapter}: {total:g} / {maximum:g} points"] + [f"Note: {n}" for n in notes]
    summary += [f"Flagged: {name} uses the reference solution ({where})" for name, where in flags.items()]
    return {
        "score": total,
        "max_score": maximum,
        "execution_time": round(seconds, 3),
        "output": "\n".join(summary),
        "visibility": "visible",
        "tests": tests,
        "extra_data": {
            "chapter": chapter, "submission": path.name, "sha256": sha,
            "grader_version": autograder.__version__, "seed": seed,
            "visible_seed": VISIBLE_SEED, "time_taken": round(seconds, 3),
            "flags": flags, "notes": notes, "torch": torch.__version__,
        },
    }
