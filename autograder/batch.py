"""Grade a class: ``ROOT/<student>/<chapter id>.ipynb`` (or ``.py``) into ``OUT``.

Writes ``OUT/<student>/<chapter>.json`` (Gradescope's schema), ``OUT/<student>/feedback.md``
and ``feedback.html``, ``OUT/grades.csv``, the LMS gradebooks ``OUT/canvas.csv`` and
``OUT/moodle.csv`` (see :mod:`autograder.gradebook`), ``OUT/summary.md`` and, unless turned
off, the similarity report ``OUT/similarity.csv`` and ``similarity.html`` (see
:mod:`autograder.similarity`). Submissions run on ``jobs`` workers in parallel; each
exercise of each submission runs in its own confined process, so one submission's crash
or timeout cannot touch another's result.

No result is lost: every submission ends with a result file, graded or failed with the
reason; student folders that cannot have one (a name that collides with a report file,
a link out of the class folder, nothing gradable inside) are named in ``OUT/missing.txt``
and in :attr:`ClassGrades.missing`. ``shard=(i, n)`` grades one slice of the class
(:func:`shard_of`); :func:`merge_class` writes the class's reports from all the slices.

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
import stat
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

import autograder
from autograder import GradingError
from autograder.gradebook import canvas_rows, match_roster, moodle_rows, read_roster
from autograder.grader import Grader, Limits, sha256_of
from autograder.plan import HIDDEN_SEED, plan_chapter
from autograder.reader import SUFFIXES
from autograder.report import class_summary, student_html, student_markdown
from autograder.results import failed_result, result_problem
from transformer_course.checks.registry import chapters, exercises

# What batch writes at the top of OUT: a student folder of one of these names is refused,
# compared without case (a case-insensitive file system would mix them up).
REPORT_FILES = frozenset({"grades.csv", "canvas.csv", "moodle.csv", "summary.md", "similarity.csv",
                          "similarity.html", "roster_mismatch.txt", "missing.txt"})
MAX_SUBMISSION_BYTES = 64 << 20  # larger than any notebook a student writes


@dataclass
class ClassFolder:
    """What a class folder holds, read once.

    ``submissions``: ``(student, chapter, path)`` of every file to grade; ``refused``:
    ``{(student, chapter): why}`` for files graded as failed without running them (a
    symbolic link out of the class folder, not a regular file, too large); ``unusable``:
    ``{student: why}`` for folders that get no result at all (a name that collides with
    a report file, a link out of the class folder, no gradable file); ``ignored``: notes on
    files whose name is not a chapter id.
    """

    submissions: list[tuple[str, str, Path]] = field(default_factory=list)
    refused: dict[tuple[str, str], str] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def _outside(path: Path, root: Path) -> str | None:
    """Where ``path`` leads when it is a symbolic link out of ``root``, else None."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    return None if target.is_relative_to(root) else str(target)


def _refusal(path: Path, root: Path) -> str | None:
    """Why a file named like a submission is not run, or None when it is graded."""
    target = _outside(path, root)
    if target:
        return (f"{path.name} is a symbolic link to {target}, outside the class folder; "
                "submit the file itself")
    try:
        info = path.stat()
    except OSError as err:
        return f"{path.name} could not be read ({type(err).__name__})"
    if not stat.S_ISREG(info.st_mode):
        return f"{path.name} is not a regular file"
    if info.st_size > MAX_SUBMISSION_BYTES:
        return (f"{path.name} is {info.st_size / 2**20:.0f} MiB, over the grader's limit of "
                f"{MAX_SUBMISSION_BYTES >> 20} MiB; clear the notebook's outputs and submit again")
    return None


def read_class_folder(root: Path) -> ClassFolder:
    """Every student folder of ``root`` (``ROOT/<student>/<chapter id>.ipynb`` or ``.py``),
    in the order of their names; nothing in it is left out without a reason."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise GradingError(f"{root} is not a folder")
    known, found = set(chapters()), ClassFolder()
    for folder in sorted(root.iterdir()):
        name = folder.name
        if name.startswith("."):
            found.ignored.append(f"{name} (a hidden entry)")
            continue
        target = _outside(folder, root)
        if target:
            found.unusable[name] = f"a symbolic link to {target}, outside the class folder"
            continue
        if not folder.is_dir():
            found.ignored.append(f"{name} (not a student folder)")
            continue
        if name.lower() in REPORT_FILES:
            found.unusable[name] = (f"the folder's name is that of a report file batch writes "
                                    f"(one of {', '.join(sorted(REPORT_FILES))}); rename it")
            continue
        try:
            entries = sorted(folder.iterdir())
        except OSError as err:
            found.unusable[name] = f"the folder could not be read ({type(err).__name__})"
            continue
        chosen: dict[str, Path] = {}
        for path in entries:
            if path.suffix in SUFFIXES and path.stem in known and path.stem not in chosen:
                chosen[path.stem] = path
                why = _refusal(path, root)
                if why:
                    found.refused[(name, path.stem)] = why
                found.submissions.append((name, path.stem, path))
            elif path.suffix in SUFFIXES and path.stem in known:
                found.ignored.append(f"{name}/{path.name} ({chosen[path.stem].name} is graded)")
            elif not path.name.startswith("."):
                found.ignored.append(f"{name}/{path.name} (its name is not a chapter id such as "
                                     f"{chapters()[0]}.ipynb)")
        if not chosen:
            found.unusable[name] = ("no file named after a chapter "
                                    f"(such as {chapters()[0]}.ipynb) was found")
    return found


def find_submissions(root: Path) -> tuple[list[tuple[str, str, Path]], list[str]]:
    """``(student, chapter, path)`` for every file to grade, and a note for each file
    that was ignored (see :func:`read_class_folder`)."""
    found = read_class_folder(root)
    return found.submissions, found.ignored


def shard_of(student: str, count: int) -> int:
    """The shard (0 to ``count - 1``) that grades ``student``: a hash of the folder name,
    so a student stays in the same shard whoever else is in the class."""
    return int.from_bytes(hashlib.sha256(student.encode()).digest()[:8], "big") % count


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


def _stored(target: Path, fingerprint: dict[str, object]) -> tuple[dict | None, str | None]:
    """The result in ``target`` when it can be reused, else None and why not."""
    if not target.is_file() or target.is_symlink():
        return None, "not graded yet"
    try:
        previous = json.loads(target.read_text())
    except (ValueError, OSError, RecursionError):
        return None, "unreadable or incomplete result"
    if result_problem(previous) is not None:
        return None, "unreadable or incomplete result"
    stored = previous["extra_data"].get("fingerprint")
    if not isinstance(stored, dict):
        return None, "no fingerprint (graded by an older grader)"
    changed = [key for key, value in fingerprint.items() if stored.get(key) != value]
    return (None, f"{', '.join(changed)} changed") if changed else (previous, None)


class ClassGrades(dict):
    """``{student: {chapter: result}}``, with ``missing``: ``{name: why}`` for every
    submission (``student/chapter``) or student folder that got no result."""

    def __init__(self, grades: dict, missing: dict[str, str]):
        super().__init__(grades)
        self.missing = missing


def _fingerprints(found: ClassFolder, seed: int) -> dict[tuple[str, str], dict[str, object]]:
    digests = {c: reference_digest(c, seed) for c in sorted({c for _, c, _ in found.submissions})}
    prints = {}
    for student, chapter, path in found.submissions:
        why = found.refused.get((student, chapter))
        if why is None:
            try:
                prints[student, chapter] = result_fingerprint(path, chapter, seed, digests[chapter])
                continue
            except OSError as err:  # gone or unreadable since the folder was read
                why = found.refused[student, chapter] = f"{path.name} could not be read ({err})"
        prints[student, chapter] = {"submission": f"refused: {why}", "seed": seed,
                                    "rubric": {e.name: e.points for e in exercises(chapter)},
                                    "grader_version": autograder.__version__,
                                    "reference": digests[chapter]}
    return prints


def _grade_all(todo: list[tuple[str, str, Path]], found: ClassFolder, out: Path, jobs: int,
               limits: Limits, seed: int, fingerprints: dict, log: Callable[[str], None]
               ) -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], str]]:
    """Grade ``todo`` on ``jobs`` workers; every submission ends with a result written to
    ``OUT/<student>/<chapter>.json`` or a reason in the second dict. An exception while
    grading one submission becomes its failed result, never a dead worker thread."""
    tasks: queue.Queue = queue.Queue()
    for item in todo:
        tasks.put(item)
    done: dict[tuple[str, str], dict] = {}
    lost: dict[tuple[str, str], str] = {}
    lock = threading.Lock()

    def grade_one(grader: Grader, student: str, chapter: str, path: Path) -> dict:
        why = found.refused.get((student, chapter))
        if why is not None:
            return failed_result(path, chapter, seed, why)
        try:
            return grader.grade(path, chapter)
        except Exception as err:  # the submission's own failure, whatever it is
            log(f"{student}/{chapter}: the grader failed: {type(err).__name__}: {err}")
            grader.close()  # a fresh worker for the next submission
            return failed_result(path, chapter, seed, "the grader could not grade this submission "
                                 f"({type(err).__name__}: {str(err)[:500]}); tell your instructor")

    def work() -> None:
        try:
            grader = Grader(limits, seed)
        except Exception as err:
            log(f"a grading worker could not start: {type(err).__name__}: {err}")
            return
        with grader:
            while True:
                try:
                    student, chapter, path = tasks.get_nowait()
                except queue.Empty:
                    return
                key = (student, chapter)
                try:
                    result = grade_one(grader, student, chapter, path)
                    result["extra_data"]["fingerprint"] = fingerprints[key]
                    write_atomic(out / student / f"{chapter}.json", json.dumps(result, indent=1))
                except Exception as err:  # e.g. the disk is full: this one result is lost
                    with lock:
                        lost[key] = f"its result could not be written ({type(err).__name__}: {err})"
                        log(f"{student}/{chapter}: {lost[key]}")
                    continue
                with lock:
                    done[key] = result
                    log(f"{student}/{chapter}: {result['score']:g} / {result['max_score']:g}")

    threads = [threading.Thread(target=work) for _ in range(max(1, min(jobs, len(todo))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for student, chapter, _ in todo:
        if (student, chapter) not in done:
            lost.setdefault((student, chapter), "no grading worker could start")
    return done, lost


def grade_class(root: Path, out: Path, jobs: int = 1, force: bool = False,
                limits: Limits | None = None, seed: int = HIDDEN_SEED,
                log: Callable[[str], None] = print, similarity: bool = True,
                roster: Path | None = None, shard: tuple[int, int] | None = None) -> ClassGrades:
    """Grade every submission under ``root``; returns ``{student: {chapter: result}}``
    with ``missing``, every submission or student folder without a result and why.

    Args:
        similarity: also write the similarity report (a report only; grades never change).
        roster: CSV mapping student folders to LMS ids and names for the gradebooks.
        shard: ``(index, count)``: grade only the students of that shard
            (:func:`shard_of`) and write their results, not the class's reports, which
            :func:`merge_class` builds once every shard is done.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    people = read_roster(roster) if roster else None  # a bad roster fails before grading
    found = read_class_folder(root)
    if shard is not None:
        index, count = shard
        mine = {s for s, _, _ in found.submissions} | set(found.unusable)
        mine = {s for s in mine if shard_of(s, count) == index}
        found.submissions = [entry for entry in found.submissions if entry[0] in mine]
        found.unusable = {s: why for s, why in found.unusable.items() if s in mine}
        log(f"shard {index}/{count}: {len(mine)} student folder(s)")
    for note in found.ignored:
        log(f"ignored {note}")
    fingerprints = _fingerprints(found, seed)
    grades: dict[str, dict[str, dict]] = {}
    reasons: Counter = Counter()
    todo = []
    for student, chapter, path in found.submissions:
        previous, why = (None, "--force") if force else _stored(
            out / student / f"{chapter}.json", fingerprints[student, chapter])
        if previous is not None:
            grades.setdefault(student, {})[chapter] = previous
            continue
        reasons[why] += 1
        todo.append((student, chapter, path))
    up_to_date = len(found.submissions) - len(todo)
    log(f"{len(found.submissions)} submissions, {len(todo)} to grade, {up_to_date} up to date")
    if reasons:
        log("to grade because: " + "; ".join(f"{why} ({n})" for why, n in reasons.most_common()))
    done, lost = _grade_all(todo, found, out, jobs, limits or Limits(), seed, fingerprints, log)
    for (student, chapter), result in done.items():
        grades.setdefault(student, {})[chapter] = result
    missing = {f"{s}/{c}": why for (s, c), why in sorted(lost.items())} | found.unusable
    if shard is None:
        _write_class(out, found, grades, missing, people, similarity, log)
    else:
        _report_missing(missing, log)
    return ClassGrades(grades, missing)


def merge_class(root: Path, out: Path, seed: int = HIDDEN_SEED, log: Callable[[str], None] = print,
                similarity: bool = True, roster: Path | None = None) -> ClassGrades:
    """The class's reports from the results the shards wrote into ``out``; every
    submission under ``root`` without an up-to-date result is named as missing."""
    out = Path(out)
    people = read_roster(roster) if roster else None
    found = read_class_folder(root)
    fingerprints = _fingerprints(found, seed)
    grades: dict[str, dict[str, dict]] = {}
    missing: dict[str, str] = {}
    for student, chapter, _ in found.submissions:
        result, why = _stored(out / student / f"{chapter}.json", fingerprints[student, chapter])
        if result is None:
            missing[f"{student}/{chapter}"] = f"{why} (its shard has not run, or did not finish)"
        else:
            grades.setdefault(student, {})[chapter] = result
    log(f"merged {sum(map(len, grades.values()))} of {len(found.submissions)} results")
    _write_class(out, found, grades, missing | found.unusable, people, similarity, log)
    return ClassGrades(grades, missing | found.unusable)


def _report_missing(missing: dict[str, str], log: Callable[[str], None]) -> None:
    for name, why in missing.items():
        log(f"no result for {name}: {why}")


def _write_class(out: Path, found: ClassFolder, grades: dict[str, dict[str, dict]],
                 missing: dict[str, str], people: dict | None, similarity: bool,
                 log: Callable[[str], None]) -> None:
    """Everything batch writes for the whole class, from the results it holds (in the
    order of names and chapters, so that the reports do not depend on who finished first)."""
    grades = {s: {c: grades[s][c] for c in chapters() if c in grades[s]} for s in sorted(grades)}
    write_reports(out, grades, people, log)
    _report_missing(missing, log)
    write_atomic(out / "missing.txt", "".join(f"{name}: {why}\n" for name, why in missing.items()))
    if similarity:
        from autograder.similarity import similarity_report

        graded = [(s, c, p) for s, c, p in found.submissions if (s, c) not in found.refused]
        pairs = similarity_report(graded, out)
        log(f"similarity: {len(pairs)} pair(s) stand out; see {out / 'similarity.html'}")


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
