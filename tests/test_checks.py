"""The check machinery, run over every registered exercise of every chapter.

A chapter that registers its exercises is covered here without a new test: the
reference passes, every catalogued mistake fails with its own hint, a stub reads
"not implemented yet", and a forbidden built-in is reported as such.
"""

import inspect
import types

import pytest
import torch

from transformer_course.checks import CheckResult, check, exercises
from transformer_course.checks.judging import compare_tensors
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
        if isinstance(func, types.FunctionType):  # a helper of the course: entering it is a use
            required = [p for p in inspect.signature(func).parameters.values()
                        if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
            try:
                func(*[x] * len(required))
            except Exception:  # called with nonsense, it fails once inside
                pass
            return reference(*args, **kwargs)
        for call in ((x, x, x), (x, -1), (x, (2,)), (x, x, x, x), (x, x), ([x],)):  # whichever it takes
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


# --------------------------------------------------------------------------- global state


def _meddling_softmax(x, dim=-1):
    """A correct softmax that changes every piece of global state a check must restore."""
    torch.rand(3)  # advances the global RNG
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(True)
    torch.set_num_threads(1)
    return torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))


@pytest.mark.parametrize("impl", [None, _meddling_softmax], ids=["reference", "meddling"])
def test_check_keeps_the_global_rng_state(impl):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    for name in ("softmax", "GPT", "sample_next_token"):
        exercise = [e for e in ALL if e.name == name][0]
        check(impl if impl is not None and name == "softmax" else exercise.reference, name=name)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("impl", [None, _meddling_softmax], ids=["reference", "meddling"])
def test_check_keeps_the_default_dtype(impl):
    check(impl or ALL[0].reference, name="softmax")
    assert torch.get_default_dtype() == torch.float32
    torch.set_default_dtype(torch.float64)
    try:
        result = check(impl or ALL[0].reference, name="softmax")
        assert result.passed, str(result)  # cases are built in float32 whatever the default
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("impl", [None, _meddling_softmax], ids=["reference", "meddling"])
def test_check_keeps_grad_mode(impl):
    for enabled in (True, False):
        with torch.set_grad_enabled(enabled):
            check(impl or ALL[0].reference, name="softmax")
            assert torch.is_grad_enabled() == enabled


@pytest.mark.parametrize("impl", [None, _meddling_softmax], ids=["reference", "meddling"])
def test_check_keeps_the_thread_count(impl):
    threads = torch.get_num_threads()
    target = 2 if threads == 1 else threads
    torch.set_num_threads(target)
    try:
        check(impl or ALL[0].reference, name="softmax")
        assert torch.get_num_threads() == target
    finally:
        torch.set_num_threads(threads)


def test_cases_do_not_depend_on_the_global_rng():
    from transformer_course.checks.prepare import _CACHE, prepare

    exercise = next(e for e in ALL if e.name == "GPTBlock")
    first = prepare(exercise, 7, mistakes=False)
    _CACHE.pop((exercise.name, 7))
    torch.manual_seed(99)
    second = prepare(exercise, 7, mistakes=False)
    for a, b in zip(first.data, second.data, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_judge_tolerance_follows_the_reference_error():
    """A LayerNorm written with var_mean passes, and the tiny-variance case, where the
    float32 reference itself is off the float64 truth, widens its tolerance by that
    error (the band)."""
    from transformer_course.checks.judging import tolerance
    from transformer_course.checks.prepare import reference_run

    class VarMeanLayerNorm(torch.nn.Module):
        def __init__(self, d_model, eps=1e-5):
            super().__init__()
            self.eps = eps
            self.weight = torch.nn.Parameter(torch.ones(d_model))
            self.bias = torch.nn.Parameter(torch.zeros(d_model))

        def forward(self, x):
            var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
            return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias

    VarMeanLayerNorm.__name__ = "LayerNorm"
    exercise = next(e for e in ALL if e.name == "LayerNorm")
    assert check(VarMeanLayerNorm).passed
    cases, data = reference_run(exercise, 1)
    tiny = [i for i, c in enumerate(cases) if "tiny" in c.name]
    assert tiny, [c.name for c in cases]
    for i in tiny:
        assert float(data[i]["band/output"]) > 0
        rtol, atol = tolerance(exercise, data[i], "output")
        assert atol > exercise.atol
