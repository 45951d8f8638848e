"""Benchmark the autograder (not a test): seconds per submission, a class in batch, and
the ratio to executing the notebooks top to bottom with nbclient (how nbgrader and
otter grade).

    .venv/bin/python scripts/benchmark_autograder.py [--students 50] [--jobs 2]

Submissions are the solution notebooks, some with one catalogued mistake swapped in,
some with every exercise stubbed; the same files are executed with nbclient in the
quick setting for the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def _grade_cli(path: Path, chapter: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autograder", "grade", str(path), "--chapter", chapter,
                    "--quiet", "--json", os.devnull], check=True, cwd=ROOT)
    return time.perf_counter() - start


def _class(root: Path, solutions: list[Path], students: int) -> None:
    """``students`` folders; each holds every chapter, solved, stubbed or with a mutant."""
    rng = random.Random(0)
    for n in range(students):
        folder = root / f"student{n:03d}"
        folder.mkdir(parents=True)
        for solution in solutions:
            source = solution if rng.random() < 0.6 else ROOT / "notebooks" / solution.name
            shutil.copy(source, folder / solution.name)


def _nbclient_seconds(paths: list[Path]) -> float:
    from nbclient import NotebookClient

    start = time.perf_counter()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--nbclient-sample", type=int, default=2,
                        help="students whose notebooks are executed with nbclient")
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMER_COURSE_QUICK", "1")
    from transformer_course.checks.registry import chapters

    solutions = [ROOT / "solutions" / f"{c}.ipynb" for c in chapters()
                 if (ROOT / "solutions" / f"{c}.ipynb").exists()]
    figures: dict[str, float | str] = {"chapters": ", ".join(p.stem for p in solutions)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first = solutions[0]
        figures["one chapter-01 submission, cold (s)"] = _grade_cli(first, first.stem)

        from autograder.grader import Grader

        with Grader() as grader:
            grader.grade(first)  # start the worker
            start = time.perf_counter()
            for path in solutions:
                grader.grade(path)
            figures["every chapter of one student, warm worker (s)"] = time.perf_counter() - start
        start = time.perf_counter()
        for path in solutions:
            _grade_cli(path, path.stem)
        figures["every chapter of one student, one CLI call each (s)"] = time.perf_counter() - start

        root, out = tmp / "class", tmp / "out"
        _class(root, solutions, args.students)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "autograder", "batch", str(root), "--out", str(out),
                        "--jobs", str(args.jobs)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        batch = time.perf_counter() - start
        n_files = args.students * len(solutions)
        figures[f"batch of {args.students} students x {len(solutions)} chapters, --jobs "
                f"{args.jobs} (s)"] = batch
        figures["batch seconds per submission"] = batch / n_files
        figures["projected class of 100, whole course (min)"] = (
            batch / args.students * 100 / 60 * len(chapters()) / len(solutions))

        sample = sorted(root.iterdir())[: args.nbclient_sample]
        executed = [p for folder in sample for p in sorted(folder.iterdir())]
        nbclient = _nbclient_seconds(executed)
        figures["nbclient seconds per submission (quick setting)"] = nbclient / len(executed)
        figures["speed-up over nbclient (per submission)"] = (nbclient / len(executed)) / (
            batch / n_files)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
