"""Benchmark the grader's sandbox (not a test): seconds per submission with and without
it, the first submission's cost (worker start and the chapter's judge-free view), and
the confinement layers active for the user running it.

    .venv/bin/python scripts/benchmark_sandbox.py [--repeat 5] [--chapters 01_attention 04_encoder]

Submissions are the solution notebooks (full marks both ways: checked).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(unsafe: bool, paths: list[Path], repeat: int) -> dict:
    from autograder.grader import Grader

    figures: dict = {}
    with Grader(unsafe_no_sandbox=unsafe) as grader:
        for path in paths:
            start = time.perf_counter()
            first = grader.grade(path)
            figures[f"{path.stem}: first submission, worker start included (s)"] = round(
                time.perf_counter() - start, 2)
            assert first["score"] == first["max_score"], first["output"]
            start = time.perf_counter()
            for _ in range(repeat):
                grader.grade(path)
            figures[f"{path.stem}: per submission, warm worker (s)"] = round(
                (time.perf_counter() - start) / repeat, 2)
        figures["layers"] = first["extra_data"]["sandbox"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chapters", nargs="+", default=["01_attention", "04_encoder"])
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMER_COURSE_QUICK", "1")
    paths = [ROOT / "solutions" / f"{c}.ipynb" for c in args.chapters]
    print(json.dumps({"uid": os.geteuid(), "sandbox": measure(False, paths, args.repeat),
                      "no sandbox (--unsafe-no-sandbox)": measure(True, paths, args.repeat)},
                     indent=1))


if __name__ == "__main__":
    main()
