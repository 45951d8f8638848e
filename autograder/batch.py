"""Grade a class: ``ROOT/<student>/<chapter id>.ipynb`` (or ``.py``) into ``OUT``.

Writes ``OUT/<student>/<chapter>.json`` (Gradescope's schema), ``OUT/<student>/feedback.md``
and ``feedback.html``, ``OUT/grades.csv``, the LMS gradebooks ``OUT/canvas.csv`` and
``OUT/moodle.csv`` (see :mod:`autograder.gradebook`), ``OUT/summary.md`` and, unless turned
off, the similarity report ``OUT/similarity.csv`` and ``similarity.html`` (see
:mod:`autograder.similarity`). Submissions run on ``jobs`` workers in parallel; each
exercise of each submission runs in its own confined process, so one submission's crash
or timeout cannot touch another's result.

A previous result is reused only when its fingerprint matches: the submission's sha256,
the seed, the chapter's rubric, the grader's version and a hash of the reference outputs
of the chapter's cases (:func:`result_fingerprint`). Every file is written to a temporary
file and renamed into place, so a killed batch never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import queue
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

import autograder
from autograder.gradebook import canvas_rows, match_roster, moodle_rows, read_roster
from autograder.grader import Grader, Limits, sha256_of
from autograder.plan import HIDDEN_SEED, plan_chapter
from autograder.reader import SUFFIXES
from autograder.report import class_summary, student_html, student_markdown
from transformer_course.checks.registry import chapters, exercises


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


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a
    rename, so that ``path`` holds either the old content or all of the new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def reference_digest(chapter: str, seed: int) -> str:
    """sha256 over the chapter's planned cases: names, seeds and everything judged
    against (reference outputs, float64 truth, tolerance bands)."""
    digest = hashlib.sha256()
    for plan in plan_chapter(chapter, seed):
        digest.update(plan.exercise.name.encode())
        for case, seed_, data in zip(plan.cases, plan.seeds, plan.data, strict=True):
            digest.update(f"{case.name}|{seed_}".encode())
            for name in sorted(data):
                tensor = data[name].detach().cpu().contiguous()
                digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def result_fingerprint(path: Path, chapter: str, seed: int, reference: str) -> dict[str, object]:
    """What a result depends on; a result is reused only when all of it is unchanged.

    Args:
        reference: :func:`reference_digest` of the chapter and seed.
    """
    return {
        "submission": sha256_of(path),
        "seed": seed,
        "rubric": {e.name: e.points for e in exercises(chapter)},
        "grader_version": autograder.__version__,
        "reference": reference,
    }


def _stale(target: Path, fingerprint: dict[str, object]) -> str | None:
    """Why the result in ``target`` cannot be reused, or None when it can."""
    if not target.exists():
        return "not graded yet"
    try:
        previous = json.loads(target.read_text())
        complete = isinstance(previous["score"], (int, float)) and isinstance(previous["tests"], list)
    except (ValueError, OSError, KeyError, TypeError):
        complete = False
    if not complete:
        return "unreadable or incomplete result"
    stored = previous.get("extra_data", {}).get("fingerprint")
    if not isinstance(stored, dict):
        return "no fingerprint (graded by an older grader)"
    changed = [key for key, value in fingerprint.items() if stored.get(key) != value]
    return f"{', '.join(changed)} changed" if changed else None


def grade_class(root: Path, out: Path, jobs: int = 1, force: bool = False,
                limits: Limits | None = None, seed: int = HIDDEN_SEED,
                log: Callable[[str], None] = print, similarity: bool = True,
                roster: Path | None = None) -> dict[str, dict[str, dict]]:
    """Grade every submission under ``root``; returns ``{student: {chapter: result}}``.

    Args:
        similarity: also write the similarity report (a report only; grades never change).
        roster: CSV mapping student folders to LMS ids and names for the gradebooks.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    people = read_roster(roster) if roster else None  # a bad roster fails before grading
    submissions, ignored = find_submissions(root)
    for name in ignored:
        log(f"ignored {name} (its name is not a chapter id such as {chapters()[0]}.ipynb)")
    todo: queue.Queue = queue.Queue()
    grades: dict[str, dict[str, dict]] = {}
    reasons: Counter = Counter()
    digests = {c: reference_digest(c, seed) for c in sorted({c for _, c, _ in submissions})}
    for student, chapter, path in submissions:
        fingerprint = result_fingerprint(path, chapter, seed, digests[chapter])
        why = "--force" if force else _stale(out / student / f"{chapter}.json", fingerprint)
        if why is None:
            previous = json.loads((out / student / f"{chapter}.json").read_text())
            grades.setdefault(student, {})[chapter] = previous
            continue
        reasons[why] += 1
        todo.put((student, chapter, path, fingerprint))
    lock = threading.Lock()
    pending = todo.qsize()
    log(f"{len(submissions)} submissions, {pending} to grade, {len(submissions) - pending} up to date")
    if reasons:
        log("to grade because: " + "; ".join(f"{why} ({n})" for why, n in reasons.most_common()))

    def work() -> None:
        with Grader(limits or Limits(), seed) as grader:
            while True:
                try:
                    student, chapter, path, fingerprint = todo.get_nowait()
                except queue.Empty:
                    return
                result = grader.grade(path, chapter)
                result["extra_data"]["fingerprint"] = fingerprint
                write_atomic(out / student / f"{chapter}.json", json.dumps(result, indent=1))
                with lock:
                    grades.setdefault(student, {})[chapter] = result
                    log(f"{student}/{chapter}: {result['score']:g} / {result['max_score']:g}")

    threads = [threading.Thread(target=work) for _ in range(max(1, min(jobs, pending)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    write_reports(out, grades, people, log)
    if similarity:
        from autograder.similarity import similarity_report

        pairs = similarity_report(submissions, out)
        log(f"similarity: {len(pairs)} pair(s) stand out; see {out / 'similarity.html'}")
    return grades


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def write_reports(out: Path, grades: dict[str, dict[str, dict]],
                  roster: dict | None = None, log: Callable[[str], None] = print) -> None:
    """grades.csv, the LMS gradebooks, the per-student feedback and the class summary."""
    order = [c for c in chapters() if any(c in g for g in grades.values())]
    rows = [["student", *order, "total"]]
    for student in sorted(grades):
        row = [grades[student][c]["score"] if c in grades[student] else "" for c in order]
        rows.append([student, *row, round(sum(r["score"] for r in grades[student].values()), 4)])
    write_atomic(out / "grades.csv", _csv(rows))
    people, not_in_roster, no_submission = match_roster(sorted(grades), roster)
    write_atomic(out / "canvas.csv", _csv(canvas_rows(people, grades, order, roster is not None)))
    write_atomic(out / "moodle.csv", _csv(moodle_rows(people, grades, order, roster is not None)))
    if roster is not None:
        lines = [f"in the submissions but not in the roster (exported without an LMS id): {s}"
                 for s in not_in_roster]
        lines += [f"in the roster but with no submission (exported with empty grades): {s}"
                  for s in no_submission]
        for line in lines:
            log(line)
        write_atomic(out / "roster_mismatch.txt", "\n".join(lines) + "\n" if lines else "")
    for student, results in grades.items():
        ordered = {c: results[c] for c in order if c in results}
        write_atomic(out / student / "feedback.md", student_markdown(student, ordered))
        write_atomic(out / student / "feedback.html", student_html(student, ordered))
    write_atomic(out / "summary.md", class_summary(grades, order))
