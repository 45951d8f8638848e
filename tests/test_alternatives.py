"""Correct answers written another way get full marks; catalogued mistakes never do.

Every exercise is run with the alternative implementations of ``tests/alternatives``
(other library calls, formulas, loops, masking values, samplers) on the visible cases
(seed 0) and the hidden cases of seeds 1 to 5, judged exactly as ``check`` and the
autograder judge them. Then every catalogued mistake must fail every case on which it
computes something else, and for samplers the false-fail and miss probabilities of the
statistical test must be below 1e-6.
"""

import importlib
import re
from pathlib import Path

import pytest
import torch
from alternatives import load
from alternatives.margins import SAMPLED, differs, distribution, sampling_error_probabilities

from autograder.grader import Grader, Limits
from transformer_course.checks import exercises
from transformer_course.checks.judging import compare_outputs, judge
from transformer_course.checks.prepare import case_data, mistake_run, reference_run
from transformer_course.checks.registry import get
from transformer_course.checks.running import execute

SEEDS = range(6)  # 0: the visible cases; 1..5: hidden ones
ALTERNATIVES = load()
VARIANTS = [(name, impl) for chapter in ALTERNATIVES.values()
            for name, impls in chapter.items() for impl in impls]


def test_every_exercise_has_two_alternatives():
    for exercise in exercises():
        variants = ALTERNATIVES.get(exercise.chapter, {}).get(exercise.name, [])
        assert len(variants) >= 2, f"{exercise.name} has {len(variants)} alternative(s)"


@pytest.mark.parametrize("name, impl", VARIANTS, ids=lambda x: getattr(x, "__name__", x))
def test_alternative_gets_full_marks(name, impl):
    exercise = get(name)
    for seed in SEEDS:
        cases, data = reference_run(exercise, seed)
        outcomes = [execute(exercise, impl, case) for case in cases]
        result = judge(exercise, cases, outcomes, data, lambda s=seed: mistake_run(exercise, s))
        assert result.passed and result.score == exercise.points, f"seed {seed}: {result}"


MISTAKES = [(ex, m) for ex in exercises() for m in ex.mistakes]


@pytest.mark.parametrize("exercise, mistake", MISTAKES, ids=lambda x: getattr(x, "name", ""))
def test_mistake_fails_wherever_it_differs(exercise, mistake):
    for seed in range(3):
        cases, data = reference_run(exercise, seed)
        for case, want in zip(cases, data, strict=True):
            theirs, _ = case_data(exercise, mistake.impl, case)
            same_shape = theirs is not None and all(
                theirs[k].shape == v.shape for k, v in want.items() if k.startswith("expected/"))
            if exercise.name in SAMPLED and same_shape and "probs" in theirs | want:
                if "probs" in theirs:
                    continue  # random: bounded by test_sampling_error_probabilities
                vocab = want["probs"].size(-1)
                if torch.equal(distribution(exercise, want, vocab), distribution(exercise, theirs, vocab)):
                    continue  # deterministic where the reference is too (top_k=1)
            elif not differs(want, theirs):
                continue
            outcome = execute(exercise, mistake.impl, case)
            if outcome.outputs is None:
                continue  # it raises: the case fails
            problem = compare_outputs(exercise, want, outcome.outputs)
            assert problem is not None, f"seed {seed}, {case.name!r}: the mistake passes"


@pytest.mark.parametrize("name", list(SAMPLED))
def test_sampling_error_probabilities(name):
    false_fail, miss = sampling_error_probabilities(get(name), seeds=range(3))
    assert false_fail < 1e-6
    for mistake, probability in miss.items():
        assert probability < 1e-6, f"{mistake} passes with probability up to {probability:.3g}"


@pytest.mark.parametrize("chapter, pick", [("04_encoder", 0), ("06_llm", 0), ("06_llm", 1)])
def test_alternatives_score_full_marks_in_the_grader(chapter, pick, tmp_path):
    """End to end through the grader's child process: a submission made of one variant
    per exercise (renamed to the exercise's name), hidden cases of seed 3."""
    module = importlib.import_module(f"alternatives.ch{chapter}")
    source = Path(module.__file__).read_text()
    for name, variants in module.ALTERNATIVES.items():
        source = re.sub(rf"\b{variants[pick].__name__}\b", name, source)
    path = tmp_path / f"{chapter}.py"
    path.write_text(source)
    with Grader(Limits(timeout_floor=60.0, load_timeout=30.0), seed=3) as grader:
        result = grader.grade(path)
    failed = [t["output"] for t in result["tests"] if t["status"] != "passed"]
    assert not failed, failed
    assert result["score"] == result["max_score"]
