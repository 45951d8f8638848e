"""The attack suite: submissions written to cheat, spy or break things (tests/attacks/),
each contained by the grader's sandbox.

Each attack is harmless outside the grader: the most it does is create marker files in a
folder this test chooses, delete a file this test made, or send SIGUSR1 to this test
process (which counts it). Header lines: ``# attacked:`` the chapter's exercises it
attacks (they must lose their points; the others keep full marks), ``# chapter:`` when
not chapter 1, ``# message:`` a regex the attacked exercises' feedback must match,
``# control:`` markers the attack does create when run outside the grader (proof that
it is real), ``# wait:`` seconds to wait for a process that would outlive the grade.

Placeholders filled in per run: ``@MARKERS@``, ``@VICTIM@``, ``@REPO@``, ``@SEED@``
(the hidden seed of this run), ``@GRADER_PID@``, ``@REFERENCE@``/``@CHECKS@`` and their
``@SHA_...@`` (the real files' sha256: an attack that reads the same bytes leaks them).

``AUTOGRADER_ATTACK_LAYERS=all`` (set by scripts/attack_suite_as_user.sh for the run as
root) also requires every confinement layer to be active; as a plain user the cgroup
layers are not (the kernel lets only root create cgroups here).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import transformer_course.attention
import transformer_course.checks.ch01_attention
from autograder import isolation
from autograder.grader import Grader, Limits
from transformer_course.checks import exercises
from transformer_course.release import strip_markers

ATTACKS = Path(__file__).parent / "attacks"
REPO = Path(__file__).resolve().parents[1]
SEED = random.SystemRandom().randrange(10**8, 10**9)
SIGNALS: list[int] = []

pytestmark = pytest.mark.skipif(isolation.usable() is not None,
                                reason=f"no sandbox here: {isolation.usable()}")


def _header(text: str, key: str) -> str:
    match = re.search(rf"^# {key}: (.*)$", text, re.M)
    return match.group(1).strip() if match else ""


@pytest.fixture(scope="module")
def grader():
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: SIGNALS.append(number))
    with Grader(Limits(timeout_floor=3.0, load_timeout=5.0, memory_bytes=1 << 30), seed=SEED) as g:
        yield g
    signal.signal(signal.SIGUSR1, previous)


def _fill(text: str, markers: Path, victim: Path) -> str:
    files = {"REFERENCE": Path(transformer_course.attention.__file__),
             "CHECKS": Path(transformer_course.checks.ch01_attention.__file__)}
    values = {"MARKERS": str(markers), "VICTIM": str(victim), "REPO": str(REPO),
              "SEED": str(SEED), "GRADER_PID": str(os.getpid())}
    for key, path in files.items():
        values[key] = str(path.resolve())
        values[f"SHA_{key}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], text)


def _others(chapter: str, attacked: set[str]) -> str:
    """The reference source of the chapter's other exercises (they must keep full marks)."""
    parts = ["import math", "import torch", "from torch import Tensor, nn"]
    for exercise in exercises(chapter):
        if exercise.name not in attacked and chapter == "01_attention":
            parts.append(strip_markers(inspect.getsource(exercise.reference)))
    return "\n\n\n".join(parts) + "\n\n\n"


def _setup(tmp_path: Path, attack: str) -> tuple[str, Path, Path, str]:
    text = (ATTACKS / attack).read_text()
    markers = tmp_path / "markers"
    markers.mkdir()
    markers.chmod(0o777)
    victim = tmp_path / "victim.txt"
    victim.write_text("must survive")
    return _fill(text, markers, victim), markers, victim, _header(text, "chapter") or "01_attention"


@pytest.mark.parametrize("attack", sorted(p.name for p in ATTACKS.glob("*.py")))
def test_attack_is_contained(grader, attack, tmp_path):
    text, markers, victim, chapter = _setup(tmp_path, attack)
    attacked = set(_header(text, "attacked").split())
    submission = tmp_path / f"{chapter}.py"
    submission.write_text(_others(chapter, attacked) + text)
    SIGNALS.clear()

    result = grader.grade(submission)
    time.sleep(float(_header(text, "wait") or 0))

    tests = {t["name"].split(": ")[0]: t for t in result["tests"]}
    assert set(tests) == {e.name for e in exercises(chapter)}
    for name, test in tests.items():
        if name in attacked:
            assert test["score"] == 0 and test["status"] == "failed", test
            assert re.search(_header(text, "message") or ".", test["output"]), test["output"]
        elif chapter == "01_attention" and name != "scaled_dot_product_attention":
            assert test["score"] == test["max_score"], f"{attack} cost {name} points: {test}"
    assert sorted(p.name for p in markers.iterdir()) == []
    assert victim.read_text() == "must survive"
    assert SIGNALS == []
    feedback = json.dumps([result["output"], [t["output"] for t in result["tests"]]])
    assert "LEAKED" not in feedback and str(SEED) not in feedback, feedback
    layers = result["extra_data"]["sandbox"]
    required = [k for k in layers if os.environ.get("AUTOGRADER_ATTACK_LAYERS") == "all"
                or not k.startswith("cgroup")]
    assert all(layers[k] for k in required), layers


@pytest.mark.parametrize("attack", sorted(p.name for p in ATTACKS.glob("*.py")
                                          if _header(p.read_text(), "control")))
def test_attack_is_real_outside_the_grader(attack, tmp_path):
    """Run outside the grader, in a process of its own, the attack does what it says."""
    text, markers, victim, _ = _setup(tmp_path, attack)
    module = tmp_path / "attack.py"
    module.write_text(text)
    calls = ";".join(f"attack.{name}(*args.get({name!r}, (torch.ones(2, 3),)))"
                     for name in _header(text, "attacked").split())
    code = (f"import os, sys, torch; sys.path.insert(0, {str(tmp_path)!r}); os.chdir({str(tmp_path)!r}); "
            f"import attack; args = {{'attention_scores': (torch.ones(2, 3), torch.ones(2, 3)), "
            f"'causal_mask': (3,)}}; {calls}")
    subprocess.run([sys.executable, "-c", code], timeout=120, check=False, capture_output=True)
    time.sleep(float(_header(text, "wait") or 0))
    expected = set(_header(text, "control").split())
    found = {p.name for p in markers.iterdir()} | ({"victim"} if not victim.exists() else set())
    assert expected <= found, f"{attack} did not do what it tests outside the grader: {found}"


def test_nothing_is_left_for_the_next_submission(grader, tmp_path):
    """After leave_files_for_the_next.py, the next child finds no file it left."""
    submission = tmp_path / "01_attention.py"
    submission.write_text(_others("01_attention", {"softmax"}) + (ATTACKS / "leave_files_for_the_next.py")
                          .read_text())
    grader.grade(submission)
    probe = tmp_path / "probe" / "01_attention.py"
    probe.parent.mkdir()
    probe.write_text(_others("01_attention", {"softmax"}) + (
        "import glob\n\n\ndef softmax(x, dim=-1):\n"
        "    found = [p for f in ('/tmp', '/dev/shm', '/dev', '..', '/x/in', '/x/out')\n"
        "             for p in glob.glob(f + '/**/left-for-the-next', recursive=True)]\n"
        "    raise RuntimeError(f'FOUND {found}')\n"))
    result = grader.grade(probe)
    softmax = next(t for t in result["tests"] if t["name"].startswith("softmax"))
    assert "FOUND []" in softmax["output"], softmax["output"]


def test_without_the_sandbox_the_grader_refuses_unless_told(monkeypatch):
    from autograder import GradingError

    monkeypatch.setattr(isolation, "usable", lambda: "bubblewrap (bwrap) is not installed")
    with pytest.raises(GradingError, match="--unsafe-no-sandbox"):
        Grader()
    with Grader(unsafe_no_sandbox=True) as grader:  # explicitly unsafe: nothing runs here
        assert not grader.worker.sandboxed
