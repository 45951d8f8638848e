"""Measures of how far the checks are from failing a correct answer or passing a
wrong one (``scripts/check_margins.py`` prints them; ``tests/test_alternatives.py``
bounds them)."""

import math

import torch

from transformer_course.checks import stats
from transformer_course.checks.judging import error_ratio
from transformer_course.checks.prepare import case_data, reference_run
from transformer_course.checks.running import execute

from . import load

SEEDS = range(6)  # 0: the visible cases; 1..5: hidden ones
SAMPLED = {"sample_next_token": lambda d: d["expected/tokens"],
           "generate": lambda d: d["expected/tokens"][:, d["args/idx"].size(1)]}
"""For each sampling exercise: the tokens of a case that follow its ``probs``."""


def differs(want: dict, theirs: dict | None) -> bool:
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



def distribution(exercise, data: dict, vocab: int) -> torch.Tensor:
    """What the draws of a sampling case follow: the recorded probabilities, or the
    exact tokens of a deterministic case as one-hot rows over ``vocab`` tokens."""
    if "probs" in data:
        return data["probs"]
    tokens = SAMPLED[exercise.name](data)
    return torch.nn.functional.one_hot(tokens, vocab).to(torch.float64)


def _case_miss(exercise, mistake, case, want) -> float:
    """Upper bound on the probability that ``mistake`` passes one case."""
    theirs, _ = case_data(exercise, mistake.impl, case)
    if theirs is None or theirs["expected/tokens"].shape != want["expected/tokens"].shape:
        return 0.0  # it raises, or a wrong shape: it fails for sure
    if "probs" not in want and "probs" not in theirs:  # deterministic: every output exact
        outputs = [k for k in want if k.startswith("expected/")]
        return 1.0 if all(torch.equal(want[k], theirs[k]) for k in outputs) else 0.0
    vocab = (want if "probs" in want else theirs)["probs"].size(-1)
    return stats.pass_probability(distribution(exercise, want, vocab),
                                  distribution(exercise, theirs, vocab))


def sampling_error_probabilities(exercise, seeds=SEEDS) -> tuple[float, dict[str, float]]:
    """``(false fail, {mistake: miss})``, the largest over ``seeds`` of what a grading run
    with that hidden seed risks (the visible cases, seed 0, always run too): a union bound
    on the probability that a correct sampler fails a case, and per mistake an upper
    bound on the probability that it passes every case."""
    visible_cases, visible = reference_run(exercise, 0)
    per_case = {}  # (seed, index) -> {mistake: pass bound}
    false_fail, miss = 0.0, {m.name: 0.0 for m in exercise.mistakes}
    for seed in seeds:
        runs = [(0, i, c, d) for i, (c, d) in enumerate(zip(visible_cases, visible, strict=True))]
        if seed:
            cases, data = reference_run(exercise, seed)
            runs += [(seed, i, c, d) for i, (c, d) in enumerate(zip(cases, data, strict=True))]
        false_fail = max(false_fail, sum(stats.false_fail_probability(d["probs"])
                                         for *_, d in runs if "probs" in d))
        for s, i, case, want in runs:
            if (s, i) not in per_case:
                per_case[s, i] = {m.name: _case_miss(exercise, m, case, want) for m in exercise.mistakes}
        for name in miss:
            miss[name] = max(miss[name], min(per_case[s, i][name] for s, i, *_ in runs))
    return false_fail, miss




def margins(exercise, seeds=SEEDS, mistake_seeds=range(3)) -> dict:
    """One row of the table: the number of alternatives, the largest error-to-tolerance
    ratio an alternative reaches, and the smallest one a catalogued mistake reaches on
    a case where it differs (``inf`` where only exact outputs differ)."""
    variants = load().get(exercise.chapter, {}).get(exercise.name, [])
    worst = 0.0
    for seed in seeds:
        cases, data = reference_run(exercise, seed)
        for impl in variants:
            for case, want in zip(cases, data, strict=True):
                outcome = execute(exercise, impl, case)
                if outcome.outputs is None:
                    worst = math.inf
                elif exercise.name not in SAMPLED:
                    worst = max(worst, error_ratio(exercise, want, outcome.outputs))
    closest = math.inf
    if exercise.name not in SAMPLED:
        for seed in mistake_seeds:
            cases, data = reference_run(exercise, seed)
            for mistake in exercise.mistakes:
                for case, want in zip(cases, data, strict=True):
                    theirs, _ = case_data(exercise, mistake.impl, case)
                    if theirs is None or not differs(want, theirs):
                        continue
                    outputs = execute(exercise, mistake.impl, case).outputs
                    closest = min(closest, error_ratio(exercise, want, outputs))
    return {"alternatives": len(variants), "worst_correct": worst, "closest_mistake": closest}
