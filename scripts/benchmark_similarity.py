"""Benchmark the similarity report (not a test): recall on copied pairs and false pairs
over several generated classes, and the time for a class of 500.

    .venv/bin/python scripts/benchmark_similarity.py [--seeds 10] [--students 500]

Classes come from ``tests/classgen.py`` (independent students in many natural styles, a
few copiers who renamed, reordered, recommented and reformatted another's code). Wall
time and CPU time are both printed: on a shared machine the wall time varies with the
load, the CPU time much less.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from classgen import make_class, write_class  # noqa: E402

from autograder.batch import find_submissions  # noqa: E402
from autograder.similarity import flag, read_class, score_chapter  # noqa: E402


def run(n_students: int, n_copiers: int, seed: int) -> tuple[dict[str, tuple[int, int, int]], dict]:
    """``{chapter: (copied pairs found, copied pairs, independent pairs reported)}`` and
    the seconds (wall and CPU) of each stage."""
    made = make_class(n_students, n_copiers, seed)
    with tempfile.TemporaryDirectory() as folder:
        write_class(made, Path(folder))
        submissions, _ = find_submissions(Path(folder))
        wall, cpu = time.perf_counter(), time.process_time()
        chapters = read_class(submissions)
        times = {"read": (time.perf_counter() - wall, time.process_time() - cpu)}
    found = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for chapter, (codes, skipped) in chapters.items():
        scores, _ = score_chapter(codes)
        pairs, _ = flag(chapter, codes, scores, skipped)
        reported = {frozenset((p.student_a, p.student_b)) for p in pairs}
        found[chapter] = (len(reported & made.copied), len(made.copied), len(reported - made.copied))
    times["score"] = (time.perf_counter() - wall, time.process_time() - cpu)
    return found, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="classes of 30 for recall")
    parser.add_argument("--students", type=int, default=500, help="size of the timed class")
    args = parser.parse_args()

    hits = total = false = 0
    print(f"{'seed':>4} {'chapter':<26} {'copied found':>13} {'false pairs':>11}")
    for seed in range(args.seeds):
        found, _ = run(30, 5, seed)
        for chapter, (hit, copied, wrong) in found.items():
            hits, total, false = hits + hit, total + copied, false + wrong
            print(f"{seed:>4} {chapter:<26} {f'{hit}/{copied}':>13} {wrong:>11}")
    print(f"classes of 30: recall {hits}/{total} = {hits / total:.1%}, "
          f"{false} independent pairs reported over {args.seeds * 2} chapter reports\n")

    n = args.students
    found, times = run(n, n // 20, 0)
    for chapter, (hit, copied, wrong) in found.items():
        print(f"class of {n}, {chapter}: copied pairs found {hit}/{copied}, "
              f"independent pairs reported {wrong} of {n * (n - 1) // 2 - copied}")
    for stage, (wall, cpu) in times.items():
        print(f"{stage:>6}: {wall:6.1f} s wall, {cpu:6.1f} s CPU")
    wall = sum(w for w, _ in times.values())
    cpu = sum(c for _, c in times.values())
    print(f" total: {wall:6.1f} s wall, {cpu:6.1f} s CPU for {n} students, 2 chapters")


if __name__ == "__main__":
    main()
