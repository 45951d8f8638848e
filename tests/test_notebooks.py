"""Every notebook runs: solutions top to bottom, student notebooks up to their first
unimplemented exercise. Both in the quick setting (set in conftest.py)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
STUDENT = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _execute(path: Path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    return nb, client


@pytest.mark.notebook
@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_notebook_runs(path):
    nb, client = _execute(path)
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    check_outputs = [
        "".join(o.data.get("text/plain", "") for o in c.outputs if o.output_type == "execute_result")
        for c in nb.cells
        if c.cell_type == "code" and c.source.startswith("check(")
    ]
    assert check_outputs, "a chapter notebook has check cells"
    for text in check_outputs:
        assert text.startswith("PASS"), text


@pytest.mark.notebook
@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.stem)
def test_student_notebook_runs_to_first_exercise(path):
    nb, client = _execute(path)
    with pytest.raises(CellExecutionError) as failure:
        client.execute()
    assert failure.value.ename == "NotImplementedError", str(failure.value)
    ran = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
    assert any(c.metadata.get("reference") for c in ran), "stopped before the first exercise cell"
    for cell in ran:
        if cell.source.startswith("check("):
            text = "".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs)
            assert "not implemented yet" in text, text
