"""Correct answers written another way get full marks; catalogued mistakes never do.

Every exercise is run with the alternative implementations of ``tests/alternatives``
(other library calls, formulas, loops, masking values, samplers) on the visible cases
(seed 0) and the hidden cases of seeds 1 to 5, judged exactly as ``check`` and the
autograder judge them. Then every catalogued mistake must fail every case on which it
computes something else, and for samplers the false-fail and miss probabilities of the
statistical test must be below 1e-6.
"""

import pytest
import torch
from alternatives import load

from transformer_course.checks import core, exercises, stats
from transformer_course.checks.registry import get

SEEDS = range(6)  # 0: the visible cases; 1..5: hidden ones
ALTERNATIVES = load()
VARIANTS = [(name, impl) for chapter in ALTERNATIVES.values()
            for name, impls in chapter.items() for impl in impls]
SAMPLED = {"sample_next_token": lambda d: d["expected/tokens"],
           "generate": lambda d: d["expected/tokens"][:, d["args/idx"].size(1)]}


def test_every_exercise_has_two_alternatives():
    for exercise in exercises():
        variants = ALTERNATIVES.get(exercise.chapter, {}).get(exercise.name, [])
        assert len(variants) >= 2, f"{exercise.name} has {len(variants)} alternative(s)"


@pytest.mark.parametrize("name, impl", VARIANTS, ids=lambda x: getattr(x, "__name__", x))
def test_alternative_gets_full_marks(name, impl):
    exercise = get(name)
    for seed in SEEDS:
        cases, data = core.reference_run(exercise, seed)
        outcomes = [core.execute(exercise, impl, case) for case in cases]
        result = core.judge(exercise, cases, outcomes, data, lambda s=seed: core.mistake_run(exercise, s))
        assert result.passed and result.score == exercise.points, f"seed {seed}: {result}"


def _differs(want: dict, theirs: dict | None) -> bool:
    """Whether a mistake computes something else than the reference on a case: another
    shape, dtype or exact value, another distribution, or float64 values apart by more
    than 1e-3 of the output's scale."""
    if theirs is None:
        return True
    for key, value in want.items():
        if key.startswith("band/") or key.startswith("args/"):
            continue
        other = theirs.get(key)
        if other is None or other.shape != value.shape or other.dtype != value.dtype:
            return True
        if key.startswith("truth/") or key == "probs":
            scale = 1.0 + float(value.nan_to_num(0.0, 0.0, 0.0).abs().max()) if value.numel() else 1.0
            gap = (other - value).nan_to_num(1.0, 1.0, 1.0).abs()
            if gap.numel() and float(gap.max()) > 1e-3 * scale:
                return True
        elif key.startswith("expected/") and not value.dtype.is_floating_point:
            if not torch.equal(value, other) and "probs" not in want:
                return True
    return False


MISTAKES = [(ex, m) for ex in exercises() for m in ex.mistakes]


@pytest.mark.parametrize("exercise, mistake", MISTAKES, ids=lambda x: getattr(x, "name", ""))
def test_mistake_fails_wherever_it_differs(exercise, mistake):
    for seed in range(3):
        cases, data = core.reference_run(exercise, seed)
        for case, want in zip(cases, data, strict=True):
            theirs, _ = core.case_data(exercise, mistake.impl, case)
            if not _differs(want, theirs):
                continue
            outcome = core.execute(exercise, mistake.impl, case)
            if outcome.outputs is None:
                continue  # it raises: the case fails
            if exercise.name in SAMPLED and "probs" in theirs:
                continue  # random: bounded by test_sampling_error_probabilities
            problem = core.compare_outputs(exercise, want, outcome.outputs)
            assert problem is not None, f"seed {seed}, {case.name!r}: the mistake passes"


def _distribution(exercise, data: dict) -> torch.Tensor:
    """What the draws of a sampling case follow: the recorded probabilities, or the
    exact tokens of a deterministic case as one-hot rows."""
    if "probs" in data:
        return data["probs"]
    tokens = SAMPLED[exercise.name](data)
    vocab = data["probs"].size(-1) if "probs" in data else int(tokens.max()) + 1
    return torch.nn.functional.one_hot(tokens, vocab).to(torch.float64)


def sampling_error_probabilities(exercise, seeds=SEEDS) -> tuple[float, dict[str, float]]:
    """``(false fail, {mistake: miss})``: the largest union bound, over seeds, on the
    probability that a correct sampler fails one run of the cases (visible and hidden of
    a seed), and per mistake an upper bound on the probability that it passes them all."""
    false_fail, miss = 0.0, {m.name: 1.0 for m in exercise.mistakes}
    for seed in seeds:
        cases, data = core.reference_run(exercise, seed)
        visible = core.reference_run(exercise, 0)[1]
        total = sum(stats.false_fail_probability(d["probs"]) for d in data + visible if "probs" in d)
        false_fail = max(false_fail, total)
        for mistake in exercise.mistakes:
            for case, want in zip(cases, data, strict=True):
                theirs, _ = core.case_data(exercise, mistake.impl, case)
                if theirs is None:
                    miss[mistake.name] = 0.0  # raises on this case
                    continue
                drawn = SAMPLED[exercise.name](theirs) if "probs" not in theirs else None
                mine = SAMPLED[exercise.name](want)
                if drawn is not None and "probs" not in want:
                    if drawn.shape != mine.shape or not torch.equal(drawn, mine):
                        miss[mistake.name] = 0.0  # deterministic and different
                    continue
                if theirs["expected/tokens"].shape != want["expected/tokens"].shape:
                    miss[mistake.name] = 0.0
                    continue
                expected = _distribution(exercise, want)
                wrong = _distribution(exercise, theirs)
                if wrong.size(-1) < expected.size(-1):
                    wrong = torch.nn.functional.pad(wrong, (0, expected.size(-1) - wrong.size(-1)))
                if expected.size(-1) < wrong.size(-1):
                    miss[mistake.name] = min(miss[mistake.name], float(
                        (1 - wrong[:, expected.size(-1):].sum(-1)).prod()))
                    continue
                miss[mistake.name] = min(miss[mistake.name], stats.pass_probability(expected, wrong))
    return false_fail, miss


@pytest.mark.parametrize("name", list(SAMPLED))
def test_sampling_error_probabilities(name):
    false_fail, miss = sampling_error_probabilities(get(name), seeds=range(3))
    assert false_fail < 1e-6
    for mistake, probability in miss.items():
        assert probability < 1e-6, f"{mistake} passes with probability up to {probability:.3g}"
