"""A student plays the course in the student edition with nothing released.

In a fresh environment with the student wheel, a student solves every chapter with the
alternative implementations of ``tests/alternatives/`` (written in other styles than the
reference; every exercise a chapter registers is filled with its first alternative), one
notebook after the other, in one folder. Each notebook runs top to bottom in the quick
setting on that student's code: its import cell says "yours" for every earlier block,
the kept modules hold the student's code, not the reference, and a probe cell added at
the end checks that the chapter's models were built from, and ran, the student's
classes. Chapter 4's MiniLM similarities and chapter 8's SmolLM2 answer ("Paris") come
out as the course's reference gives them. A kept implementation broken afterwards stops
the next chapter with a clear message.

The build and the environment cost about half a minute on an idle machine, each notebook
tens of seconds.
"""

from __future__ import annotations

import ast
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

from transformer_course.checks.registry import chapters, exercises
from transformer_course.llama import generate_greedy
from transformer_course.pretrained import minilm, smollm2
from transformer_course.student_edition import ReleaseConfig, build
from transformer_course.workspace import WORKSPACE_ENV

ROOT = Path(__file__).resolve().parents[1]
PLAYED = chapters()
PROBE = "# probe added by the test"
# Per chapter, code the probe cell runs in the notebook's kernel: it fills ``_facts`` with
# what the test asserts (True for every fact but chapter 8's answer and its counts).
FACTS = {
    "07_training": """
_facts["the GPTs trained are yours"] = all(_mine.is_yours(m) for m in (char_model, bpe_model, resumed_model))
""",
    "08_modern_llm": """
_facts["SmolLM2 loaded"] = HAVE_WEIGHTS
if HAVE_WEIGHTS:
    # Every module of SmolLM2 but PyTorch's own is a class this notebook defined (the student's).
    _ours = [m for m in model.modules() if not type(m).__module__.startswith("torch.")]
    _facts["SmolLM2 is built from the notebook's classes"] = all(type(m).__module__ == "__main__"
                                                            for m in _ours)
    _calls = {}

    def _count(module, inputs, output):
        _calls[type(module).__name__] = _calls.get(type(module).__name__, 0) + 1

    _hooks = [m.register_forward_hook(_count) for m in _ours]
    with torch.no_grad():
        model(ids[:, :4])
    for _hook in _hooks:
        _hook.remove()
    _facts["calls"] = _calls
    _facts["answer"] = answer
    _facts["prompt"] = ids.tolist()
    _facts["new tokens"] = n_new
""",
    "09_why_transformers": """
_facts["the recall Transformer's blocks are yours"] = all(
    _mine.is_yours(m) for m in (transformer.pos, *transformer.layers, transformer.norm))
_facts["the scaling GPTs are yours"] = all(_mine.is_yours(r.model) for r in runs)
_facts["the blocks side by side are yours"] = _mine.is_yours(gpt_block) and _mine.is_yours(llama_block)
if minilm.is_available():
    _facts["MiniLM's layers are yours"] = all(_mine.is_yours(m) for m in encoder.layers)
""",
}
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
    name, other variants' names replaced by their exercises', the module's private helpers
    it uses, and the module's imports of the names they use (a student imports what their
    cell needs when the notebook does not)."""
    alternatives = {v.__name__: exercise for exercise, vs in module.ALTERNATIVES.items() for v in vs}
    source = inspect.getsource(variant)
    helpers = [
        inspect.getsource(value) for key, value in vars(module).items()
        if key.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
        and re.search(rf"\b{key}\b", source)
    ]
    code = "\n\n".join(helpers + [source])
    imports = imports_used(module, code)
    text = "\n".join(imports) + "\n\n\n" + code if imports else code
    for old, new in sorted(alternatives.items(), key=lambda item: -len(item[0])):
        text = re.sub(rf"\b{old}\b", new, text)
    assert re.search(rf"^(def|class) {name}\b", text, re.M), text[:200]
    return text


def imports_used(module, code: str) -> list[str]:
    """The import statements of ``module``, one name each, that bind a name ``code`` uses;
    not the course's own (a notebook takes earlier blocks from transformer_course.mine)."""
    lines = []
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transformer_course"):
            continue
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for alias in node.names:
            bound = (alias.asname or alias.name).split(".")[0]
            if re.search(rf"\b{re.escape(bound)}\b", code):
                lines.append(ast.unparse(ast.ImportFrom(node.module, [alias], node.level)
                                         if isinstance(node, ast.ImportFrom) else ast.Import([alias])))
    return lines


def solve(notebook: Path, chapter: str) -> dict[str, str]:
    """Fill ``notebook``'s exercise cells with the first alternative of each exercise, and
    add a probe cell that prints, as JSON, whose blocks the kernel took
    (:func:`transformer_course.mine.whose`) and the chapter's ``FACTS``.

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
    nb.cells.append(nbformat.v4.new_code_cell(
        PROBE + "\nimport json as _json\nfrom transformer_course import mine as _mine\n_facts = {}\n"
        + FACTS.get(chapter, "").lstrip()
        + "print(_json.dumps({'whose': _mine.whose(), 'facts': _facts}))"))
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


@pytest.fixture(scope="module")
def played(student, tmp_path_factory) -> tuple[Path, Path, dict[str, tuple[dict, dict]]]:
    """Every chapter solved and run in order, in one student's folder.

    Returns:
        ``(python, folder, {chapter: (marks of solve(), what play() read)})``.
    """
    python, notebooks = student
    folder = tmp_path_factory.mktemp("play") / "course"  # the student's copy: notebooks, then mine/
    shutil.copytree(notebooks, folder)
    results = {}
    for chapter in PLAYED:
        notebook = folder / f"{chapter}.ipynb"
        marks = solve(notebook, chapter)
        results[chapter] = (marks, play(python, notebook))
    return python, folder, results


# Chapter 7's alternatives of Tokenizer and train_tokenizer default pattern=None where the
# exercise gives pattern=GPT2_PATTERN, and check() has no case that leaves the default, so
# both pass their checks and the notebook's first call without a pattern fails.
@pytest.mark.parametrize("chapter", PLAYED)
def test_chapter_runs_on_the_students_own_code(played, chapter):
    python, folder, results = played
    number = PLAYED.index(chapter) + 1
    marks, ran = results[chapter]
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
    probe = json.loads(ran["probe"].strip().splitlines()[-1])
    assert "the course's reference" not in probe["whose"], (chapter, probe["whose"])
    facts = probe["facts"]
    if chapter == "08_modern_llm":
        assert_smollm2_answers_as_the_reference(facts)
    assert all(facts.values()), (chapter, facts)
    if chapter == "04_encoder" and minilm.is_available():
        assert_minilm_matches_the_reference(python, folder)


def test_broken_kept_code_stops_the_next_chapter_clearly(played):
    python, folder, _ = played
    assert_broken_kept_code_stops_clearly(python, folder)


def assert_smollm2_answers_as_the_reference(facts: dict) -> None:
    """SmolLM2 in the student's Llama of chapter 8 (their GroupedQueryAttention, SwiGLU
    and RMSNorm, and through them their apply_rotary of chapter 3) ran and answered
    as the course's reference does."""
    if not smollm2.is_available():
        assert facts.pop("SmolLM2 loaded") is False
        return
    layers = smollm2.read_gguf().config.n_layers
    assert facts.pop("calls") == {"Llama": 1, "LlamaBlock": layers, "RMSNorm": 2 * layers + 1,
                                  "GroupedQueryAttention": layers, "SwiGLU": layers}
    model, tokenizer = smollm2.load_smollm2()
    prompt = torch.tensor(facts.pop("prompt"))
    eos = tokenizer.token_to_id("<|im_end|>")
    reference = generate_greedy(model, prompt, facts.pop("new tokens"), eos_id=eos)
    answer = facts.pop("answer")
    assert "Paris" in answer, answer
    assert answer == tokenizer.decode(reference.tokens[0, prompt.size(1):].tolist(), skip_special_tokens=True)


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
    try:
        ran = play(python, folder / "03_positional_encoding.ipynb")
    finally:
        kept.write_text(text)
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
