"""CONTRIBUTING.md's walk-through, run as written: a new chapter is found by the
registry, checked in the notebook, released by the release tool and graded by the
autograder.

The package is copied into a temporary folder with a virtual environment of its own
(the autograder's worker runs ``python -I``, so the copy must be what that interpreter
imports), the walk-through's blocks are applied there in order, and what they claim is
checked.
"""

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
COPIED = ["src", "autograder", "pyproject.toml", "constraints.txt", "book/_config.yml"]

CORRECT = "import torch\n\n\ndef relu(x):\n    return torch.where(x > 0, x, torch.zeros_like(x))\n"
LEAKY = "import torch\n\n\ndef relu(x):\n    return torch.where(x > 0, x, 0.01 * x)\n"


def walkthrough_blocks() -> list[tuple[str, str, str]]:
    """``(language, header, body)`` of every fenced block of the walk-through whose first
    line says what to do with it (``# file:``, ``# append to:``, ``# run at the root``)."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("## Walk-through", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for language, body in BLOCK.findall(section):
        header, _, rest = body.partition("\n")
        if header.startswith(("# file:", "# append to:", "# run at the root")):
            blocks.append((language, header, rest))
    return blocks


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> tuple[Path, list[str]]:
    """A copy of the course with its own ``venv`` and the walk-through applied, and what
    the walk-through's commands printed."""
    root = tmp_path_factory.mktemp("course")
    for name in COPIED:
        source, target = ROOT / name, root / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (root / "solutions").mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], check=True)
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    # The copy first; the installed packages (torch, ...) after it, without their .pth
    # hooks, so that the course's editable install does not shadow the copy.
    (site / "course.pth").write_text(f"{root / 'src'}\n{root}\n{sysconfig.get_paths()['purelib']}\n")
    (root / "my_relu.py").write_text(CORRECT)
    printed = []
    for language, header, body in walkthrough_blocks():
        path = header.partition(":")[2].strip()
        if header.startswith("# file:"):
            (root / path).write_text(body)
        elif header.startswith("# append to:"):
            with open(root / path, "a") as target:
                target.write(body)
        else:
            printed.append(run(root, language, body))
    return root, printed


def run(course: Path, language: str, body: str) -> str:
    env = {"PATH": f"{course / 'venv' / 'bin'}:/usr/bin:/bin", "HOME": str(course),
           "OMP_NUM_THREADS": "1", "TRANSFORMER_COURSE_QUICK": "1"}
    command = [str(course / "venv" / "bin" / "python"), "-"] if language == "python" else ["bash", "-e"]
    done = subprocess.run(command, input=body, cwd=course, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done.stdout


def test_the_walkthrough_has_its_four_pieces_and_commands():
    headers = [header for _, header, _ in walkthrough_blocks()]
    assert headers[:3] == ["# file: src/transformer_course/activations.py",
                           "# append to: src/transformer_course/checks/rubric.toml",
                           "# file: src/transformer_course/checks/ch10_activations.py"]
    assert headers[3:] == ["# run at the root", "# run at the root"]


def test_the_new_chapter_is_registered_checked_released_and_graded(course):
    course, printed = course
    registered, checked, rest = printed[-1].split("\n", 2)
    assert registered == "['relu']"
    assert checked.startswith("PASS relu: passed all 3 visible cases; the grader also runs hidden ones.")

    assert "notebooks/10_activations.ipynb" in rest
    student = nbformat.read(course / "notebooks" / "10_activations.ipynb", as_version=4)
    exercise = next(c for c in student.cells if c.metadata.get("reference"))
    assert "raise NotImplementedError" in exercise.source and "clamp" not in exercise.source
    solution = nbformat.read(course / "solutions" / "10_activations.ipynb", as_version=4)
    assert "x.clamp(min=0)" in next(c for c in solution.cells if c.metadata.get("reference")).source

    result = json.loads((course / "result.json").read_text())
    assert (result["score"], result["max_score"]) == (1, 1), result["output"]


def test_the_autograder_names_the_catalogued_mistake(course):
    course, _ = course
    (course / "leaky.py").write_text(LEAKY)
    run(course, "bash", "python -m autograder grade leaky.py --chapter 10_activations --json leaky.json")
    result = json.loads((course / "leaky.json").read_text())
    assert result["score"] < 1
    (test,) = result["tests"]
    assert "exactly 0" in test["output"] and "leaky ReLU" in test["output"]
