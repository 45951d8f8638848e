"""Human-readable views of results: terminal summary, Markdown and HTML feedback, and
the class summary. Every string a student controls is escaped in HTML."""

from __future__ import annotations

import statistics
from collections import Counter
from html import escape


def text_summary(result: dict) -> str:
    """What ``python -m autograder grade`` prints: a line per exercise, then details."""
    lines = [result["output"].splitlines()[0], ""]
    for test in result["tests"]:
        mark = "PASS" if test["status"] == "passed" else "FAIL"
        name = test["name"].split(": ")[0]
        lines.append(f"[{mark}] {name:<32} {test['score']:g} / {test['max_score']:g}")
    details = [t for t in result["tests"] if t["status"] != "passed"]
    for test in details:
        lines += ["", *test["output"].splitlines()]
    notes = result["output"].splitlines()[1:]
    if notes:
        lines += ["", *notes]
    extra = result.get("extra_data", {})
    lines += ["", f"Graded in {result['execution_time']:.1f} s by autograder {extra.get('grader_version')}"
                  f" (sha256 {str(extra.get('sha256', ''))[:12]}...)."]
    return "\n".join(lines)


def student_markdown(student: str, results: dict[str, dict]) -> str:
    """A student's feedback report over every graded chapter."""
    total = sum(r["score"] for r in results.values())
    maximum = sum(r["max_score"] for r in results.values())
    lines = [f"# Feedback for {student}", "", f"Total: **{total:g} / {maximum:g}** points", ""]
    for chapter, result in results.items():
        lines += [f"## {chapter}: {result['score']:g} / {result['max_score']:g}", ""]
        for note in result["output"].splitlines()[1:]:
            lines.append(f"> {note}")
        for test in result["tests"]:
            mark = "✔" if test["status"] == "passed" else "✘"
            lines.append(f"- {mark} **{test['name'].split(': ')[0]}** {test['score']:g} / "
                         f"{test['max_score']:g}")
            if test["status"] != "passed":
                lines += ["", "  ```text", *[f"  {line}" for line in test["output"].splitlines()],
                          "  ```", ""]
        lines.append("")
    return "\n".join(lines)


def student_html(student: str, results: dict[str, dict]) -> str:
    """The same report as HTML; every student-controlled string is escaped."""
    total = sum(r["score"] for r in results.values())
    maximum = sum(r["max_score"] for r in results.values())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Feedback for {escape(student)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        ".ok{color:#1a7f37}.fail{color:#cf222e}pre{background:#f6f8fa;padding:.5em;"
        "white-space:pre-wrap}</style></head><body>",
        f"<h1>Feedback for {escape(student)}</h1>",
        f"<p>Total: <b>{total:g} / {maximum:g}</b> points</p>",
    ]
    for chapter, result in results.items():
        parts.append(f"<h2>{escape(chapter)}: {result['score']:g} / {result['max_score']:g}</h2>")
        for note in result["output"].splitlines()[1:]:
            parts.append(f"<blockquote>{escape(note)}</blockquote>")
        parts.append("<ul>")
        for test in result["tests"]:
            ok = test["status"] == "passed"
            parts.append(
                f"<li class='{'ok' if ok else 'fail'}'>{'&#10004;' if ok else '&#10008;'} "
                f"<b>{escape(test['name'].split(': ')[0])}</b> {test['score']:g} / "
                f"{test['max_score']:g}")
            if not ok:
                parts.append(f"<pre>{escape(test['output'])}</pre>")
            parts.append("</li>")
        parts.append("</ul>")
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
                name = test["name"].split(": ")[0]
                extra = test.get("extra_data", {})
                reasons = extra.get("mistakes") or [extra.get("status", "failed")]
                failures.setdefault(name, Counter()).update(reasons)
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
