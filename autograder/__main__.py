"""Command line: ``python -m autograder {grade,batch,gradescope,gradescope-run}``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from autograder import GradingError
from autograder.grader import Grader, Limits
from autograder.gradescope import VISIBILITIES
from autograder.plan import HIDDEN_SEED


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(timeout_floor=args.timeout) if args.timeout else Limits()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    grade = sub.add_parser("grade", help="grade one .ipynb or .py submission")
    grade.add_argument("submission", type=Path)
    grade.add_argument("--chapter", help="chapter id (default: the file's stem)")
    grade.add_argument("--json", type=Path, help="write Gradescope's results.json here")
    grade.add_argument("--quiet", action="store_true", help="print nothing")

    batch = sub.add_parser("batch", help="grade ROOT/<student>/<chapter id>.ipynb for a class")
    batch.add_argument("root", type=Path)
    batch.add_argument("--out", type=Path, required=True)
    batch.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel")
    batch.add_argument("--force", action="store_true", help="regrade results that are up to date")
    batch.add_argument("--no-similarity", action="store_true",
                       help="skip the similarity report (similarity.csv and similarity.html)")
    batch.add_argument("--roster", type=Path,
                       help="CSV with columns student,lms_id,name for canvas.csv and moodle.csv")
    split = batch.add_mutually_exclusive_group()
    split.add_argument("--shard", metavar="I/N",
                       help="grade only shard I of N (0 <= I < N) and write its students' results; "
                            "with N alone, I is $JOB_COMPLETION_INDEX or $SLURM_ARRAY_TASK_ID")
    split.add_argument("--merge", action="store_true",
                       help="grade nothing: build the class's reports from the shards' results")

    for p in (grade, batch):
        p.add_argument("--seed", type=int, default=HIDDEN_SEED, help="seed of the hidden cases")
        p.add_argument("--timeout", type=float, help="minimum seconds per exercise (default 10)")
        p.add_argument("--unsafe-no-sandbox", action="store_true",
                       help="grade without the OS sandbox (bubblewrap), trusting every submission")

    zip_ = sub.add_parser("gradescope", help="build the Gradescope autograder zip")
    zip_.add_argument("--chapters", nargs="+", required=True)
    zip_.add_argument("--out", type=Path, default=Path("autograder.zip"))
    zip_.add_argument("--seed", type=int, default=HIDDEN_SEED)
    zip_.add_argument("--hidden-visibility", default="after_due_date",
                      choices=list(VISIBILITIES),
                      help="when students see the hidden cases' tests on Gradescope")
    zip_.add_argument("--measure", action="store_true",
                      help="grade the chapters' solutions, measure time and memory, and store "
                           "them for the zip's README (autograder/gradescope_resources.json)")

    run = sub.add_parser("gradescope-run", help="(used by run_autograder on Gradescope)")
    run.add_argument("--root", type=Path, default=Path("/autograder"))
    run.add_argument("--config", type=Path, required=True)

    args = parser.parse_args(argv)
    if getattr(args, "unsafe_no_sandbox", False):
        import autograder.grader

        autograder.grader.UNSAFE_NO_SANDBOX = True
    try:
        if args.command == "grade":
            return _grade(args)
        if args.command == "batch":
            return _batch(args)
        if args.command == "gradescope":
            from autograder.gradescope import RESOURCES, build_zip, measure

            if args.measure:
                from autograder.batch import write_atomic

                old = json.loads(RESOURCES.read_text()) if RESOURCES.is_file() else {"chapters": {}}
                new = measure(args.chapters, args.seed)
                merged = {**old["chapters"], **new["chapters"]}
                new["chapters"] = dict(sorted(merged.items()))  # chapter ids sort in course order
                write_atomic(RESOURCES, json.dumps(new, indent=1) + "\n")
                print(f"wrote {RESOURCES}")
            print(f"wrote {build_zip(args.chapters, args.out, args.seed, args.hidden_visibility)}")
            return 0
        from autograder.gradescope import run as run_gradescope

        return run_gradescope(args.root, args.config)
    except GradingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _shard(spec: str) -> tuple[int, int]:
    """``(index, count)`` from ``I/N``, or from ``N`` and the cluster's array index."""
    index, _, count = spec.rpartition("/")
    if not index:
        for variable in ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"):
            if os.environ.get(variable):
                index = os.environ[variable]
                break
        else:
            raise GradingError(f"--shard {spec}: give I/N, or set JOB_COMPLETION_INDEX (a Kubernetes "
                               "Indexed Job) or SLURM_ARRAY_TASK_ID (a SLURM array)")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise GradingError(f"--shard {spec} (index {index}): the shard must be I/N with 0 <= I < N")
    return int(index), int(count)


def _batch(args: argparse.Namespace) -> int:
    from autograder.batch import grade_class, merge_class

    shard = _shard(args.shard) if args.shard else None
    common = dict(seed=args.seed, similarity=not args.no_similarity, roster=args.roster)
    if args.merge:
        grades = merge_class(args.root, args.out, **common)
    else:
        grades = grade_class(args.root, args.out, args.jobs, args.force, _limits(args),
                             shard=shard, **common)
    if shard is None:
        written = ["grades.csv", "canvas.csv", "moodle.csv", "summary.md", "missing.txt"]
        written += [] if args.no_similarity else ["similarity.html"]
        print(f"wrote {', '.join(str(args.out / name) for name in written)}")
    if grades.missing:
        print(f"error: {len(grades.missing)} result(s) missing: {', '.join(grades.missing)}",
              file=sys.stderr)
        return 1
    return 0


def _grade(args: argparse.Namespace) -> int:
    from autograder.report import text_summary

    if not args.submission.is_file():
        raise GradingError(f"{args.submission} is not a file")
    with Grader(_limits(args), args.seed) as grader:
        result = grader.grade(args.submission, args.chapter)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if not args.quiet:
        print(text_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
