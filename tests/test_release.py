"""One source of truth: solutions/ and notebooks/ are generated from the reference code."""

import ast
import inspect
from pathlib import Path

import nbformat
import pytest

from transformer_course import attention
from transformer_course.checks import check, exercises
from transformer_course.release import (
    BEGIN,
    END,
    release,
    strip_markers,
    stub_solutions,
)

ROOT = Path(__file__).resolve().parents[1]


def test_stub_replaces_each_region_keeping_indent():
    source = f"def f(x):\n    '''Doc.'''\n    {BEGIN}\n    y = x + 1\n    return y\n    {END}\n"
    assert stub_solutions(source, "f") == (
        "def f(x):\n    '''Doc.'''\n    raise NotImplementedError(\"f: your code here\")"
    )
    assert strip_markers(source) == "def f(x):\n    '''Doc.'''\n    y = x + 1\n    return y"


@pytest.mark.parametrize(
    "bad", [f"{BEGIN}\nx\n", f"x\n{END}\n", f"{BEGIN}\n{BEGIN}\n{END}\n{END}\n"]
)
def test_unbalanced_markers_are_errors(bad):
    with pytest.raises(ValueError):
        stub_solutions(bad, "f")


def test_solutions_and_notebooks_are_in_sync():
    drift = release(ROOT, check=True)
    assert not drift, f"run `make release`: {drift}"


def test_every_exercise_appears_in_its_chapter_notebook():
    for exercise in exercises():
        path = ROOT / "solutions" / f"{exercise.chapter}.ipynb"
        assert path.exists(), f"{exercise.chapter} has exercises but no solution notebook"
        nb = nbformat.read(path, as_version=4)
        refs = [c.metadata.get("reference", "") for c in nb.cells]
        assert any(r.endswith("." + exercise.name) for r in refs), exercise.name
        sources = [c.source for c in nb.cells if c.cell_type == "code"]
        assert any(f"check({exercise.name})" in s for s in sources), f"no check cell for {exercise.name}"


def test_no_committed_outputs():
    for folder in ("solutions", "notebooks"):
        for path in (ROOT / folder).glob("*.ipynb"):
            nb = nbformat.read(path, as_version=4)
            assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path


def _definitions(chapter: str) -> str:
    """The student notebook's imports and exercise cells, in order: what a student's
    exercise needs to be defined, without the demos that would run the stubs."""
    nb = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4)
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.source.startswith(("%", "!")):
            continue
        if cell.metadata.get("reference"):
            parts.append(cell.source)
            continue
        imports = [n for n in ast.parse(cell.source).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        parts += [ast.unparse(node) for node in imports]
    return "\n".join(parts)


@pytest.mark.parametrize("exercise", exercises(), ids=lambda e: e.name)
def test_student_stub_checks_as_not_implemented(exercise):
    """Define the student notebook's exercises (stubs as released) and check one: it must
    read "not implemented yet"."""
    namespace: dict = {}
    exec(compile(_definitions(exercise.chapter), f"<{exercise.chapter}>", "exec"), namespace)
    assert exercise.name in namespace, f"{exercise.name} is not defined by the student notebook"
    result = check(namespace[exercise.name])
    assert result.status == "not implemented", str(result)


def test_solution_cells_show_the_reference_source():
    nb = nbformat.read(ROOT / "solutions" / "01_attention.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("reference") == "transformer_course.attention.softmax")
    assert cell.source == strip_markers(inspect.getsource(attention.softmax).rstrip("\n"))
    assert "hide-input" in cell.metadata["tags"]
