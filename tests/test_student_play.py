"""A student plays the course in the student edition with nothing released.

In a fresh environment with the student wheel, a student solves chapters 1 to 6 with the
alternative implementations of ``tests/alternatives/`` (written in other styles than the
reference), one notebook after the other, in one folder. Each notebook runs top to bottom
in the quick setting on that student's code: its import cell says "yours" for every
earlier block, and the kept modules hold the student's code, not the reference.
Chapter 4's MiniLM similarities come out as the course's reference gives them. A kept
implementation broken afterwards stops the next chapter with a clear message.

The build and the environment cost about a minute and a half on an idle machine, each
notebook tens of seconds (ten minutes in all on a busy two-core machine).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
from test_student_edition import _make_venv, run_in

from transformer_course.checks.registry import exercises
from transformer_course.pretrained import minilm
from transformer_course.student_edition import ReleaseConfig, build
from transformer_course.workspace import WORKSPACE_ENV

ROOT = Path(__file__).resolve().parents[1]
PLAYED = ["01_attention", "02_multi_head_attention", "03_positional_encoding", "04_encoder",
          "05_decoder", "06_llm"]
PROBE = "# probe added by the test"
YOURS = re.compile(r"^(\w+): yours \(chapter (\d+), passed \d{4}-\d\d-\d\d; mine/(\w+)\.py\)$")


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> tuple[Path, Path]:
    """(python of a fresh venv with the student wheel, nothing released; the edition's
    student notebooks)."""
    out = tmp_path_factory.mktemp("edition")
    wheel = build(ROOT, out, ReleaseConfig((), ""))
    return _make_venv(wheel, tmp_path_factory.mktemp("venv") / "student"), out / "notebooks"


def answer(name: str, variant, module) -> str:
    """The source a student writes for exercise ``name``: ``variant`` under the exercise's
    name, other variants' names replaced by their exercises', and the module's private
    helpers it uses."""
    alternatives = {v.__name__: exercise for exercise, vs in module.ALTERNATIVES.items() for v in vs}
    source = inspect.getsource(variant)
    helpers = [
        inspect.getsource(value) for key, value in vars(module).items()
        if key.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
        and re.search(rf"\b{key}\b", source)
    ]
    text = "\n\n".join(helpers + [source])
    for old, new in sorted(alternatives.items(), key=lambda item: -len(item[0])):
        text = re.sub(rf"\b{old}\b", new, text)
    assert re.search(rf"^(def|class) {name}\b", text, re.M), text[:200]
    return text


def solve(notebook: Path, chapter: str) -> dict[str, str]:
    """Fill ``notebook``'s exercise cells with the first alternative of each exercise, and
    add a probe cell that prints, as JSON, where each class the chapter defines came from.

    Returns:
        ``{exercise: a line of the student's answer}`` to find in the kept module.
    """
    module = importlib.import_module(f"alternatives.ch{chapter}")
    names = {e.name for e in exercises(chapter)}
    nb = nbformat.read(notebook, as_version=4)
    marks = {}
    for cell in nb.cells:
        name = cell.metadata.get("reference", "").rsplit(".", 1)[-1]
        if name in names:
            cell.source = answer(name, module.ALTERNATIVES[name][0], module)
            body = [line.strip() for line in cell.source.splitlines()[1:] if len(line.strip()) > 25]
            marks[name] = body[-1]
    assert set(marks) == names
    nb.cells.append(nbformat.v4.new_code_cell(PROBE + "\nimport json as _json\n"
                                              "from transformer_course import mine as _mine\n"
                                              "print(_json.dumps(_mine.whose()))"))
    nbformat.write(nb, notebook)
    return marks


def play(python: Path, notebook: Path) -> dict:
    """Run ``notebook`` in the student's folder (its workspace: ``mine/`` next to it);
    return the outputs of its import cell, its check cells, its last cell and where it stopped."""
    done = run_in(python, f"""
        import json, os
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError

        os.environ.pop({WORKSPACE_ENV!r}, None)  # the default: mine/ next to the notebook
        nb = nbformat.read({str(notebook)!r}, as_version=4)
        stopped = None
        try:
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={{"metadata": {{"path": {str(notebook.parent)!r}}}}}).execute()
        except CellExecutionError as err:
            stopped = [err.ename, err.evalue]
        text = lambda cell: "".join(o.get("text", "") or o.get("data", {{}}).get("text/plain", "")
                                    for o in cell.outputs)
        code = [c for c in nb.cells if c.cell_type == "code"]
        print(json.dumps({{
            "stopped": stopped,
            "imports": text(code[1]),
            "checks": [  # the verdict only (a cell may also print warnings)
                "".join(o["data"].get("text/plain", "") for o in c.outputs
                        if o.output_type == "execute_result")
                for c in code if c.source.startswith("check(")],
            "probe": text(code[-1]),
        }}))
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_student_plays_chapters_on_their_own_code(student, tmp_path):
    python, notebooks = student
    folder = tmp_path / "course"  # the student's copy of the course: notebooks, then mine/
    shutil.copytree(notebooks, folder)
    for number, chapter in enumerate(PLAYED, start=1):
        notebook = folder / f"{chapter}.ipynb"
        marks = solve(notebook, chapter)
        ran = play(python, notebook)
        assert ran["stopped"] is None, (chapter, ran["stopped"])
        assert ran["checks"], chapter
        failing = [c for c in ran["checks"] if not c.startswith("PASS")]
        assert not failing, failing
        for name, line in marks.items():  # kept, and kept as the student wrote it
            assert line in (folder / "mine" / f"{name}.py").read_text(), (name, line)
        taken = [line for line in ran["imports"].splitlines() if ": " in line]
        if number > 1:  # every earlier block is the student's, from an earlier chapter
            assert taken, chapter
            for line in taken:
                match = YOURS.match(line)
                assert match and match[1] == match[3] and int(match[2]) < number, (chapter, line)
        assert "the course's reference" not in json.loads(ran["probe"]), (chapter, ran["probe"])
        if chapter == "04_encoder" and minilm.is_available():
            assert_minilm_matches_the_reference(python, folder)
    assert_broken_kept_code_stops_clearly(python, folder)


def assert_minilm_matches_the_reference(python: Path, folder: Path) -> None:
    """MiniLM built from the student's kept EncoderLayer (and through it their attention,
    LayerNorm and feed-forward) gives the reference's sentence similarities."""
    sentences = ["A man is playing a guitar.", "Someone is playing an instrument.",
                 "The stock market fell sharply today."]
    done = run_in(python, f"""
        import json, os
        os.chdir({str(folder)!r})
        os.environ.pop({WORKSPACE_ENV!r}, None)
        from transformer_course import mine
        from transformer_course.pretrained import minilm
        model = minilm.load_minilm(blocks=mine)
        layer = model.layers[0]
        assert all(mine.is_yours(m) for m in (layer, layer.self_attn, layer.norm1, layer.ff)), layer
        e = model.encode({sentences!r})
        print(json.dumps((e @ e.T).tolist()))
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = torch.tensor(json.loads(done.stdout.strip().splitlines()[-1]))
    reference = minilm.load_minilm().encode(sentences)
    torch.testing.assert_close(theirs, reference @ reference.T, atol=1e-5, rtol=0)


def assert_broken_kept_code_stops_clearly(python: Path, folder: Path) -> None:
    """The student's kept MultiHeadAttention, edited into a wrong one, stops chapter 3 at
    its import with what to do: not deep inside a later cell, not in silence."""
    kept = folder / "mine" / "MultiHeadAttention.py"
    text = kept.read_text()
    broken = re.sub(r"(scores = .*) / math\.sqrt\(dh\)", r"\1", text)
    assert broken != text
    kept.write_text(broken)
    ran = play(python, folder / "03_positional_encoding.ipynb")
    ename, message = ran["stopped"]
    assert ename == "KeptCodeFails", ran["stopped"]
    assert message.startswith("MultiHeadAttention: your kept code in mine/MultiHeadAttention.py no longer "
                              "passes check(MultiHeadAttention)"), message
    assert "02_multi_head_attention.ipynb" in message and "delete mine/MultiHeadAttention.py" in message
    assert not any(ran["checks"])  # it stopped at the import cell: no check ran


def test_unpassed_block_names_the_exercise_and_chapter(student, tmp_path):
    """A fresh student who opens chapter 4 first: its import names what to finish first."""
    python, notebooks = student
    shutil.copy2(notebooks / "04_encoder.ipynb", tmp_path)
    ran = play(python, tmp_path / "04_encoder.ipynb")
    ename, message = ran["stopped"]
    assert ename == "NotPassedYet", ran["stopped"]
    assert re.match(r"\w+ is an exercise of chapter [1-3], which this chapter builds on\. Finish it in "
                    r"0[1-3]_\w+\.ipynb and run check\(\w+\) there", message), message
