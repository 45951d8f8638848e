"""The check machinery, run over every registered exercise of every chapter.

A chapter that registers its exercises is covered here without a new test: the
reference passes, every catalogued mistake fails with its own hint, a stub reads
"not implemented yet", and a forbidden built-in is reported as such.
"""

import pytest
import torch

from transformer_course.checks import CheckResult, check, exercises
from transformer_course.checks.core import compare_tensors
from transformer_course.checks.rubric import rubric

ALL = exercises()
MISTAKES = [(ex, m) for ex in ALL for m in ex.mistakes]


def test_registry_matches_rubric():
    table = rubric()
    for ex in ALL:
        assert ex.name in table[ex.chapter], f"{ex.name} has no points in rubric.toml"
        assert 1 <= ex.points <= 3
    for chapter in {ex.chapter for ex in ALL}:
        registered = {ex.name for ex in ALL if ex.chapter == chapter}
        assert registered == set(table[chapter]), f"{chapter}: rubric and registry differ"


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.name)
def test_reference_passes(exercise):
    result = check(exercise.reference)
    assert result.passed, str(result)
    assert result.score == exercise.points
    assert len(result.cases) >= 3, "every exercise needs at least three visible cases"


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.name)
def test_every_exercise_has_a_catalogue(exercise):
    assert len(exercise.mistakes) >= 2
    assert len({m.name for m in exercise.mistakes}) == len(exercise.mistakes)


@pytest.mark.parametrize("exercise, mistake", MISTAKES, ids=lambda x: getattr(x, "name", ""))
def test_mistake_fails_with_its_own_hint(exercise, mistake):
    result = check(mistake.impl, name=exercise.name)
    assert not result.passed
    assert result.status == "failed"
    assert mistake in result.hints, f"expected hint {mistake.name!r}, got {[h.name for h in result.hints]}"
    assert mistake.hint in str(result)
    assert "Likely mistake" in result._repr_html_()


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.name)
def test_stub_reads_not_implemented(exercise):
    def stub(*args, **kwargs):
        raise NotImplementedError

    result = check(stub, name=exercise.name)
    assert result.status == "not implemented"
    assert "not implemented yet" in str(result)
    assert result.score == 0


@pytest.mark.parametrize("exercise", [e for e in ALL if e.forbidden], ids=lambda e: e.name)
def test_forbidden_builtin_is_reported(exercise):
    label, func = next(iter(exercise.forbidden.items()))
    reference = exercise.reference

    def sneaky(*args, **kwargs):
        x = torch.zeros(2, 2)
        for call in ((x, x, x), (x, -1), (x, (2,)), (x, x, x, x), (x, x)):  # whichever signature it takes
            try:
                func(*call)
                break
            except (TypeError, RuntimeError):
                continue
        return reference(*args, **kwargs)

    result = check(sneaky, name=exercise.name)
    assert result.status == "forbidden"
    assert label in str(result)
    assert result.score == 0


@pytest.mark.parametrize("exercise", [e for e in ALL if e.forbidden], ids=lambda e: e.name)
def test_reference_uses_no_forbidden_builtin(exercise):
    assert not check(exercise.reference).forbidden


def test_wrong_return_kind_is_explained():
    def returns_list(q, k, v, mask=None):
        return [1, 2]

    result = check(returns_list, name="scaled_dot_product_attention")
    assert not result.passed
    assert "should be a torch.Tensor" in str(result)


def test_exceptions_become_feedback():
    def broken(x, dim=-1):
        return x @ torch.zeros(1000, 1)

    result = check(broken, name="softmax")
    assert isinstance(result, CheckResult) and not result.passed
    assert "raised RuntimeError" in str(result)


def test_unknown_name_lists_exercises():
    def not_an_exercise():
        pass

    with pytest.raises(KeyError, match="softmax"):
        check(not_an_exercise)


def test_compare_tensors_messages():
    a = torch.zeros(2, 3)
    assert compare_tensors(a, a.clone(), 1e-4, 1e-5) is None
    assert "shape (3, 2)" in compare_tensors(a, torch.zeros(3, 2), 1e-4, 1e-5)
    assert "dtype torch.float64" in compare_tensors(a, a.double(), 1e-4, 1e-5)
    b = a.clone()
    b[1, 2] = 0.5
    assert "index (1, 2)" in compare_tensors(a, b, 1e-4, 1e-5)
    b[0, 0] = float("nan")
    assert "NaN at index (0, 0)" in compare_tensors(a, b, 1e-4, 1e-5)
