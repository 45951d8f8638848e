"""Cached results are never stale: a result is reused only when the submission, seed,
rubric, grader version and reference outputs are all unchanged; files are written whole."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import transformer_course.checks.rubric as rubric_module
from autograder.batch import grade_class, write_atomic
from autograder.grader import Limits

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(timeout_floor=5.0, load_timeout=5.0)
GOOD = (ROOT / "src" / "transformer_course" / "attention.py").read_text()
STUDENTS = {
    "ada": GOOD,
    "bob": GOOD.replace("return exp / exp.sum(dim=dim, keepdim=True)", "return exp", 1),
}


def _grade(root, out, **kwargs) -> list[str]:
    log: list[str] = []
    grade_class(root, out, limits=LIMITS, log=log.append, similarity=False, **kwargs)
    return log


def _counts(log: list[str]) -> str:
    return next(line for line in log if "to grade" in line and "up to date" in line)


@pytest.fixture
def graded(tmp_path):
    root, out = tmp_path / "submissions", tmp_path / "out"
    for student, source in STUDENTS.items():
        (root / student).mkdir(parents=True)
        (root / student / "01_attention.py").write_text(source)
    log = _grade(root, out)
    assert _counts(log) == "2 submissions, 2 to grade, 0 up to date"
    return root, out


def test_nothing_changed_regrades_nothing(graded):
    root, out = graded
    before = {p: p.read_text() for p in out.glob("*/01_attention.json")}
    log = _grade(root, out)
    assert _counts(log) == "2 submissions, 0 to grade, 2 up to date"
    assert {p: p.read_text() for p in out.glob("*/01_attention.json")} == before
    stored = json.loads((out / "ada" / "01_attention.json").read_text())["extra_data"]["fingerprint"]
    assert set(stored) == {"submission", "seed", "rubric", "grader_version", "reference"}


def test_another_seed_regrades_everything(graded):
    root, out = graded
    log = _grade(root, out, seed=7)
    assert _counts(log) == "2 submissions, 2 to grade, 0 up to date"
    assert "to grade because: seed, reference changed (2)" in log
    result = json.loads((out / "ada" / "01_attention.json").read_text())
    assert result["extra_data"]["seed"] == 7 and result["score"] == result["max_score"]
    assert _counts(_grade(root, out, seed=7)).endswith("0 to grade, 2 up to date")


def test_a_rubric_change_regrades_the_chapter_it_touches(graded, monkeypatch):
    root, out = graded
    table = {chapter: dict(points) for chapter, points in rubric_module.rubric().items()}
    table["02_multi_head_attention"]["split_heads"] += 1  # no submission of chapter 2
    monkeypatch.setattr(rubric_module, "rubric", lambda: table)
    assert _counts(_grade(root, out)).endswith("0 to grade, 2 up to date")
    table["01_attention"]["softmax"] = 3
    log = _grade(root, out)
    assert "to grade because: rubric changed (2)" in log
    result = json.loads((out / "ada" / "01_attention.json").read_text())
    assert result["max_score"] == result["score"] == 8


def test_an_edited_submission_and_a_half_written_result_are_regraded(graded):
    root, out = graded
    (root / "bob" / "01_attention.py").write_text(GOOD)
    text = (out / "ada" / "01_attention.json").read_text()
    (out / "ada" / "01_attention.json").write_text(text[: len(text) // 2])  # killed mid-write
    log = _grade(root, out)
    assert _counts(log) == "2 submissions, 2 to grade, 0 up to date"
    assert "unreadable or incomplete result (1)" in log[1] and "submission changed (1)" in log[1]
    assert json.loads((out / "bob" / "01_attention.json").read_text())["score"] == 6


def test_writes_are_whole_or_not_at_all(tmp_path):
    target = tmp_path / "result.json"
    write_atomic(target, "old")
    with pytest.raises(TypeError):
        write_atomic(target, 123)  # fails inside the write
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary left


def test_command_line_options(graded, tmp_path):
    root, out = graded
    roster = tmp_path / "roster.csv"
    roster.write_text("student,lms_id,name\nada,1001,Ada Lovelace\n")
    done = subprocess.run([sys.executable, "-m", "autograder", "batch", str(root), "--out", str(out),
                           "--roster", str(roster), "--no-similarity"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "0 to grade" in done.stdout and "not in the roster" in done.stdout and "bob" in done.stdout
    assert (out / "canvas.csv").read_text().splitlines()[2].startswith("Ada Lovelace,1001,")
    assert not (out / "similarity.html").exists()
    done = subprocess.run([sys.executable, "-m", "autograder", "batch", str(root), "--out", str(out),
                           "--roster", str(tmp_path / "nope.csv")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_a_result_file_of_the_wrong_shape_is_regraded_not_trusted(graded):
    root, out = graded
    (out / "ada" / "01_attention.json").write_text("[" * 100_000 + "]" * 100_000)
    bob = json.loads((out / "bob" / "01_attention.json").read_text())
    bob["tests"][0]["extra_data"]["cases"] = "all passed"
    (out / "bob" / "01_attention.json").write_text(json.dumps(bob))
    log = _grade(root, out)
    assert _counts(log) == "2 submissions, 2 to grade, 0 up to date"
    assert "to grade because: unreadable or incomplete result (2)" in log
