"""Command line: ``python -m autograder {grade,batch,gradescope,gradescope-run}``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autograder import GradingError
from autograder.grader import Grader, Limits
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

    for p in (grade, batch):
        p.add_argument("--seed", type=int, default=HIDDEN_SEED, help="seed of the hidden cases")
        p.add_argument("--timeout", type=float, help="minimum seconds per exercise (default 10)")
        p.add_argument("--unsafe-no-sandbox", action="store_true",
                       help="grade without the OS sandbox (bubblewrap), trusting every submission")

    zip_ = sub.add_parser("gradescope", help="build the Gradescope autograder zip")
    zip_.add_argument("--chapters", nargs="+", required=True)
    zip_.add_argument("--out", type=Path, default=Path("autograder.zip"))
    zip_.add_argument("--seed", type=int, default=HIDDEN_SEED)

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
            from autograder.batch import grade_class

            grade_class(args.root, args.out, args.jobs, args.force, _limits(args), args.seed,
                        similarity=not args.no_similarity, roster=args.roster)
            written = ["grades.csv", "canvas.csv", "moodle.csv", "summary.md"]
            written += [] if args.no_similarity else ["similarity.html"]
            print(f"wrote {', '.join(str(args.out / name) for name in written)}")
            return 0
        if args.command == "gradescope":
            from autograder.gradescope import build_zip

            print(f"wrote {build_zip(args.chapters, args.out, args.seed)}")
            return 0
        from autograder.gradescope import run as run_gradescope

        return run_gradescope(args.root, args.config)
    except GradingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


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
