"""The student edition: built from this repository, it holds no solution of an
unreleased chapter, installs in a fresh virtual environment, and checks answers exactly
as the instructor edition does.

Builds are slow (the stored check data runs every reference and every catalogued
mistake once per process), so each release configuration is built once per module.
The fresh environments share this one's third-party packages (torch and the rest, a
``.pth`` line) but not its ``transformer_course``, which the student wheel provides.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from autograder.grader import Grader, Limits
from transformer_course import release
from transformer_course.checks import check, prepare, stored
from transformer_course.checks.exercise import Case, Mistake
from transformer_course.checks.registry import _EXERCISES, chapters, exercises
from transformer_course.student_edition import (
    ReleaseConfig,
    build,
    read_config,
    student_checks,
    student_module,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "transformer_course"
STUDENT_BOOK = ROOT / "book" / "_build" / "student" / "html"
CHAPTERS = chapters()

# --------------------------------------------------------------------------- solution regions


def solution_regions() -> dict[str, list[str]]:
    """``{exercise name: the lines of its solution regions}`` from the reference code."""
    modules = {e.reference.__module__: e for e in exercises()}
    regions: dict[str, list[str]] = {}
    for module in modules:
        path = SOURCE / (module.removeprefix("transformer_course.").replace(".", "/") + ".py")
        owner, inside = None, False
        for line in path.read_text().splitlines():
            if match := re.match(r"(def|class) (\w+)", line):
                owner = match[2]
            if line.strip() == release.BEGIN:
                inside = True
            elif line.strip() == release.END:
                inside = False
            elif inside:
                regions.setdefault(owner, []).append(line.strip())
    return regions


def distinctive_lines(released: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Per unreleased exercise, the solution lines that appear nowhere a student may
    look anyway: not in the given code around the regions, not in the student notebooks."""
    given = "\n".join(
        release.stub_solutions(p.read_text(), "x") for p in SOURCE.rglob("*.py")
    ) + "".join(p.read_text() for p in (ROOT / "notebooks").glob("*.ipynb"))
    chapter_of = {e.name: e.chapter for e in exercises()}
    found = {}
    for name, lines in solution_regions().items():
        if chapter_of[name] in released:
            continue
        found[name] = {
            line for line in lines
            if len(line) >= 12 and line not in given and json.dumps(line)[1:-1] not in given
        }
    assert all(found.values()), {k: v for k, v in found.items() if not v}
    return found


def assert_no_leak(files: dict[str, str], released: tuple[str, ...] = ()) -> None:
    """``files`` (name: text) hold no distinctive line of an unreleased solution, in
    plain, JSON-escaped or HTML-escaped form."""
    leaks = []
    for exercise, lines in distinctive_lines(released).items():
        for line in lines:
            forms = {line, json.dumps(line)[1:-1], line.replace("&", "&amp;").replace("<", "&lt;")
                     .replace(">", "&gt;").replace('"', "&quot;")}
            leaks += [(exercise, line, name) for name, text in files.items() if any(f in text for f in forms)]
    assert not leaks, leaks[:10]


# --------------------------------------------------------------------------- builds and venvs


@pytest.fixture(scope="module")
def editions(tmp_path_factory) -> dict[str, Path]:
    """Student editions with none, chapter 1 and every chapter released."""
    configs = {"none": (), "01": (CHAPTERS[0],), "all": tuple(CHAPTERS)}
    out = tmp_path_factory.mktemp("editions")
    return {key: build(ROOT, out / key, ReleaseConfig(released, "")) for key, released in configs.items()}


def _make_venv(wheel: Path, where: Path) -> Path:
    """A fresh venv: this one's third-party packages, the student wheel installed by pip."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    # Third-party packages only: a plain path entry, so this environment's editable
    # install of transformer_course (a .pth hook inside it) is not picked up.
    Path(purelib, "course_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--disable-pip-version-check", "--quiet", str(wheel)],
        check=True, capture_output=True,
    )
    return python


@pytest.fixture(scope="module")
def venvs(editions, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("venvs")
    return {key: _make_venv(wheel, root / key) for key, wheel in editions.items()}


def run_in(python: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=900,
        cwd=python.parents[2],  # not the repository: its src/ must not be importable
        env={**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"},
    )


# --------------------------------------------------------------------------- units


def test_store_round_trips_nested_plain_data(tmp_path):
    value = (
        [Case("a case", {"x": torch.arange(6.0).view(2, 3), "dim": -1, "state": {"w": torch.ones(2)}})],
        [{"output": torch.tensor([True, False])}],
        {"a mistake": [None, {"output": torch.zeros(1, dtype=torch.float64)}]},
        {"nested": ((1, 2.5), ["text", None, float("inf")])},
    )
    stored.save(value, tmp_path / "data")
    back = stored.load(tmp_path / "data")
    assert type(back) is tuple and type(back[3]["nested"][0]) is tuple
    assert back[0][0].name == "a case" and back[0][0].args["dim"] == -1
    assert torch.equal(back[0][0].args["state"]["w"], torch.ones(2))
    assert back[1][0]["output"].dtype == torch.bool and back[2]["a mistake"][0] is None
    assert back[2]["a mistake"][1]["output"].dtype == torch.float64
    assert back[3]["nested"][1] == ["text", None, float("inf")]
    with pytest.raises(TypeError, match="cannot store a function"):
        stored.save({"impl": lambda x: x}, tmp_path / "bad")
    with pytest.raises(TypeError, match="string keys"):
        stored.save({1: torch.ones(1)}, tmp_path / "bad")


def test_unreleased_exercise_is_stubbed_like_the_student_notebook():
    source = (SOURCE / "attention.py").read_text()
    graded = {e.name: e.chapter for e in exercises("01_attention")}
    stubbed = student_module(source, "transformer_course.attention", graded, released=())
    for name in graded:
        assert f'raise NotImplementedError("{name}: your code here")' in stubbed
    assert release.BEGIN not in stubbed and "x.amax(dim=dim, keepdim=True)" not in stubbed
    assert "_guard_unreleased(__name__, {'softmax': '01_attention'" in stubbed
    kept = student_module(source, "transformer_course.attention", graded, released=("01_attention",))
    assert kept == release.strip_markers(source) + "\n"


def test_checks_module_loses_reference_cases_and_mistake_code():
    source = (SOURCE / "checks" / "ch01_attention.py").read_text()
    student = student_checks(source)
    assert "def _softmax_no_max" in source and "_softmax_no_max" not in student
    assert "def _sdpa_cases" in source and "_sdpa_cases" not in student
    assert "reference=None" in student and "make_cases=None" in student
    assert "exp() of large logits overflows" in student  # the hints stay


def test_release_config_names_known_chapters(tmp_path):
    config = tmp_path / "release.toml"
    config.write_text('released = ["01_attention"]\nstudent_repository = "https://example.org/s"\n')
    assert read_config(config) == ReleaseConfig(("01_attention",), "https://example.org/s")
    config.write_text('released = ["01_atention"]\n')
    with pytest.raises(ValueError, match="unknown chapter.*01_atention.*01_attention"):
        read_config(config)
    assert read_config(ROOT / "release.toml").released == ()  # the start of a term


# --------------------------------------------------------------------------- the wheel


def _wheel_files(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name).decode("utf-8", "replace") for name in archive.namelist()}


def test_wheel_holds_no_unreleased_solution_no_autograder_no_hidden_cases(editions):
    files = _wheel_files(editions["none"])
    assert_no_leak(files)
    names = set(files)
    assert not any(n.startswith("autograder/") for n in names)
    assert "transformer_course/release.py" not in names
    stored_data = {n for n in names if "/checks/stored/" in n}
    assert stored_data == {  # the visible seed only, and where each exercise's reference lives
        f"transformer_course/checks/stored/{e.name}-0.{ext}"
        for e in exercises()
        for ext in ("json", "safetensors")
    } | {"transformer_course/checks/stored/modules.json"}
    assert "transformer_course/data/shakespeare.txt" in names  # given data ships
    assert "class KVCache" in files["transformer_course/kv_cache.py"]  # given code ships
    metadata = files[next(n for n in names if n.endswith(".dist-info/METADATA"))]
    assert "Name: transformers-from-scratch\nVersion: 0.1.0+student" in metadata


def test_released_chapter_ships_its_reference(editions):
    files = _wheel_files(editions["01"])
    attention = files["transformer_course/attention.py"]
    assert "x.amax(dim=dim, keepdim=True)" in attention and release.BEGIN not in attention
    assert 'raise NotImplementedError("MultiHeadAttention: your code here")' in files[
        "transformer_course/multi_head.py"
    ]
    assert_no_leak(files, released=(CHAPTERS[0],))


def test_student_notebooks_are_the_released_notebooks(editions):
    built = editions["none"].parents[1] / "notebooks"
    released = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in built.glob("*.ipynb")) == released
    for path in built.glob("*.ipynb"):
        assert path.read_text() == (ROOT / "notebooks" / path.name).read_text()


# --------------------------------------------------------------------------- checks: both editions


def _as_student(exercise):
    """The exercise as the student edition holds it: no reference, cases or mistake code."""
    return dataclasses.replace(
        exercise, reference=None, make_cases=None,
        mistakes=[Mistake(m.name, m.hint, None) for m in exercise.mistakes],
    )


def _verdict(result) -> tuple:
    return (result.status, str(result), result._repr_html_(), [dataclasses.astuple(c) for c in result.cases],
            [m.name for m in result.hints], result.score)


@pytest.mark.parametrize("exercise", exercises(), ids=lambda e: e.name)
def test_check_gives_the_same_verdicts_in_both_editions(editions, monkeypatch, exercise):
    """The reference and every catalogued mistake, judged by the instructor edition
    (reference run now) and by the student edition (its stored data, no reference)."""
    subjects = [exercise.reference] + [m.impl for m in exercise.mistakes]
    instructor = [_verdict(check(s, exercise.name)) for s in subjects]
    monkeypatch.setattr(stored, "STORE", editions["none"].parents[1] / "package" / "checks" / "stored")
    monkeypatch.setattr(prepare, "_CACHE", {})
    monkeypatch.setitem(_EXERCISES, exercise.name, _as_student(exercise))
    student = [_verdict(check(s, exercise.name)) for s in subjects]
    assert student == instructor
    assert instructor[0][0] == "passed"
    for mistake, verdict in zip(exercise.mistakes, instructor[1:], strict=True):
        assert verdict[0] == "failed" and mistake.name in verdict[4], (mistake.name, verdict[1])


# --------------------------------------------------------------------------- installed


def test_installed_student_edition_hides_solutions_and_names_the_chapter(venvs):
    done = run_in(venvs["none"], """
        import inspect, importlib.util
        import transformer_course.attention as attention_module
        from transformer_course.checks import check
        from transformer_course.edition import NotReleasedError, edition

        assert edition() == "student", edition()
        assert importlib.util.find_spec("autograder") is None
        source = inspect.getsource(attention_module)
        assert 'raise NotImplementedError("softmax: your code here")' in source
        assert "### BEGIN SOLUTION" not in source
        try:
            from transformer_course.multi_head import MultiHeadAttention
        except NotReleasedError as err:
            print("MESSAGE", err)

        def softmax(x, dim=-1):
            raise NotImplementedError("softmax: your code here")

        print("STUB", check(softmax))

        def softmax(x, dim=-1):
            return x.exp() / x.exp().sum(dim=dim, keepdim=True)

        print("MISTAKE", check(softmax))
    """)
    assert done.returncode == 0, done.stderr
    assert "MESSAGE MultiHeadAttention is an exercise of chapter 02_multi_head_attention" in done.stdout
    assert ("finish it in chapter 2 (02_multi_head_attention.ipynb), where a passing "
            "check(MultiHeadAttention) keeps it") in done.stdout
    assert "STUB FAIL softmax: not implemented yet" in done.stdout
    instructor_hint = next(m.hint for m in _EXERCISES["softmax"].mistakes if m.name == "no max subtraction")
    assert f"Likely mistake: {instructor_hint}" in done.stdout


def test_installed_student_edition_passes_every_reference(venvs):
    """Every chapter released: check(reference) passes every exercise from stored data."""
    names = [(e.reference.__module__, e.name) for e in exercises()]
    done = run_in(venvs["all"], f"""
        import importlib
        from transformer_course.checks import check, prepare

        for module, name in {names!r}:
            result = check(getattr(importlib.import_module(module), name))
            assert result.passed, str(result)
            assert prepare._CACHE[(name, 0)] is not None
        print("all passed")
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "all passed" in done.stdout


def _run_notebook(python: Path, path: Path) -> subprocess.CompletedProcess:
    """Run a notebook in ``python``'s environment up to its first error; print that
    error's name and message, and each check cell's text."""
    return run_in(python, f"""
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError

        nb = nbformat.read({str(path)!r}, as_version=4)
        try:
            NotebookClient(nb, timeout=600, kernel_name="python3").execute()
        except CellExecutionError as err:
            print("STOPPED", err.ename, "|", err.evalue)
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.source.startswith("check(") and cell.get("execution_count"):
                print("CHECK", "".join(o.get("data", {{}}).get("text/plain", "") for o in cell.outputs))
    """)


def _assert_ran_to_first_exercise(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    stopped = [line for line in done.stdout.splitlines() if line.startswith("STOPPED")]
    assert stopped and stopped[0].startswith("STOPPED NotImplementedError |"), done.stdout[-3000:]
    checks = [line for line in done.stdout.splitlines() if line.startswith("CHECK")]
    assert checks, "no check cell ran"
    assert all("not implemented yet" in line for line in checks), checks


@pytest.mark.notebook
def test_notebook_01_runs_with_nothing_released(editions, venvs):
    notebook = editions["none"].parents[1] / "notebooks" / f"{CHAPTERS[0]}.ipynb"
    _assert_ran_to_first_exercise(_run_notebook(venvs["none"], notebook))


@pytest.mark.notebook
def test_next_chapter_waits_for_its_building_blocks(editions, venvs):
    """Chapter 2 uses chapter 1's attention: neither passed nor released, its import
    cell names the exercise and chapter to finish; released, the notebook runs to its
    first exercise."""
    notebook = editions["none"].parents[1] / "notebooks" / f"{CHAPTERS[1]}.ipynb"
    waiting = _run_notebook(venvs["none"], notebook)
    stopped = re.search(r"STOPPED NotPassedYet \| (\w+) is an exercise of chapter 1, which this chapter",
                        waiting.stdout)
    assert stopped and stopped[1] in {e.name for e in exercises("01_attention")}, (
        waiting.stdout[-2000:] + waiting.stderr[-2000:]
    )
    _assert_ran_to_first_exercise(_run_notebook(venvs["01"], notebook))


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_notebook_runs_with_every_chapter_released(editions, venvs, chapter):
    notebook = editions["all"].parents[1] / "notebooks" / f"{chapter}.ipynb"
    _assert_ran_to_first_exercise(_run_notebook(venvs["all"], notebook))


# --------------------------------------------------------------------------- autograder


def _filled(notebook: Path, target: Path) -> Path:
    """``notebook`` with every exercise cell holding the reference solution."""
    nb = nbformat.read(notebook, as_version=4)
    solution = release.synced_solution(nbformat.read(ROOT / "solutions" / notebook.name, as_version=4))
    answers = {c.metadata["reference"]: c.source for c in solution.cells if c.metadata.get("reference")}
    for cell in nb.cells:
        if cell.metadata.get("reference"):
            cell.source = answers[cell.metadata["reference"]]
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


@pytest.mark.notebook
def test_autograder_grades_alike_whichever_edition_the_student_used(editions, venvs, tmp_path):
    """The same answers, written and run in the student edition's environment or in the
    instructor's, get the same grade."""
    chapter = CHAPTERS[0]
    submissions = {
        "student": _filled(editions["none"].parents[1] / "notebooks" / f"{chapter}.ipynb",
                           tmp_path / "student" / f"{chapter}.ipynb"),
        "instructor": _filled(ROOT / "notebooks" / f"{chapter}.ipynb",
                              tmp_path / "instructor" / f"{chapter}.ipynb"),
    }
    # The student ran theirs in the student edition: its outputs (all checks passing) stay in the file.
    ran = run_in(venvs["none"], f"""
        import nbformat
        from nbclient import NotebookClient
        path = {str(submissions["student"])!r}
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3").execute()
        nbformat.write(nb, path)
    """)
    assert ran.returncode == 0, ran.stderr[-3000:]
    ran_checks = [c for c in nbformat.read(submissions["student"], 4).cells if c.source.startswith("check(")]
    assert ran_checks and all("PASS" in json.dumps(c.outputs) for c in ran_checks)
    with Grader(Limits(timeout_floor=10.0, load_timeout=10.0)) as grader:
        results = {key: grader.grade(path) for key, path in submissions.items()}
    for result in results.values():  # the files differ (outputs) and so do timings
        result.pop("execution_time")
        for key in ("sha256", "time_taken"):
            result["extra_data"].pop(key)
    assert results["student"] == results["instructor"]
    assert results["student"]["score"] == results["student"]["max_score"] > 0


# --------------------------------------------------------------------------- the student book


def _site_files(html: Path) -> dict[str, str]:
    return {
        str(p.relative_to(html)): p.read_text(errors="replace")
        for p in html.rglob("*")
        if p.is_file() and p.suffix in {".html", ".js", ".txt", ".ipynb", ".json", ".md", ".py"}
    }


@pytest.fixture(scope="module")
def student_book(tmp_path_factory) -> Path:
    """The student book, built at the quick setting as ``make student-book`` builds it."""
    out = tmp_path_factory.mktemp("student-book")
    build = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT / "book"), "--all", "-W",
         "--keep-going", "--path-output", str(out)],
        capture_output=True, text=True, timeout=1800,
        env={**os.environ, "TRANSFORMER_COURSE_BOOK": "student", "TRANSFORMER_COURSE_QUICK": "1"},
    )
    assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
    return out / "_build" / "html"


@pytest.mark.notebook
def test_student_book_holds_no_solution_code(student_book):
    files = _site_files(student_book)
    assert any(name.startswith("_sources/chapters/") for name in files)
    assert "searchindex.js" in files
    assert_no_leak(files)
    chapters = "".join(text for name, text in files.items() if name.startswith("chapters/"))
    assert "Show solution" not in chapters  # nothing folded
    assert not re.search(r'class="[^"]*\bsolution( |")', chapters)


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_student_book_keeps_outputs_and_opens_student_notebooks(student_book, chapter):
    page = (student_book / "chapters" / f"{chapter}.html").read_text()
    solution = nbformat.read(ROOT / "solutions" / f"{chapter}.ipynb", as_version=4)
    removed = sum(release.SOLUTION_TAG in c.metadata.get("tags", []) for c in solution.cells)
    assert page.count('class="solution-removed"') == removed > 0
    checks = sum(c.source.startswith("check(") for c in solution.cells if c.cell_type == "code")
    # the reference's check outputs are kept
    assert page.count(" visible cases; the grader also runs hidden ones.") >= checks > 0
    assert "<img" in page
    download = student_book / "_sources" / "chapters" / f"{chapter}.ipynb"
    assert download.read_text() == (ROOT / "notebooks" / f"{chapter}.ipynb").read_text()
    student_repo = read_config(ROOT / "release.toml").student_repository.removeprefix("https://github.com/")
    launch = re.findall(r'href="(https://mybinder\.org[^"]+)"', page)
    assert launch, page[:2000]
    for url in launch:
        assert student_repo in url and url.endswith(f"notebooks/{chapter}.ipynb"), url


@pytest.mark.notebook
def test_student_book_pages_load_cleanly_in_chromium(student_book, browser, scripts, artifacts):
    """Every page in headless Chromium: no broken link (download buttons included), no
    script error, formulas typeset, images loaded. Keeps a screenshot of chapter 1 at an
    exercise: the note where the solution was, and the check's output kept."""
    check_book = scripts("check_book")
    reports = check_book.check_site(student_book, browser)
    with check_book.serve(student_book) as base:
        page = browser.new_page(viewport=check_book.VIEWPORT)
        page.goto(base + "chapters/01_attention.html", wait_until="load")
        page.get_by_text("scaled_dot_product_attention: passed all").first.scroll_into_view_if_needed()
        (artifacts / "student-book").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=artifacts / "student-book" / "01_attention.png")
        page.close()
    problems = {page: check_book.page_problems(report) for page, report in reports.items()}
    assert {f"chapters/{c}.html" for c in CHAPTERS} <= set(reports)
    assert not {page: found for page, found in problems.items() if found}
