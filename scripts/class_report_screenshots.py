"""Make the instructors' page screenshots: grade a generated class, then photograph its
class summary and similarity report in headless Chromium.

    .venv/bin/python scripts/class_report_screenshots.py [--students 36] [--keep DIR]

Writes ``book/images/class_summary.png`` and ``book/images/similarity.png``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from classgen import make_class, write_class  # noqa: E402

from autograder.batch import grade_class  # noqa: E402
from autograder.grader import Limits  # noqa: E402

STYLE = ("<style>body{font-family:sans-serif;margin:1.5em;max-width:70em}table{border-collapse:"
         "collapse}td,th{border:1px solid #ccc;padding:.2em .6em}</style>")


def screenshot(page: Path, image: Path, height: int = 900) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={profile}", f"--screenshot={image}",
                        f"--window-size=1200,{height}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=36)
    parser.add_argument("--keep", type=Path, help="grade into this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp())
    made = make_class(args.students, 5, seed=0)
    write_class(made, work / "submissions")
    grade_class(work / "submissions", work / "grades", jobs=2, limits=Limits(timeout_floor=10.0))
    summary = work / "grades" / "summary.html"
    body = MarkdownIt("commonmark").enable("table").render((work / "grades" / "summary.md").read_text())
    summary.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'>{STYLE}</head>"
                       f"<body>{body}</body></html>")
    images = ROOT / "book" / "images"
    screenshot(summary, images / "class_summary.png", 560)
    screenshot(work / "grades" / "similarity.html", images / "similarity.png", 1000)
    print("copied pairs planted:", sorted(tuple(sorted(p)) for p in made.copied))
    print(f"wrote {images / 'class_summary.png'} and {images / 'similarity.png'} from {work}")


if __name__ == "__main__":
    main()
