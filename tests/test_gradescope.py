"""The Gradescope autograder zip: its layout and README, ``run_autograder`` on this
environment, ``setup.sh`` with a Python too old (it fetches uv to install its own, or
stops with advice), and a dry run of the whole zip as Gradescope runs it: ``setup.sh``
builds its own venv for real, then ``run_autograder`` grades in that venv exactly as
``python -m autograder grade`` does here. Tests marked ``install`` use the network.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from result_files import without_timings

from autograder import GradingError, gradescope, isolation, view
from autograder.grader import Grader
from autograder.gradescope import (
    CPU_INDEX,
    RESOURCES,
    build_zip,
    measure,
    min_python,
    resources_text,
    torch_pin,
    with_hidden_cases,
)
from autograder.gradescope import run as gradescope_run
from autograder.results import build_result, exercise_result
from transformer_course.checks.exercise import Mistake
from transformer_course.checks.results import CaseResult, CheckResult, Status

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "01_attention"
SUBMISSIONS = {"solution": ROOT / "solutions" / f"{CHAPTER}.ipynb",
               "student": ROOT / "notebooks" / f"{CHAPTER}.ipynb"}

def _unpack(tmp: Path) -> Path:
    """Unzip a fresh autograder zip into ``tmp/autograder/source`` as Gradescope does."""
    home = tmp / "autograder"
    with zipfile.ZipFile(build_zip([CHAPTER], tmp / "autograder.zip")) as z:
        z.extractall(home / "source")
        for info in z.infolist():  # extractall drops the permission bits
            (home / "source" / info.filename).chmod(info.external_attr >> 16 or 0o644)
    return home


def _submit(home: Path, notebook: Path) -> None:
    shutil.rmtree(home / "submission", ignore_errors=True)
    (home / "submission").mkdir(parents=True)
    shutil.copy(notebook, home / "submission" / notebook.name)


def _run_autograder(home: Path, **env: str) -> dict:
    done = subprocess.run([str(home / "source" / "run_autograder")], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "AUTOGRADER_ROOT": str(home), **env})
    assert done.returncode == 0, done.stderr
    return json.loads((home / "results" / "results.json").read_text())


def test_zip_holds_the_scripts_the_course_and_a_readme(tmp_path):
    with zipfile.ZipFile(build_zip([CHAPTER], tmp_path / "autograder.zip")) as z:
        names = set(z.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
        readme, setup = z.read("README.md").decode(), z.read("setup.sh").decode()
    assert {"setup.sh", "run_autograder", "README.md", "autograder_config.json",
            "course/pyproject.toml", "course/constraints.txt", "course/README.md",
            "course/autograder/gradescope.py", "course/src/transformer_course/__init__.py"} <= names
    assert all(modes[n] & stat.S_IXUSR for n in ("setup.sh", "run_autograder"))
    assert not any("__pycache__" in n for n in names)
    # The templates are filled in from pyproject.toml and constraints.txt.
    assert not re.search(r"@[A-Z_]+@", setup + readme)
    assert f'MIN_PYTHON="{min_python()}"' in setup and CPU_INDEX in setup
    assert "Ubuntu 22.04" in readme and torch_pin() in readme and f">={min_python()}" in readme
    assert "apt_install bubblewrap" in setup and "`bubblewrap`" in readme


def test_hidden_cases_are_shown_after_the_due_date_unless_configured(tmp_path):
    with zipfile.ZipFile(build_zip([CHAPTER], tmp_path / "default.zip")) as z:
        config, readme = json.loads(z.read("autograder_config.json")), z.read("README.md").decode()
    assert config["hidden_visibility"] == "after_due_date" and "`after_due_date` (students see" in readme
    published = build_zip([CHAPTER], tmp_path / "published.zip", hidden_visibility="after_published")
    with zipfile.ZipFile(published) as z:
        assert json.loads(z.read("autograder_config.json"))["hidden_visibility"] == "after_published"
    with pytest.raises(GradingError, match="after_due_date, after_published, visible, hidden"):
        build_zip([CHAPTER], tmp_path / "bad.zip", hidden_visibility="later")


def test_the_readme_gives_the_settings_measured_for_its_chapters(tmp_path, monkeypatch):
    measured = json.loads(RESOURCES.read_text())
    assert set(measured["chapters"]) == {p.stem for p in (ROOT / "solutions").glob("*.ipynb")}
    with zipfile.ZipFile(build_zip([CHAPTER], tmp_path / "autograder.zip")) as z:
        readme = z.read("README.md").decode()
    row = measured["chapters"][CHAPTER]
    assert resources_text([CHAPTER]) in readme
    assert f"| {CHAPTER} | {row['seconds']:g} | {row['cpu_seconds']:g} | {row['peak_mib']} |" in readme
    gigabytes = -(-(row["peak_mib"] + measured["child_memory_limit_mib"]) // 1024)
    assert f"Memory: at least {gigabytes} GB" in readme and "Not measured" not in readme
    # A chapter the file lacks is named as such, and its figures are left out.
    del measured["chapters"]["07_training"]
    (tmp_path / "resources.json").write_text(json.dumps(measured))
    monkeypatch.setattr(gradescope, "RESOURCES", tmp_path / "resources.json")
    text = resources_text([CHAPTER, "07_training"])
    assert "Not measured yet: 07_training" in text and "| 07_training |" not in text


def test_measuring_grades_the_solution_and_sees_the_worker():
    found = measure([CHAPTER])["chapters"][CHAPTER]
    assert found["score"] == found["max_score"] == 6
    # The worker and its exercise processes each hold torch: far more than this process alone.
    assert found["peak_mib"] > 200 and found["cpu_seconds"] > 0
    assert found["worst_case_seconds"] > found["seconds"] + 5 * 10  # five exercises, 10 s floor each


def _with_hidden() -> dict:
    hint = Mistake("no max subtraction", "subtract the maximum", None)
    softmax = CheckResult("softmax", CHAPTER, Status.FAILED,
                          [CaseResult("2-D", True), CaseResult("3-D", True),
                           CaseResult("hidden: large", False, "NaN at [0]", "no max subtraction"),
                           CaseResult("hidden: small", True)], 2, hints=[hint])
    mask = CheckResult("causal_mask", CHAPTER, Status.FAILED,
                       [CaseResult("4", False, "values differ"), CaseResult("hidden: 7", True)], 1)
    return build_result(Path(f"{CHAPTER}.ipynb"), CHAPTER, "0" * 64, 1, [softmax, mask], {}, [], [], 1.0)


def test_each_exercise_is_split_into_its_visible_and_its_hidden_cases():
    result = _with_hidden()
    shown = with_hidden_cases(result, "after_due_date")
    tests = {t["name"]: t for t in shown["tests"]}
    assert list(tests) == ["softmax: 2 visible test cases", "softmax: 2 hidden test cases",
                           "causal_mask: 1 visible test cases", "causal_mask: 1 hidden test cases"]
    assert [t["visibility"] for t in tests.values()] == ["visible", "after_due_date"] * 2
    assert [(t["score"], t["max_score"], t["status"]) for t in tests.values()] == [
        (1, 1, "passed"), (0.5, 1, "failed"), (0, 0.5, "failed"), (0.5, 0.5, "passed")]
    assert sum(t["score"] for t in shown["tests"]) == shown["score"] == result["score"] == 2
    # What the visible test shows says nothing of the hidden cases, nor does the summary.
    visible = tests["softmax: 2 visible test cases"]
    assert "hidden" not in visible["output"] and "subtract the maximum" not in visible["output"]
    assert exercise_result(visible).hints == []
    assert "subtract the maximum" in tests["softmax: 2 hidden test cases"]["output"]
    assert shown["output"].splitlines()[0] == (
        f"{CHAPTER}: 1 / 1.5 points on the visible cases; the hidden cases' 1.5 points: "
        "students see them once the due date has passed")
    assert with_hidden_cases(result, "visible") is result
    assert [t["visibility"] for t in with_hidden_cases(result, "hidden")["tests"]][1::2] == ["hidden"] * 2


def test_min_python_is_the_oldest_that_the_course_and_its_pins_accept():
    specs = [tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]]
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        try:
            dist = metadata.distribution(name) if version else None
        except metadata.PackageNotFoundError:
            dist = None
        if dist and dist.version.split("+")[0] == version and dist.metadata.get("Requires-Python"):
            specs.append(dist.metadata["Requires-Python"])
    oldest = Version(min_python())
    assert all(oldest in SpecifierSet(s) for s in specs)
    # The Python just below the oldest: the last patch before it, or the newest of the minor before.
    major, minor, patch = (*oldest.release, 0, 0)[:3]
    below = Version(f"{major}.{minor}.{patch - 1}" if patch else f"{major}.{minor - 1}.99")
    assert not all(below in SpecifierSet(s) for s in specs), below


def test_run_autograder_grades_a_submission(tmp_path):
    home = _unpack(tmp_path)
    _submit(home, SUBMISSIONS["solution"])
    result = _run_autograder(home, AUTOGRADER_PYTHON=sys.executable)
    assert result["score"] == result["max_score"] == 6
    assert result["extra_data"]["chapter"] == CHAPTER
    assert {t["visibility"] for t in result["tests"]} == {"visible", "after_due_date"}
    assert all(("hidden test cases" in t["name"]) == (t["visibility"] != "visible") for t in result["tests"])
    (home / "submission" / f"{CHAPTER}.ipynb").rename(home / "submission" / "notes.txt")
    result = _run_autograder(home, AUTOGRADER_PYTHON=sys.executable)
    assert result["score"] == 0 and f"upload {CHAPTER}.ipynb" in result["output"]


def test_setup_stops_with_advice_when_no_python_fits_and_bootstrap_is_off(tmp_path):
    home = _unpack(tmp_path)
    env = {**os.environ, "AUTOGRADER_ROOT": str(home), "AUTOGRADER_PYTHON_BOOTSTRAP": "none",
           "AUTOGRADER_BASE_PYTHON": str(tmp_path / "no-such-python")}
    done = subprocess.run([str(home / "source" / "setup.sh")], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 1
    assert f"older than {min_python()}" in done.stderr and "AUTOGRADER_BASE_PYTHON" in done.stderr
    assert not (home / "venv").exists()


def test_a_submission_that_crashes_the_grader_still_gets_a_result(tmp_path, monkeypatch):
    def crash(self, path, chapter=None):
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

    monkeypatch.setattr(Grader, "grade", crash)
    home = _unpack(tmp_path)
    _submit(home, SUBMISSIONS["student"])
    assert gradescope_run(home, home / "source" / "autograder_config.json") == 0
    result = json.loads((home / "results" / "results.json").read_text())
    assert result["score"] == 0 and result["max_score"] == 6 and len(result["tests"]) == 5
    assert "could not grade this submission (RecursionError: maximum recursion" in result["output"]


@pytest.mark.install
def test_setup_installs_its_own_python_with_uv_when_the_image_python_is_too_old(tmp_path):
    """About 20 s: pip fetches uv from PyPI. Every Python here satisfies the course, so the
    unpacked setup.sh gets a floor one minor release above this one, which makes this
    Python "too old" as an image's 3.10 is. python-build-standalone is not reachable here,
    so uv is pointed at an empty local mirror, and the test stops at its download."""
    home, mirror = _unpack(tmp_path), tmp_path / "mirror"
    mirror.mkdir()
    floor = f"3.{sys.version_info.minor + 1}.0"
    series = ".".join(min_python().split(".")[:2])  # what uv installs: the course's series
    setup = home / "source" / "setup.sh"
    text = setup.read_text()
    assert f'MIN_PYTHON="{min_python()}"' in text
    setup.write_text(text.replace(f'MIN_PYTHON="{min_python()}"', f'MIN_PYTHON="{floor}"'))
    env = {**os.environ, "AUTOGRADER_ROOT": str(home), "AUTOGRADER_BASE_PYTHON": sys.executable,
           "UV_PYTHON_INSTALL_MIRROR": mirror.as_uri()}
    done = subprocess.run([str(setup)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    assert f"older than {floor}: installing CPython {series} with uv" in done.stdout, done.stdout
    # uv asked the mirror for the newest release of the series, to unpack under the root.
    assert f"{mirror}/" in done.stderr and f"cpython-{series}." in done.stderr, done.stderr
    assert (home / "python").is_dir() and not (home / "venv").exists()


def test_the_sandbox_of_an_installed_grader_holds_its_site_packages_and_not_the_current_folder(
        monkeypatch, tmp_path):
    """In Gradescope's venv the grader is a copy in site-packages (where torch is too), and
    run_autograder starts in /autograder/source, which holds the course's sources."""
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    monkeypatch.setattr(view, "package_dir", lambda: site / "transformer_course")
    monkeypatch.setattr(view, "autograder_dir", lambda: site / "autograder")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    binds = [Path(b) for b in isolation._python_binds()]
    assert any(site.is_relative_to(b) for b in binds) and Path(sys.prefix).resolve() in binds
    assert not any(tmp_path.is_relative_to(b) for b in binds)


def test_the_sandbox_of_a_source_tree_grader_holds_none_of_the_repository():
    binds = [Path(b) for b in isolation._python_binds()]
    assert Path(sys.prefix).resolve() in binds
    assert not any(ROOT.is_relative_to(b) or b == ROOT / "src" for b in binds)


@pytest.fixture(scope="module")
def gradescope_image():
    """The zip unpacked and set up by its own ``setup.sh``, in a folder removed afterwards.

    Only what needs the internet is pointed elsewhere: torch's index is pip's default
    index (PyPI) unless AUTOGRADER_TORCH_INDEX_URL is set, and pip keeps this machine's own
    configuration (here a local CPU build of the torch pin); no Python is bootstrapped, as
    the Python running these tests fits. pip skips compiling bytecode (about 9,700 files,
    most of them torch's; PIP_COMPILE=0, as PIP_NO_COMPILE=1 means the opposite to pip);
    Python compiles what the grader imports when it first runs.
    """
    with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
        home = _unpack(Path(tmp))
        env = {**os.environ, "AUTOGRADER_ROOT": str(home), "AUTOGRADER_PYTHON_BOOTSTRAP": "none",
               "AUTOGRADER_BASE_PYTHON": sys._base_executable, "PIP_COMPILE": "0",
               "AUTOGRADER_TORCH_INDEX_URL": os.environ.get("AUTOGRADER_TORCH_INDEX_URL",
                                                            "https://pypi.org/simple")}
        done = subprocess.run([str(home / "source" / "setup.sh")], capture_output=True, text=True,
                              env=env, timeout=1200)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "torch 2" in done.stdout and "(CPU)" in done.stdout, done.stdout
        yield home


@pytest.mark.install
@pytest.mark.parametrize("kind", list(SUBMISSIONS))
def test_setup_then_run_autograder_grades_as_the_command_line_does(gradescope_image, kind, tmp_path):
    """Costs 2-4 minutes once per session: setup.sh installs about 120 packages into a venv."""
    home = gradescope_image
    venv_python = home / "venv" / "bin" / "python"
    probe = subprocess.run([str(venv_python), "-c", "import autograder, torch; print(autograder.__file__, "
                            "torch.version.cuda)"], capture_output=True, text=True, check=True, cwd=home)
    # The grader runs from the venv's own copy, not from a source tree, on a CPU-only torch.
    assert probe.stdout.startswith(str(home / "venv")) and probe.stdout.split()[-1] == "None"

    notebook = SUBMISSIONS[kind]
    _submit(home, notebook)
    gradescope = _run_autograder(home)
    subprocess.run([sys.executable, "-m", "autograder", "grade", str(notebook), "--chapter", CHAPTER,
                    "--json", str(tmp_path / "cli.json")], check=True, capture_output=True, cwd=ROOT)
    cli = with_hidden_cases(json.loads((tmp_path / "cli.json").read_text()), "after_due_date")
    assert without_timings(gradescope) == without_timings(cli)
    assert gradescope["score"] == (gradescope["max_score"] if kind == "solution" else 0)
    assert gradescope["max_score"] == 6 and len(gradescope["tests"]) >= 2
