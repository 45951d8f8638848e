"""Print, per exercise, how far the checks are from failing a correct answer or passing
a wrong one.

Columns: the number of alternative correct implementations (``tests/alternatives``);
the largest error-to-tolerance ratio one of them reaches on the visible cases and the
hidden cases of seeds 1 to 5 (it passes below 1); the smallest ratio a catalogued
mistake reaches on a case where it computes something else (seeds 0 to 2; ``inf`` where
only exact outputs differ). For the samplers, instead of ratios: the union bound on the
probability that a correct sampler fails a grading run, and the largest bound on the
probability that a catalogued mistake passes one.

Usage: ``python scripts/check_margins.py [exercise ...]``
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from alternatives.margins import SAMPLED, margins, sampling_error_probabilities

from transformer_course.checks import exercises


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    chosen = [e for e in exercises() if not names or e.name in names]
    print(f"{'chapter':<24}{'exercise':<32}{'alts':>5}  correct max ratio / mistake min ratio")
    for exercise in tqdm(chosen, desc="exercises"):
        row = margins(exercise)
        if exercise.name in SAMPLED:
            false_fail, miss = sampling_error_probabilities(exercise)
            worst = max(miss, key=miss.get)
            detail = f"false fail <= {false_fail:.2e}; miss <= {miss[worst]:.2e} ({worst})"
        else:
            detail = f"{row['worst_correct']:.3g} / {row['closest_mistake']:.3g}"
        tqdm.write(f"{exercise.chapter:<24}{exercise.name:<32}{row['alternatives']:>5}  {detail}")


if __name__ == "__main__":
    main(sys.argv[1:])
