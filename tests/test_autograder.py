"""The autograder on real submissions: the solution notebooks score full marks, the
student notebooks zero, every catalogued mistake loses points on its own exercise only;
the command line and batch grading work end to end (the Gradescope zip: test_gradescope.py)."""

import ast
import csv
import functools
import inspect
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from autograder.batch import grade_class
from autograder.grader import Grader, Limits
from autograder.plan import plan_chapter
from autograder.reader import kept_names, read_submission
from autograder.sandbox import functions_of
from autograder.wire import load_tensors, save_tensors
from transformer_course.checks import exercises
from transformer_course.checks.registry import chapters, get
from transformer_course.release import strip_markers
from transformer_course.tensor_tree import flatten, unflatten

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
STUDENT = sorted((ROOT / "notebooks").glob("*.ipynb"))
GRADED = [p for p in SOLUTIONS if p.stem in chapters()]
MUTANTS = [(e, i) for e in exercises() for i in range(len(e.mistakes))]


@pytest.fixture(scope="module")
def grader():
    with Grader(Limits(timeout_floor=10.0, load_timeout=10.0)) as g:
        yield g


@pytest.fixture(scope="module")
def unsandboxed_grader():
    """Explicitly without the sandbox: the catalogued mistakes' code lives in the check
    modules, which the sandbox's judge-free view leaves out, so only here can a
    submission hand a mistake's code over as its own. This tests judging, not confinement
    (tests/test_attack_suite.py tests that)."""
    with Grader(Limits(timeout_floor=10.0, load_timeout=10.0), unsafe_no_sandbox=True) as g:
        yield g


def _by_exercise(result: dict) -> dict[str, dict]:
    return {t["name"].split(": ")[0]: t for t in result["tests"]}


def _check_schema(result: dict) -> None:
    assert {"score", "max_score", "execution_time", "tests"} <= set(result)
    for test in result["tests"]:
        assert {"name", "score", "max_score", "status", "output"} <= set(test)
        assert test["status"] in ("passed", "failed")
        assert ": " in test["name"]
    extra = result["extra_data"]
    assert len(extra["sha256"]) == 64 and extra["grader_version"] and "seed" in extra
    assert extra["time_taken"] >= 0


# --------------------------------------------------------------------------- reading


def _bound(program) -> dict[str, str]:
    """``{name: label of the last cell whose kept statements bind it}``: what the grader
    runs of a submission."""
    found = {}
    for cell in program.cells:
        body = ast.parse(cell.source).body if cell.keep else []
        for index in cell.keep:
            found |= dict.fromkeys(kept_names(body[index]), cell.label)
    return found


def test_reader_keeps_definitions_and_skips_the_rest(tmp_path):
    cells = [
        "import torch\nSIZE = 4\nmodel = train(SIZE)\nfor i in range(3):\n    print(i)\n",
        "%matplotlib inline\ndef f(x):\n    return x\n",
        "def g(:\n",
        "def f(x):\n    return 2 * x\nY = model.weight\nclass C:\n    pass\n",
    ]
    nb = {"cells": [{"cell_type": "markdown", "source": "# title", "metadata": {}}]
          + [{"cell_type": "code", "source": c, "metadata": {}, "outputs": []} for c in cells],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    program = read_submission(path)
    assert _bound(program) == {"torch": "cell 2", "SIZE": "cell 2", "f": "cell 5", "C": "cell 5"}
    assert program.cells[2].error and "line 1" in program.cells[2].error
    assert [c.label for c in program.broken_cells_mentioning("g")] == ["cell 4"]


def test_reader_splits_scripts_at_cell_markers(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("def a():\n    pass\n# %%\ndef b(:\n# %%\ndef c():\n    pass\n")
    program = read_submission(path)
    assert _bound(program) == {"a": "section at line 1", "c": "section at line 5"}
    body = ast.parse(program.cells[2].source).body
    assert body[0].lineno == 6  # line numbers are those of the file


def test_functions_of_a_reference_are_the_code_its_module_defines():
    """What the grader disables and traces: methods, static and class methods, property
    accessors; not a function the class borrows from another module, nor a builtin."""

    class Model:
        def forward(self):
            pass

        @staticmethod
        def make():
            pass

        @classmethod
        def build(cls):
            pass

        @property
        def size(self):
            return 1

        borrowed = inspect.getdoc

    assert sorted((attr, f.__name__) for attr, f in functions_of(Model)) == [
        ("build", "build"), ("forward", "forward"), ("make", "make"), ("size", "size")]
    assert functions_of(_by_exercise) == [("", _by_exercise)] and functions_of(torch.softmax) == []


def test_case_arguments_cross_to_the_worker_as_json_and_safetensors(tmp_path):
    """The job holds a JSON skeleton; the tensors go to one safetensors file, under keys
    that name their exercise and case, and come back equal, with their dtypes."""
    args = {"x": torch.arange(6.0).view(2, 3).t(), "mask": torch.tensor([True, False]),
            "state": {"w": torch.ones(2, dtype=torch.float64)}, "dim": -1, "sizes": [2, None]}
    tensors: dict[str, torch.Tensor] = {}
    skeleton = json.loads(json.dumps(flatten(args, tensors, "e3/c1/")))
    assert sorted(tensors) == ["e3/c1/0", "e3/c1/1", "e3/c1/2"]
    save_tensors(tensors, tmp_path / "inputs.safetensors")
    back = unflatten(skeleton, load_tensors(tmp_path / "inputs.safetensors", 1 << 20))
    assert back["dim"] == -1 and back["sizes"] == [2, None]
    for got, want in [(back["x"], args["x"]), (back["mask"], args["mask"]),
                      (back["state"]["w"], args["state"]["w"])]:
        assert got.dtype == want.dtype and torch.equal(got, want)
    with pytest.raises(TypeError, match="cannot store a module"):
        flatten({"m": torch}, {})
    with pytest.raises(ValueError, match="unknown tag 'pickle'"):
        unflatten({"pickle": "..."}, {})


# --------------------------------------------------------------------------- whole chapters


@pytest.mark.parametrize("notebook", GRADED, ids=lambda p: p.stem)
def test_solution_notebook_scores_full_marks(grader, notebook):
    result = grader.grade(notebook)
    _check_schema(result)
    failed = [t["output"] for t in result["tests"] if t["status"] != "passed"]
    assert not failed, failed
    assert result["score"] == result["max_score"] == sum(e.points for e in exercises(notebook.stem))
    assert not result["extra_data"]["flags"]


@pytest.mark.parametrize("notebook", [p for p in STUDENT if p.stem in chapters()], ids=lambda p: p.stem)
def test_student_notebook_scores_zero(grader, notebook):
    result = grader.grade(notebook)
    _check_schema(result)
    assert result["score"] == 0
    for test in result["tests"]:
        assert "not implemented yet" in test["output"], test["output"]


def test_hidden_cases_defeat_hard_coded_outputs(grader, tmp_path):
    """A submission that returns the visible cases' outputs by lookup loses the hidden ones."""
    plan = next(p for p in plan_chapter("01_attention") if p.exercise.name == "softmax")
    visible = [(c.args["x"].tolist(), w["output"].tolist())
               for c, s, w in zip(plan.cases, plan.seeds, plan.expected, strict=True)
               if s == 0 and c.args["x"].isfinite().all()]
    source = (f"import torch\nTABLE = {visible!r}\n\ndef softmax(x, dim=-1):\n"
              "    for inp, out in TABLE:\n        if inp == x.tolist():\n"
              "            return torch.tensor(out, dtype=x.dtype)\n    return x\n")
    path = tmp_path / "01_attention.py"
    path.write_text(source)
    test = _by_exercise(grader.grade(path))["softmax"]
    assert 0 < test["score"] < test["max_score"]
    assert "[FAIL] hidden:" in test["output"] and "[ok]   2-D, last dim" in test["output"]


def test_forbidden_builtin_costs_the_exercise(grader, tmp_path):
    source = _chapter_source("01_attention") + (
        "\n\ndef softmax(x, dim=-1):\n    return torch.softmax(x, dim=dim)\n")
    path = tmp_path / "01_attention.py"
    path.write_text(source)
    tests = _by_exercise(grader.grade(path))
    assert tests["softmax"]["score"] == 0
    assert "uses torch.softmax" in tests["softmax"]["output"]
    assert tests["causal_mask"]["score"] == tests["causal_mask"]["max_score"]



def test_a_forbidden_helper_of_the_course_is_found_where_the_code_names_it():
    """train may not call train_language_model: naming it in the code reachable from
    train counts; importing it, as the notebook's import cell does, does not."""
    from autograder import forbidden

    rules = get("train").forbidden
    imports = "from transformer_course.training import speed_switch, train_language_model\n"
    body = "def train(model, *args, **kwargs):\n    with speed_switch(model, False):\n        return {}\n"
    calls = body.replace("return {}", "return train_language_model(model, *args, **kwargs)")
    label = next(iter(rules))
    assert forbidden.find(ast.parse(imports + calls).body, "train", rules) == [
        f"{label} (your code names train_language_model)"]
    assert forbidden.find(ast.parse(imports + body).body, "train", rules) == []


# --------------------------------------------------------------------------- mutants


def _module_source(module: types.ModuleType) -> str:
    return strip_markers(inspect.getsource(module))


def _chapter_source(chapter: str) -> str:
    """The reference modules of a chapter, as one submission (what a perfect student
    writes; the grader runs it as the student's own code)."""
    modules = dict.fromkeys(sys.modules[e.reference.__module__] for e in exercises(chapter))
    # A module that imports a sibling's exercise (chapter 7's loop uses its loss) would
    # rebind the submission's own definition to the reference: the student defines it.
    own = "|".join(re.escape(m.__name__) for m in modules)
    return "\n\n".join(re.sub(rf"^from (?:{own}) import .*$", "", _module_source(m), flags=re.M)
                         for m in modules)


def _calls_chapter_reference(func, chapter: str, seen=None) -> bool:
    """Whether a mutant reaches, through its code and the helpers it names, an object
    that is the reference of an exercise of ``chapter`` (the grader disables those)."""
    seen = seen if seen is not None else set()
    references = {id(e.reference) for e in exercises(chapter)}
    for value in _referenced(func):
        if id(value) in references:
            return True
        if (inspect.isfunction(value) or inspect.isclass(value)) and id(value) not in seen:
            seen.add(id(value))
            if value.__module__.startswith("transformer_course.checks") and \
                    _calls_chapter_reference(value, chapter, seen):
                return True
    return False


def _referenced(obj):
    if isinstance(obj, functools.partial):  # a mistake made from flags (checks.kit.mutant)
        yield obj.func
        yield from (*obj.args, *obj.keywords.values())
        return
    if inspect.isclass(obj):
        yield from obj.__mro__[1:]
    for _, func in functions_of(obj):
        codes = [func.__code__]
        while codes:
            code = codes.pop()
            codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
            for name in code.co_names:
                value = func.__globals__.get(name)
                if isinstance(value, types.ModuleType):
                    yield from (getattr(value, n, None) for n in code.co_names)
                elif value is not None:
                    yield value
        for cell in func.__closure__ or ():
            try:
                yield cell.cell_contents
            except ValueError:
                pass


@pytest.mark.parametrize("exercise, index", MUTANTS,
                         ids=[f"{e.name}-{e.mistakes[i].name}" for e, i in MUTANTS])
def test_mistake_loses_points_on_its_own_exercise_only(unsandboxed_grader, tmp_path, exercise, index):
    grader = unsandboxed_grader
    mistake = exercise.mistakes[index]
    swap = (f"\n\nfrom transformer_course.checks import registry as _registry\n"
            f"{exercise.name} = _registry._EXERCISES[{exercise.name!r}].mistakes[{index}].impl\n")
    path = tmp_path / f"{exercise.chapter}.py"
    path.write_text(_chapter_source(exercise.chapter) + swap)
    tests = _by_exercise(grader.grade(path))
    own = tests.pop(exercise.name)
    assert own["score"] < own["max_score"], own["output"]
    if _calls_chapter_reference(mistake.impl, exercise.chapter):
        assert "reference solution" in own["output"]
    else:
        assert mistake.hint in own["output"], own["output"]
    dependents = _dependents(exercise)
    for name, test in tests.items():
        if name not in dependents:  # an exercise that uses the mutated one may fail with it
            assert test["score"] == test["max_score"], f"{name}: {test['output']}"


def _dependents(exercise) -> set[str]:
    """Exercises of the chapter whose reference uses ``exercise``, directly or not."""
    sources = {e.name: inspect.getsource(e.reference) for e in exercises(exercise.chapter)}
    found, frontier = set(), {exercise.name}
    while frontier:
        frontier = {name for name, source in sources.items() if name not in found
                    and any(re.search(rf"\b{used}\b", source) for used in frontier)} - {exercise.name}
        found |= frontier
    return found


# --------------------------------------------------------------------------- entry points


def _python(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, **kwargs)


def test_command_line_grade_writes_json_and_prints_a_summary(tmp_path):
    out = tmp_path / "result.json"
    submission = tmp_path / "my_attempt.py"
    submission.write_text(_chapter_source("01_attention").replace("keepdim=True", "keepdim=False", 1))
    done = _python("grade", str(submission), "--chapter", "01_attention", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    _check_schema(result)
    assert 0 < result["score"] < result["max_score"]
    assert "[FAIL] softmax" in done.stdout and "[PASS] causal_mask" in done.stdout
    missing = _python("grade", str(submission))  # stem is not a chapter id
    assert missing.returncode == 2 and "--chapter" in missing.stderr


def test_batch_grades_a_class(tmp_path):
    root, out = tmp_path / "submissions", tmp_path / "out"
    good = _chapter_source("01_attention")
    students = {
        "alice": good,
        "bob": good.replace("return exp / exp.sum(dim=dim, keepdim=True)", "return exp", 1),
        "<script>eve": "def softmax(x, dim=-1):\n    raise ValueError('<img src=x onerror=alert(1)>')\n",
        "mallory": "def softmax(x, dim=-1):\n    while True:\n        pass\n",
    }
    for student, source in students.items():
        (root / student).mkdir(parents=True)
        (root / student / "01_attention.py").write_text(source)
    (root / "alice" / "notes.txt").write_text("ignored")
    limits = Limits(timeout_floor=3.0, load_timeout=5.0)
    log: list[str] = []
    grades = grade_class(root, out, jobs=2, limits=limits, log=log.append)
    assert grades["alice"]["01_attention"]["score"] == 6
    assert 0 < grades["bob"]["01_attention"]["score"] < 6
    assert grades["mallory"]["01_attention"]["score"] == 0
    with open(out / "grades.csv") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(students) and float(rows["alice"]["total"]) == 6
    assert json.loads((out / "bob" / "01_attention.json").read_text())["tests"]
    html = (out / "<script>eve" / "feedback.html").read_text()
    assert "<img" not in html and "&lt;img" in html and "<script>eve" not in html
    assert "softmax" in (out / "mallory" / "feedback.md").read_text()
    summary = (out / "summary.md").read_text()
    assert "01_attention" in summary and "Most common mistakes" in summary
    assert any("ignored alice/notes.txt" in line for line in log)

    again: list[str] = []
    grade_class(root, out, jobs=1, limits=limits, log=again.append)
    assert "0 to grade" in again[-1] or any("0 to grade" in line for line in again)
