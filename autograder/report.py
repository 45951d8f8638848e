"""Human-readable views of graded submissions: the terminal summary, a student's Markdown
and HTML feedback, and the class summary. They read the structured fields of the
results (:mod:`autograder.results`) and show each exercise through the course's one
renderer, :mod:`transformer_course.checks.render`, which escapes what a student controls."""

from __future__ import annotations

import statistics
from collections import Counter
from html import escape

from autograder.results import exercise_result, headline, remarks
from transformer_course.checks.render import as_html, as_markdown


def text_summary(result: dict) -> str:
    """What ``python -m autograder grade`` prints: a line per exercise, then details."""
    lines = [headline(result), ""]
    for test in result["tests"]:
        mark, name = "PASS" if test["status"] == "passed" else "FAIL", test["extra_data"]["exercise"]
        lines.append(f"[{mark}] {name:<32} {test['score']:g} / {test['max_score']:g}")
    for test in result["tests"]:
        if test["status"] != "passed":
            lines += ["", *test["output"].splitlines()]
    notes = remarks(result)
    if notes:
        lines += ["", *notes]
    extra = result["extra_data"]
    lines += ["", f"Graded in {result['execution_time']:.1f} s by autograder {extra['grader_version']}"
                  f" (sha256 {extra['sha256'][:12]}...)."]
    return "\n".join(lines)


def student_markdown(student: str, results: dict[str, dict]) -> str:
    """A student's feedback report over every graded chapter."""
    total = sum(r["score"] for r in results.values())
    maximum = sum(r["max_score"] for r in results.values())
    lines = [f"# Feedback for {student}", "", f"Total: **{total:g} / {maximum:g}** points", ""]
    for chapter, result in results.items():
        lines += [f"## {chapter}: {result['score']:g} / {result['max_score']:g}", ""]
        lines += [f"> {remark}" for remark in remarks(result)]
        for test in result["tests"]:
            lines += ["", as_markdown(exercise_result(test), graded=True)]
        lines.append("")
    return "\n".join(lines)


def student_html(student: str, results: dict[str, dict]) -> str:
    """The same report as HTML; every student-controlled string is escaped."""
    total = sum(r["score"] for r in results.values())
    maximum = sum(r["max_score"] for r in results.values())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Feedback for {escape(student)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}</style></head><body>",
        f"<h1>Feedback for {escape(student)}</h1>",
        f"<p>Total: <b>{total:g} / {maximum:g}</b> points</p>",
    ]
    for chapter, result in results.items():
        parts.append(f"<h2>{escape(chapter)}: {result['score']:g} / {result['max_score']:g}</h2>")
        parts += [f"<blockquote>{escape(remark)}</blockquote>" for remark in remarks(result)]
        parts += [as_html(exercise_result(test), graded=True) for test in result["tests"]]
    parts.append("</body></html>")
    return "\n".join(parts)


def class_summary(grades: dict[str, dict[str, dict]], chapters: list[str]) -> str:
    """Markdown: score distribution per chapter and the most common mistakes per exercise."""
    lines = ["# Class summary", "", f"{len(grades)} students.", ""]
    lines += ["| chapter | graded | mean | median | min | max | max points |",
              "|---|---|---|---|---|---|---|"]
    failures: dict[str, Counter] = {}
    for chapter in chapters:
        scores = [s[chapter]["score"] for s in grades.values() if chapter in s]
        if not scores:
            continue
        maximum = next(s[chapter]["max_score"] for s in grades.values() if chapter in s)
        lines.append(f"| {chapter} | {len(scores)} | {statistics.mean(scores):.2f} | "
                     f"{statistics.median(scores):g} | {min(scores):g} | {max(scores):g} | {maximum:g} |")
        for student in grades.values():
            for test in student.get(chapter, {}).get("tests", []):
                if test["status"] == "passed":
                    continue
                exercise = exercise_result(test)
                reasons = [hint.name for hint in exercise.hints] or [str(exercise.status)]
                failures.setdefault(exercise.exercise, Counter()).update(reasons)
    lines += ["", "## Score distribution", ""]
    for chapter in chapters:
        scores = [s[chapter]["score"] for s in grades.values() if chapter in s]
        if not scores:
            continue
        maximum = next(s[chapter]["max_score"] for s in grades.values() if chapter in s) or 1
        bins = Counter(min(4, int(5 * score / maximum)) for score in scores)
        lines.append(f"- {chapter}: " + ", ".join(
            f"{20 * b}-{20 * b + 20}%: {bins.get(b, 0)}" for b in range(5)))
    lines += ["", "## Most common mistakes per exercise", ""]
    for name, counter in sorted(failures.items(), key=lambda kv: -sum(kv[1].values())):
        common = ", ".join(f"{reason} ({count})" for reason, count in counter.most_common(3))
        lines.append(f"- **{name}**: {sum(counter.values())} failed; {common}")
    return "\n".join(lines) + "\n"
