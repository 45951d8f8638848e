"""A batch never loses a result, and sharding changes nothing.

A class of 20: 15 honest students (tests/classgen.py) and 5 submissions that reach the
parent (a notebook whose JSON crashes the reader, a 65 MiB file, a folder named
``grades.csv``, a submission that is a symbolic link out of the class folder, and
``tests/adversarial/fake_results.py``, which forges the files the grader reads back).
Every honest student gets exactly the result they get graded alone; 4 shards, one of
them killed mid-run and rerun, merge into the same files as one batch run.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from classgen import make_class, write_class
from result_files import without_timings

from autograder.batch import ClassGrades, grade_class, merge_class, read_class_folder, shard_of
from autograder.grader import Grader, Limits
from autograder.results import result_problem

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "01_attention"
LIMITS = Limits(timeout_floor=5.0, load_timeout=5.0)
ATTACKERS = ("deep_json", "huge_file", "grades.csv", "linked", "forger")


def _make_class(root: Path, outside: Path) -> list[str]:
    """Write the class; returns the honest students' names."""
    made = make_class(15, 2, seed=11)
    write_class(made, root, (CHAPTER,))
    (root / "deep_json").mkdir()
    (root / "deep_json" / f"{CHAPTER}.ipynb").write_text('{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (root / "huge_file").mkdir()
    with open(root / "huge_file" / f"{CHAPTER}.py", "wb") as f:
        f.truncate(65 << 20)  # sparse: costs no disk
    reference = (ROOT / "src" / "transformer_course" / "attention.py").read_text()
    (root / "grades.csv").mkdir()
    (root / "grades.csv" / f"{CHAPTER}.py").write_text(reference)
    outside.mkdir()
    (outside / f"{CHAPTER}.py").write_text(reference)
    (root / "linked").mkdir()
    (root / "linked" / f"{CHAPTER}.py").symlink_to(outside / f"{CHAPTER}.py")
    (root / "forger").mkdir()
    shutil.copy(ROOT / "tests/adversarial/fake_results.py", root / "forger" / f"{CHAPTER}.py")
    return [s.name for s in made.students]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The class graded once by one batch run with two workers."""
    tmp = tmp_path_factory.mktemp("class")
    root, out = tmp / "submissions", tmp / "one"
    honest = _make_class(root, tmp / "elsewhere")
    log: list[str] = []
    grades = grade_class(root, out, jobs=2, limits=LIMITS, log=log.append)
    return root, out, honest, grades, log


def test_every_honest_student_gets_the_result_they_get_alone(batch):
    root, out, honest, grades, _ = batch
    with Grader(LIMITS) as grader:
        for student in honest:
            path = next((root / student).iterdir())
            alone = grader.grade(path, CHAPTER)
            stored = json.loads((out / student / f"{CHAPTER}.json").read_text())
            del stored["extra_data"]["fingerprint"]
            assert without_timings(stored) == without_timings(alone), student
    assert sum(grades[s][CHAPTER]["score"] for s in honest) > 0.8 * 6 * len(honest)


def test_every_submission_gets_a_result_and_refusals_are_named(batch):
    root, out, honest, grades, log = batch
    assert isinstance(grades, ClassGrades)
    for student in [*honest, "deep_json", "huge_file", "linked", "forger"]:
        result = json.loads((out / student / f"{CHAPTER}.json").read_text())
        assert result_problem(result) is None, student
    for student in ("deep_json", "huge_file", "linked", "forger"):
        assert grades[student][CHAPTER]["score"] == 0, student
    huge, linked = (grades[s][CHAPTER] for s in ("huge_file", "linked"))
    assert "over the grader's limit of 64 MiB" in huge["output"]
    assert "symbolic link" in linked["output"] and "outside the class folder" in linked["output"]
    # The folder named like a report is refused, never graded, and named as missing.
    assert list(grades.missing) == ["grades.csv"] and "report file" in grades.missing["grades.csv"]
    assert (out / "missing.txt").read_text().startswith("grades.csv: the folder's name is that of a report")
    assert any(line.startswith("no result for grades.csv:") for line in log)
    with open(out / "grades.csv") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert set(rows) == {*honest, "deep_json", "huge_file", "linked", "forger"}


def test_an_exception_while_grading_is_that_submissions_failed_result(tmp_path, monkeypatch):
    root, out = tmp_path / "submissions", tmp_path / "out"
    for student in ("ann", "ben", "cat"):
        (root / student).mkdir(parents=True)
        (root / student / f"{CHAPTER}.py").write_text("import torch\n")  # nothing to run
    real = Grader.grade

    def grade(self, path, chapter=None):
        if Path(path).parent.name == "ben":
            raise MemoryError("the reader ran out of memory")
        return real(self, path, chapter)

    monkeypatch.setattr(Grader, "grade", grade)
    log: list[str] = []
    grades = grade_class(root, out, jobs=2, limits=LIMITS, log=log.append, similarity=False)
    assert not grades.missing and set(grades) == {"ann", "ben", "cat"}
    failed = json.loads((out / "ben" / f"{CHAPTER}.json").read_text())
    assert failed["score"] == 0 and "MemoryError: the reader ran out of memory" in failed["output"]
    assert failed["extra_data"]["failed"].startswith("the grader could not grade")
    assert any("ben/01_attention: the grader failed: MemoryError" in line for line in log)


def test_odd_entries_of_the_class_folder(tmp_path):
    root = tmp_path / "submissions"
    (root / "ann").mkdir(parents=True)
    os.mkfifo(root / "ann" / f"{CHAPTER}.py")  # reading it would block forever
    (root / "bo").mkdir()
    (root / "bo" / f"{CHAPTER}.ipynb").write_text("{}")
    (root / "bo" / f"{CHAPTER}.py").write_text("")
    (root / "cy").mkdir()
    (root / "cy" / "homework.py").write_text("")
    (root / "SUMMARY.MD").mkdir()
    (root / "dan").symlink_to(tmp_path)
    (root / ".DS_Store").write_text("")
    found = read_class_folder(root)
    assert [(s, c) for s, c, _ in found.submissions] == [("ann", CHAPTER), ("bo", CHAPTER)]
    assert found.refused == {("ann", CHAPTER): f"{CHAPTER}.py is not a regular file"}
    assert set(found.unusable) == {"cy", "SUMMARY.MD", "dan"}
    assert "outside the class folder" in found.unusable["dan"]
    assert any(n.startswith(f"bo/{CHAPTER}.py ({CHAPTER}.ipynb is graded)") for n in found.ignored)


def test_the_command_line_exits_1_and_names_who_is_missing(tmp_path):
    root, out = tmp_path / "submissions", tmp_path / "out"
    (root / "ann").mkdir(parents=True)
    (root / "ann" / f"{CHAPTER}.py").write_text("import torch\n")
    (root / "Canvas.csv").mkdir()
    (root / "Canvas.csv" / f"{CHAPTER}.py").write_text("import torch\n")
    done = subprocess.run([sys.executable, "-m", "autograder", "batch", str(root), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 1, done.stderr
    assert "error: 1 result(s) missing: Canvas.csv" in done.stderr
    assert "no result for Canvas.csv" in done.stdout and (out / "ann" / f"{CHAPTER}.json").is_file()
    bad = subprocess.run([sys.executable, "-m", "autograder", "batch", str(root), "--out", str(out),
                          "--shard", "4"], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={k: v for k, v in os.environ.items()
                              if k not in ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID")})
    assert bad.returncode == 2 and "JOB_COMPLETION_INDEX" in bad.stderr


def _files(out: Path) -> dict[str, object]:
    """Every file batch wrote, results without their timings."""
    found = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            name = path.relative_to(out).as_posix()
            found[name] = (without_timings(json.loads(path.read_text())) if path.suffix == ".json"
                           else path.read_text())
    return found


def test_four_shards_one_killed_and_rerun_merge_into_the_one_batch(batch, tmp_path):
    root, one, honest, _, _ = batch
    out = tmp_path / "sharded"
    first = sorted(s for s in [*honest, *ATTACKERS] if shard_of(s, 4) == 0 and s != "grades.csv")
    assert len(first) >= 3
    # Shard 0 runs as a cluster would start it, and is killed after its first result.
    shard = subprocess.Popen(
        [sys.executable, "-m", "autograder", "batch", str(root), "--out", str(out), "--shard", "4",
         "--timeout", "5"], cwd=ROOT, env={**os.environ, "JOB_COMPLETION_INDEX": "0"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(out.glob(f"*/{CHAPTER}.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(shard.pid, signal.SIGKILL)
    shard.wait()
    finished = {p.parent.name: p.read_bytes() for p in out.glob(f"*/{CHAPTER}.json")}
    assert 1 <= len(finished) < len(first)
    # Its rerun regrades nobody who finished.
    log: list[str] = []
    rerun = grade_class(root, out, limits=LIMITS, log=log.append, shard=(0, 4))
    left = len(first) - len(finished)
    assert f"{len(first)} submissions, {left} to grade, {len(finished)} up to date" in log
    assert not any(line.startswith(f"{s}/") for s in finished for line in log)
    assert {s: (out / s / f"{CHAPTER}.json").read_bytes() for s in finished} == finished
    assert not (out / "grades.csv").is_file() and set(rerun.missing) <= {"grades.csv"}  # no class report
    # A merge before every shard ran names the students still missing.
    early = merge_class(root, out, log=lambda _: None)
    assert {name.split("/")[0] for name in early.missing} == \
        {s for s in [*honest, *ATTACKERS] if shard_of(s, 4) != 0} | {"grades.csv"}
    for index in (1, 2, 3):
        grade_class(root, out, jobs=2, limits=LIMITS, log=lambda _: None, shard=(index, 4))
    merged = merge_class(root, out, log=lambda _: None)
    assert list(merged.missing) == ["grades.csv"]
    assert _files(out) == _files(one)
