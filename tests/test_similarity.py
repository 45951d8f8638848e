"""The similarity report: copied pairs of a generated class are reported, independent
ones are not, and the normalisation ignores what a copier changes."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from classgen import CHAPTERS, make_class, write_class

from autograder.batch import find_submissions
from autograder.reader import read_submission
from autograder.similarity import STARTER, similarity_report, starter_code, units_of

STYLE_A = '''
import torch
import math

def helper(t):
    return t * 2

def attention_scores(q, k):
    """Scores."""
    d = q.size(-1)  # depth
    scaled = (q @ k.transpose(-2, -1)) / math.sqrt(d)
    return helper(scaled)
'''
STYLE_B = '''
import math
import torch as th
def twice(value):
    return value*2
# my scores
def attention_scores(q,k):
    depth=q.size(-1)
    out=(q@k.transpose(-2,-1))/math.sqrt(depth)
    return twice(out)
'''


def _fingerprints(tmp_path: Path, name: str, source: str) -> set[int]:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    names, _, given = starter_code("01_attention")
    units = units_of(read_submission(path), names | {"math", "torch"}, set(), given)
    return {tuple(u.tokens) for u in units}


def test_names_comments_formatting_and_order_do_not_matter(tmp_path):
    assert _fingerprints(tmp_path, "a", STYLE_A) == _fingerprints(tmp_path, "b", STYLE_B)
    other = STYLE_B.replace("/math.sqrt(depth)", "*depth**-0.5")
    assert _fingerprints(tmp_path, "a", STYLE_A) != _fingerprints(tmp_path, "c", other)


def test_the_released_notebook_holds_no_evidence(tmp_path):
    root = tmp_path / "class"
    for student in ("ann", "ben", "cyd"):
        (root / student).mkdir(parents=True)
        shutil.copy(STARTER / "01_attention.ipynb", root / student / "01_attention.ipynb")
    pairs = similarity_report(find_submissions(root)[0], tmp_path / "out")
    assert pairs == []  # three untouched notebooks are identical, yet nothing is theirs


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    made = make_class(n_students=32, n_copiers=5, seed=0)
    write_class(made, root)
    # two more students share a rare, hostile-looking helper: the page must escape it
    for name in ("<script>x", "zed"):
        (root / name).mkdir()
        (root / name / "01_attention.py").write_text(
            "def causal_mask(seq_len):\n    tag = '<img src=x onerror=alert(1)>'\n"
            "    grid = [[c <= r for c in range(seq_len)] for r in range(seq_len)]\n"
            "    return torch.tensor(grid, dtype=torch.bool) if len(tag) else None\n")
    (root / "broken").mkdir()
    (root / "broken" / "01_attention.py").write_bytes(b"def softmax(x):\n    return '\xff'\n")
    out = root.parent / f"{root.name}-out"
    pairs = similarity_report(find_submissions(root)[0], out)
    return made, root, out, pairs


def test_generated_class_is_a_real_class(generated):
    made, root, _, _ = generated
    for chapter in CHAPTERS:
        files = list(root.glob(f"*/{chapter}.*"))
        assert len(files) >= 30
        assert {f.suffix for f in files} == {".py", ".ipynb"}
    notebook = next(root.glob("*/01_attention.ipynb"))
    assert json.loads(notebook.read_text())["cells"]
    sources = {(root / s.name / "01_attention.py").read_text() for s in made.students if not s.notebook}
    assert len(sources) == sum(not s.notebook for s in made.students)  # no two files alike


def test_every_copied_pair_and_no_independent_pair_is_reported(generated):
    made, _, out, pairs = generated
    with open(out / "similarity.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["chapter", "student_a", "student_b", "similarity"]
    assert len(rows) == len(pairs)
    for chapter in CHAPTERS:
        found = {frozenset((r["student_a"], r["student_b"])) for r in rows if r["chapter"] == chapter}
        if chapter == "01_attention":
            found.remove(frozenset(("<script>x", "zed")))
        assert found == made.copied, chapter
    assert all(0 < float(r["similarity"]) <= 1 for r in rows)


def test_page_shows_matching_code_side_by_side_escaped(generated):
    made, _, out, pairs = generated
    html = (out / "similarity.html").read_text()
    assert "<img" not in html and "&lt;img src=x" in html and "<script>x" not in html
    assert "&lt;script&gt;x" in html
    assert "Not compared: broken: 01_attention.py is not UTF-8 text" in html
    a, b = sorted(next(iter(made.copied)))
    assert f"{a} &harr; {b}" in html
    assert html.count("<mark>") > 10 and html.count("<table>") == len(pairs)
