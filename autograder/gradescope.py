"""Gradescope: build the autograder zip, and the entry point its ``run_autograder`` calls.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once when the
image is built, then for each submission runs ``/autograder/run_autograder`` with the
student's files in ``/autograder/submission/``; the result goes to
``/autograder/results/results.json``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from autograder.engine import HIDDEN_SEED, Grader, GradingError, Limits
from autograder.reader import SUFFIXES
from transformer_course.checks.registry import chapters

REPO = Path(__file__).resolve().parents[1]

SETUP_SH = """#!/usr/bin/env bash
# Gradescope image setup: install the course package (with the grader) and its pins.
set -euo pipefail
apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv > /dev/null
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet -c /autograder/source/constraints.txt /autograder/source
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope entry point; AUTOGRADER_ROOT and AUTOGRADER_PYTHON exist for local tests.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
mkdir -p "$ROOT/results"
cd "$ROOT/source"
exec "$PY" -m autograder gradescope-run --root "$ROOT" \\
    --config "$ROOT/source/autograder_config.json"
"""

# What the zip carries of the repository: enough to `pip install` the course package.
_SOURCES = ["pyproject.toml", "constraints.txt", "README.md", "src/transformer_course", "autograder"]


def build_zip(chapter_ids: list[str], out: Path, seed: int = HIDDEN_SEED) -> Path:
    """Write the autograder zip for ``chapter_ids`` to ``out``."""
    known = chapters()
    unknown = [c for c in chapter_ids if c not in known]
    if unknown or not chapter_ids:
        raise GradingError(f"unknown chapters {unknown}; choose from: {', '.join(known)}")
    config = {"chapters": chapter_ids, "seed": seed}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            z.writestr(info, text)
        z.writestr("autograder_config.json", json.dumps(config, indent=1))
        for item in _SOURCES:
            path = REPO / item
            files = [path] if path.is_file() else sorted(
                p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            for file in files:
                z.write(file, file.relative_to(REPO).as_posix())
    return out


def run(root: Path, config_path: Path) -> int:
    """Grade the submission in ``root/submission`` into ``root/results/results.json``."""
    config = json.loads(Path(config_path).read_text())
    allowed = config["chapters"]
    results = Path(root) / "results" / "results.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    candidates = sorted(p for p in (Path(root) / "submission").rglob("*")
                        if p.is_file() and p.suffix in SUFFIXES and ".ipynb_checkpoints" not in p.parts)
    named = [p for p in candidates if p.stem in allowed]
    chosen = named[0] if named else (candidates[0] if len(candidates) == 1 and len(allowed) == 1 else None)
    if chosen is None:
        expected = " or ".join(f"{c}.ipynb" for c in allowed)
        results.write_text(json.dumps({
            "score": 0, "max_score": 0, "execution_time": 0, "tests": [],
            "output": f"No gradable file found: upload {expected}.",
        }, indent=1))
        return 0
    chapter = chosen.stem if chosen.stem in allowed else allowed[0]
    with Grader(Limits(), int(config.get("seed", HIDDEN_SEED))) as grader:
        result = grader.grade(chosen, chapter)
    results.write_text(json.dumps(result, indent=1))
    return 0
