"""Hostile submissions: each is graded safely, with a clear message, and affects neither
the grader nor the other exercises (or submissions) graded after it.

Each file in tests/adversarial/ attacks some chapter-01 exercises (header line
``# attacked: ...``) and expects a message (``# message: regex``). The test adds the
reference source of the other exercises, so it also checks that those still get full
marks: an attack costs only the attacked exercises.
"""

import inspect
import json
import os
import re
from pathlib import Path

import pytest

from autograder.grader import Grader, Limits
from transformer_course.checks import exercises
from transformer_course.release import strip_markers

ADVERSARIAL = Path(__file__).parent / "adversarial"
CHAPTER = "01_attention"
VICTIMS = ["/tmp/autograder-attack-write", "/tmp/autograder-attack-subprocess",
           "/tmp/autograder-attack-system"]


@pytest.fixture(scope="module")
def grader():
    with Grader(Limits(timeout_floor=3.0, load_timeout=5.0, memory_bytes=1 << 30)) as g:
        yield g


def _header(text: str, key: str) -> str:
    match = re.search(rf"^# {key}: (.*)$", text, re.M)
    return match.group(1).strip() if match else ""


def _reference_source(skip: set[str]) -> str:
    parts = ["import math", "import torch", "from torch import Tensor"]
    for exercise in exercises(CHAPTER):
        if exercise.name not in skip:
            parts.append(strip_markers(inspect.getsource(exercise.reference)))
    return "\n\n\n".join(parts) + "\n\n\n"


def _calls_any(name: str, others: set[str]) -> bool:
    source = inspect.getsource(next(e for e in exercises(CHAPTER) if e.name == name).reference)
    return any(re.search(rf"\b{other}\(", source) for other in others)


def _by_exercise(result: dict) -> dict[str, dict]:
    return {t["name"].split(": ")[0]: t for t in result["tests"]}


@pytest.mark.parametrize("attack", sorted(p.name for p in ADVERSARIAL.glob("*.py")))
def test_attack_is_contained(grader, attack, tmp_path):
    text = (ADVERSARIAL / attack).read_text()
    attacked = set(_header(text, "attacked").split())
    victim = Path("/tmp/autograder-attack-victim")
    victim.write_text("must survive")
    for path in VICTIMS:
        Path(path).unlink(missing_ok=True)
    submission = tmp_path / f"{CHAPTER}.py"
    submission.write_text(_reference_source(attacked) + text)

    result = grader.grade(submission)

    tests = _by_exercise(result)
    assert set(tests) == {e.name for e in exercises(CHAPTER)}
    for name, test in tests.items():
        if name in attacked:
            assert test["score"] < test["max_score"] and test["status"] == "failed", test
            assert re.search(_header(text, "message"), test["output"]), test["output"]
        elif not _calls_any(name, attacked):  # sdpa calls the student's (attacked) softmax
            assert test["score"] == test["max_score"], f"{attack} cost {name} points: {test}"
    note = _header(text, "note")
    assert not note or note in result["output"], result["output"]
    assert victim.read_text() == "must survive"
    assert not any(os.path.exists(p) for p in VICTIMS)
    assert result["score"] == sum(t["score"] for t in result["tests"])


def test_reference_use_is_flagged_in_the_report(grader, tmp_path):
    submission = tmp_path / f"{CHAPTER}.py"
    submission.write_text(_reference_source({"softmax"})
                          + "from transformer_course.attention import softmax\n")
    result = grader.grade(submission)
    assert "softmax" in result["extra_data"]["flags"]
    assert "reference solution" in result["output"]


def test_syntax_error_costs_only_its_cell(grader, tmp_path):
    source = _reference_source({"causal_mask"})
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
              "source": s} for s in (source, "def causal_mask(seq_len)\n    return x\n",
                                     "%matplotlib inline\nprint('training...')\n")]
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    submission = tmp_path / f"{CHAPTER}.ipynb"
    submission.write_text(json.dumps(nb))
    result = grader.grade(submission)
    tests = _by_exercise(result)
    assert tests["causal_mask"]["score"] == 0
    assert "cell 2 has a syntax error" in tests["causal_mask"]["output"]
    assert result["score"] == result["max_score"] - 1


@pytest.mark.parametrize("content, message", [
    (b"", "no function, class or import"),
    (b"{ this is not json", "not a valid notebook"),
    (bytes(range(256)) * 8, "not UTF-8"),
], ids=["empty", "invalid-json", "binary-garbage"])
def test_unreadable_submissions_score_zero(grader, tmp_path, content, message):
    suffix = ".ipynb" if b"json" in content else ".py"
    submission = tmp_path / f"{CHAPTER}{suffix}"
    submission.write_bytes(content)
    result = grader.grade(submission)
    assert result["score"] == 0 and result["max_score"] == 6
    assert message in result["output"]
    assert all(t["status"] == "failed" for t in result["tests"])


def test_wrong_chapters_notebook_scores_zero(grader, tmp_path):
    other = next(iter(sorted(Path("solutions").glob("0[2-8]_*.ipynb"))), None)
    if other is None:
        pytest.skip("no solution notebook of another chapter yet")
    result = grader.grade(other, CHAPTER)
    assert result["score"] == 0
    for test in result["tests"]:  # chapter 2 imports chapter 1's reference attention
        assert re.search("was not found|reference solution", test["output"]), test["output"]


def test_grader_still_works_after_the_attacks(grader, tmp_path):
    submission = tmp_path / f"{CHAPTER}.py"
    submission.write_text(_reference_source(set()))
    result = grader.grade(submission)
    assert result["score"] == result["max_score"] == 6


@pytest.mark.parametrize("content, suffix, message", [
    ('{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}", ".ipynb", "nested too deeply"),
    ("x = " + "(" * 100_000 + ")" * 100_000 + "\n", ".py", "too many nested parentheses|nested too deeply"),
    ("def softmax(x, dim=-1):\n    return " + "-" * 200_000 + "x\n", ".py", "nested too deeply"),
], ids=["nested-notebook-json", "nested-parentheses", "nested-unary-operators"])
def test_hostile_files_become_a_failed_result(grader, tmp_path, content, suffix, message):
    submission = tmp_path / f"{CHAPTER}{suffix}"
    submission.write_text(content)
    result = grader.grade(submission)
    assert result["score"] == 0 and result["max_score"] == 6
    assert re.search(message, json.dumps(result)), result["output"]


def test_child_reports_are_schema_checked():
    from autograder.wire import check_probe, check_report

    report = check_report({"cases": [{"forbidden": ["F.softmax"], "error": "x" * 5000,
                                      "not_implemented": "yes"}], "missing": 1, "seccomp": True})
    assert report == {"cases": [{"forbidden": ["F.softmax"], "error": "x" * 2000}],
                      "missing": False, "seccomp": True}
    for bad in ([], {"cases": {}}, {"cases": [5]}, {"cases": [{"forbidden": {"a": 1}}]},
                {"cases": [{"error": ["x"]}]}, {"cases": [{"reference": 5}]}):
        with pytest.raises(ValueError):
            check_report(bad)
    with pytest.raises(ValueError):
        check_probe({"problems": [{"cell": "cell 1", "line": "1", "error": "x"}]})


def test_child_files_are_read_without_links_and_with_a_size_cap(tmp_path):
    from autograder.wire import load_json

    (tmp_path / "big.json").write_text("[" + "1," * 600_000 + "1]")
    (tmp_path / "link.json").symlink_to("/etc/hostname")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    for name in ("big.json", "link.json", "fifo.json", "deep.json"):
        with pytest.raises((OSError, ValueError)):
            load_json(tmp_path / name)
