"""Grade a class: ``ROOT/<student>/<chapter id>.ipynb`` (or ``.py``) into ``OUT``.

Writes ``OUT/<student>/<chapter>.json`` (Gradescope's schema), ``OUT/<student>/feedback.md``
and ``feedback.html``, ``OUT/grades.csv`` and ``OUT/summary.md``. Submissions run on
``jobs`` workers in parallel; each exercise of each submission runs in its own confined
process, so one submission's crash or timeout cannot touch another's result. A result
whose sha256 matches the file is kept unless ``force``.
"""

from __future__ import annotations

import csv
import json
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from autograder.engine import HIDDEN_SEED, Grader, Limits, plan_chapter, sha256_of
from autograder.reader import SUFFIXES
from autograder.report import class_summary, student_html, student_markdown
from transformer_course.checks.registry import chapters


def find_submissions(root: Path) -> tuple[list[tuple[str, str, Path]], list[str]]:
    """``(student, chapter, path)`` for every file whose stem is a chapter id, and a
    note for each file that was ignored."""
    known = set(chapters())
    found, ignored = [], []
    for student_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        for path in sorted(student_dir.iterdir()):
            if path.is_file() and path.suffix in SUFFIXES and path.stem in known:
                found.append((student_dir.name, path.stem, path))
            elif path.is_file():
                ignored.append(f"{student_dir.name}/{path.name}")
    return found, ignored


def grade_class(root: Path, out: Path, jobs: int = 1, force: bool = False,
                limits: Limits | None = None, seed: int = HIDDEN_SEED,
                log: Callable[[str], None] = print) -> dict[str, dict[str, dict]]:
    """Grade every submission under ``root``; returns ``{student: {chapter: result}}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    submissions, ignored = find_submissions(root)
    for name in ignored:
        log(f"ignored {name} (its name is not a chapter id such as {chapters()[0]}.ipynb)")
    todo: queue.Queue = queue.Queue()
    grades: dict[str, dict[str, dict]] = {}
    for student, chapter, path in submissions:
        target = out / student / f"{chapter}.json"
        if not force and target.exists():
            try:
                previous = json.loads(target.read_text())
                if previous.get("extra_data", {}).get("sha256") == sha256_of(path):
                    grades.setdefault(student, {})[chapter] = previous
                    continue
            except (ValueError, OSError):
                pass
        todo.put((student, chapter, path))
    for chapter in sorted({c for _, c, _ in submissions}):
        plan_chapter(chapter, seed)  # reference outputs once, before the threads start
    lock = threading.Lock()
    pending = todo.qsize()
    log(f"{len(submissions)} submissions, {pending} to grade, {len(submissions) - pending} up to date")

    def work() -> None:
        with Grader(limits or Limits(), seed) as grader:
            while True:
                try:
                    student, chapter, path = todo.get_nowait()
                except queue.Empty:
                    return
                result = grader.grade(path, chapter)
                target = out / student / f"{chapter}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(result, indent=1))
                with lock:
                    grades.setdefault(student, {})[chapter] = result
                    log(f"{student}/{chapter}: {result['score']:g} / {result['max_score']:g}")

    threads = [threading.Thread(target=work) for _ in range(max(1, min(jobs, pending)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    write_reports(out, grades)
    return grades


def write_reports(out: Path, grades: dict[str, dict[str, dict]]) -> None:
    """grades.csv, the per-student feedback and the class summary."""
    order = [c for c in chapters() if any(c in g for g in grades.values())]
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *order, "total"])
        for student in sorted(grades):
            row = [grades[student][c]["score"] if c in grades[student] else "" for c in order]
            writer.writerow([student, *row, round(sum(r["score"] for r in grades[student].values()), 4)])
    for student, results in grades.items():
        ordered = {c: results[c] for c in order if c in results}
        (out / student).mkdir(parents=True, exist_ok=True)
        (out / student / "feedback.md").write_text(student_markdown(student, ordered))
        (out / student / "feedback.html").write_text(student_html(student, ordered))
    (out / "summary.md").write_text(class_summary(grades, order))
