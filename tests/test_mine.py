"""The student's workspace: a passing check() keeps the implementation as a readable
module, ``transformer_course.mine`` hands it to later chapters (checked again, and saying
whose code it is), and nothing falls back or mixes in silence.

Here the "notebook" is a module written into a temporary folder and imported, so its
definitions have source lines as a notebook cell's do; ``test_student_play.py`` runs the
real notebooks in the student edition.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from transformer_course import attention, mine, multi_head, workspace
from transformer_course.checks import check

# Chapter 2's exercises written as a student might: a helper, a constant, an alias.
STUDENT = '''
import math

import torch
from torch import nn
from transformer_course.mine import scaled_dot_product_attention as attend

HEAD_AXIS = 1
CALLS = []


def split_heads(x, n_heads):
    b, length, d = x.shape
    return x.view(b, length, n_heads, d // n_heads).transpose(1, HEAD_AXIS + 1)


def merge_heads(x):
    b, h, length, dh = x.shape
    return x.transpose(1, 2).reshape(b, length, h * dh)


def _project(layer, x, n_heads):
    return split_heads(layer(x), n_heads)


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, n_heads, dropout=0.0, bias=True):
        super().__init__()
        self.n_heads = n_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.attn_weights = None

    def forward(self, query, key, value, mask=None):
        pairs = ((self.w_q, query), (self.w_k, key), (self.w_v, value))
        q, k, v = (_project(w, x, self.n_heads) for w, x in pairs)
        if mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(HEAD_AXIS)
        out, weights = attend(q, k, v, mask)
        self.attn_weights = weights.detach()
        return self.w_o(merge_heads(out))
'''


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """A fresh workspace, and a fresh record of what ``mine`` handed out."""
    monkeypatch.setenv(workspace.WORKSPACE_ENV, str(tmp_path / "mine"))
    monkeypatch.setattr(mine, "_TAKEN", {})
    monkeypatch.setattr(workspace, "HANDED_OUT", {})
    return tmp_path / "mine"


def notebook(tmp_path: Path, source: str, name: str = "student_notebook") -> types.ModuleType:
    """Import ``source`` as a module with real source lines (like a notebook cell)."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_passing_check_keeps_a_readable_module_with_what_it_uses(folder, tmp_path, capsys):
    student = notebook(tmp_path, STUDENT)
    result = check(student.MultiHeadAttention)
    assert result.passed
    kept = folder / "MultiHeadAttention.py"
    assert f"Kept in {kept}" in result.note
    text = kept.read_text()
    assert text.startswith("# MultiHeadAttention: passed check() of chapter 02_multi_head_attention on ")
    # its helpers (and theirs), its constant and its imports, not what it does not use
    for line in ("def _project(layer, x, n_heads):", "def split_heads(x, n_heads):", "def merge_heads(x):",
                 "HEAD_AXIS = 1", "import torch.nn as nn",
                 "from transformer_course.mine import scaled_dot_product_attention as attend"):
        assert line in text, line
    assert "CALLS" not in text and "import math" not in text
    assert "the course's reference (chapter 1 not passed yet here)" in capsys.readouterr().out


def test_later_chapter_gets_the_kept_version_and_says_so(folder, tmp_path, capsys):
    assert check(notebook(tmp_path, STUDENT).MultiHeadAttention).passed
    monkey_fresh_kernel()
    layer_class = mine.MultiHeadAttention
    out = capsys.readouterr().out
    passed_on = workspace.header(folder / "MultiHeadAttention.py")[1]
    assert f"MultiHeadAttention: yours (chapter 2, passed {passed_on};" in out
    assert layer_class is not multi_head.MultiHeadAttention and mine.is_yours(layer_class(8, 2))
    assert layer_class.__module__ == "transformer_course.mine.MultiHeadAttention"
    assert mine.MultiHeadAttention is layer_class  # resolved once per kernel
    assert "MultiHeadAttention: yours" in mine.whose("MultiHeadAttention")
    # the kept layer computes what the reference computes, through the student's code
    torch.manual_seed(0)
    ours, theirs = layer_class(8, 2), multi_head.MultiHeadAttention(8, 2)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(ours(x, x, x), theirs(x, x, x))


def monkey_fresh_kernel() -> None:
    """What a new kernel starts with: nothing taken from ``mine`` yet."""
    mine._TAKEN.clear()
    workspace.HANDED_OUT.clear()


def test_failing_check_keeps_nothing_and_leaves_the_last_passing_version(folder, tmp_path):
    student = notebook(tmp_path, STUDENT)
    assert check(student.MultiHeadAttention).passed
    before = (folder / "MultiHeadAttention.py").read_text()
    wrong = notebook(tmp_path, STUDENT.replace("mask.unsqueeze(HEAD_AXIS)", "mask"), "student_wrong")
    result = check(wrong.MultiHeadAttention)
    assert not result.passed and "Kept" not in result.note
    assert (folder / "MultiHeadAttention.py").read_text() == before


def test_kept_version_that_no_longer_passes_stops_with_what_to_do(folder, tmp_path):
    assert check(notebook(tmp_path, STUDENT).MultiHeadAttention).passed
    kept = folder / "MultiHeadAttention.py"
    kept.write_text(kept.read_text().replace("mask.unsqueeze(HEAD_AXIS)", "mask"))  # broken by hand
    monkey_fresh_kernel()
    with pytest.raises(mine.KeptCodeFails) as failure:
        from transformer_course.mine import MultiHeadAttention  # noqa: F401
    message = str(failure.value)
    assert message.startswith(
        f"MultiHeadAttention: your kept code in {kept} no longer passes check(MultiHeadAttention)")
    assert "02_multi_head_attention.ipynb" in message and f"delete {kept}" in message
    assert "MultiHeadAttention" not in mine._TAKEN  # not handed out, and no fallback


def test_kept_file_that_does_not_import_names_the_error(folder, tmp_path):
    assert check(notebook(tmp_path, STUDENT).split_heads).passed
    (folder / "split_heads.py").write_text("def split_heads(x, n_heads)\n    return x\n")
    monkey_fresh_kernel()
    no_import = r"split_heads: your kept code in .* no longer imports \(SyntaxError"
    with pytest.raises(mine.KeptCodeFails, match=no_import):
        mine.take("split_heads")


def test_unpassed_block_is_the_reference_and_says_so(folder, capsys):
    assert mine.causal_mask is attention.causal_mask
    assert capsys.readouterr().out == "causal_mask: the course's reference (chapter 1 not passed yet here)\n"
    assert not mine.is_yours(mine.causal_mask)
    with pytest.raises(AttributeError, match="no exercise is called 'Softmax'"):
        mine.Softmax  # noqa: B018


def test_forget_goes_back_to_the_reference(folder, tmp_path):
    assert check(notebook(tmp_path, STUDENT).split_heads).passed
    assert workspace.forget("split_heads") and not workspace.forget("split_heads")
    assert mine.split_heads is multi_head.split_heads


def test_a_tensor_from_the_notebook_is_not_kept_and_the_note_says_why(folder, tmp_path):
    student = notebook(tmp_path, """
        import torch
        SHIFT = torch.zeros(())

        def softmax(x, dim=-1):
            e = (x - x.amax(dim=dim, keepdim=True) + SHIFT).exp()
            return e / e.sum(dim=dim, keepdim=True)
    """)
    result = check(student.softmax)
    assert result.passed and not (folder / "softmax.py").exists()
    assert "Not kept for later chapters: softmax uses SHIFT, a Tensor made in the notebook" in result.note


def test_workspace_off_reads_and_keeps_nothing(folder, tmp_path, monkeypatch, capsys):
    assert check(notebook(tmp_path, STUDENT).split_heads).passed
    (folder / "split_heads.py").write_text("raise RuntimeError('a kept file must not be read here')\n")
    monkeypatch.setenv(workspace.WORKSPACE_ENV, "off")
    assert not workspace.enabled()
    assert mine.split_heads is multi_head.split_heads
    assert "split_heads: the course's reference (the workspace is off here)" in capsys.readouterr().out
    result = check(notebook(tmp_path, STUDENT, "student_again").merge_heads)
    assert result.passed and "Kept" not in result.note and not (folder / "merge_heads.py").exists()


@pytest.mark.notebook
def test_grader_never_reads_a_kept_module(folder, tmp_path):
    """A submission that imports earlier blocks from ``transformer_course.mine`` is graded
    with the course's references: a kept file of the student's (here one that raises on
    import, in the folder the grader's environment names) is never read."""
    import nbformat

    from autograder.grader import Grader, Limits
    from transformer_course import release

    folder.mkdir(parents=True)
    for name in ("scaled_dot_product_attention", "softmax", "causal_mask", "padding_mask"):
        (folder / f"{name}.py").write_text("raise RuntimeError('the grader read a kept file')\n")
    root = Path(__file__).resolve().parents[1]
    chapter = "02_multi_head_attention"
    submission = nbformat.read(root / "notebooks" / f"{chapter}.ipynb", as_version=4)
    solution = release.synced_solution(nbformat.read(root / "solutions" / f"{chapter}.ipynb", as_version=4))
    answers = {c.metadata["reference"]: c.source for c in solution.cells if c.metadata.get("reference")}
    for cell in submission.cells:
        if cell.metadata.get("reference"):
            cell.source = answers[cell.metadata["reference"]]
    path = tmp_path / "submission" / f"{chapter}.ipynb"
    path.parent.mkdir()
    nbformat.write(submission, path)
    with Grader(Limits(timeout_floor=10.0, load_timeout=10.0)) as grader:
        result = grader.grade(path)
    assert result["score"] == result["max_score"] > 0, result


def test_a_decorated_function_is_kept_from_its_own_source(folder, tmp_path):
    """A function under a decorator (``@torch.no_grad()``, as chapter 5's greedy_decode
    is written) is kept with its decorator, from its own lines and module, not the
    decorator's wrapper."""
    student = notebook(tmp_path, '''
        import torch

        DIAGONAL = 0


        @torch.no_grad()
        def causal_mask(seq_len):
            return torch.ones(seq_len, seq_len).tril(DIAGONAL).bool()
    ''')
    assert check(student.causal_mask).passed
    text = (folder / "causal_mask.py").read_text()
    assert "@torch.no_grad()\ndef causal_mask(seq_len):" in text and "DIAGONAL = 0" in text


def test_a_shells_wrapper_of_a_builtin_is_the_builtin_in_the_kept_file(folder, tmp_path):
    """IPython puts its own ``open`` (``functools.wraps`` of the builtin, to warn about
    stdin) in every notebook's namespace; a function that opens a file is kept, and its
    kept file uses the builtin."""
    student = notebook(tmp_path, '''
        import functools
        import io

        import torch


        @functools.wraps(io.open)
        def open(file, *args, **kwargs):  # what IPython's shell does
            return io.open(file, *args, **kwargs)


        def save_checkpoint(path, model, optimizer, step, generator):
            with open(path, "wb") as f:
                torch.save({"step": step, "rng": generator.get_state(), "model": model.state_dict(),
                            "optimizer": optimizer.state_dict()}, f)
    ''')
    result = check(student.save_checkpoint)
    assert result.passed, result
    text = (folder / "save_checkpoint.py").read_text()
    assert 'with open(path, "wb") as f:' in text and "def open" not in text and "import io" not in text
