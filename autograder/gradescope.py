"""Gradescope: build the autograder zip, and the entry point its ``run_autograder`` calls.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once when the
image is built, then for each submission runs ``/autograder/run_autograder`` with the
student's files in ``/autograder/submission/``; the result goes to
``/autograder/results/results.json``. The zip's ``README.md`` (``ZIP_README``) tells an
instructor what the scripts install, from where, and how to point them elsewhere.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import resource
import threading
import time
import tomllib
import zipfile
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import torch

import autograder
from autograder import GradingError
from autograder.grader import Grader, Limits
from autograder.plan import HIDDEN_SEED, plan_chapter
from autograder.reader import SUFFIXES
from autograder.results import exercise_result, failed_result
from transformer_course.checks.registry import chapters
from transformer_course.checks.render import feedback
from transformer_course.checks.results import Status
from transformer_course.pins import read_pins

REPO = Path(__file__).resolve().parents[1]

# uv fetches a standalone CPython when the image's python3 is too old (see ZIP_README).
UV_VERSION = "0.13.8"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image. It makes
# $ROOT/venv: a Python new enough for the course and its pins (>=@MIN_PYTHON@), a
# CPU-only torch from PyTorch's CPU wheel index, then the course package and its pins.
# README.md lists the variables that point it elsewhere (used to test it off Gradescope).
set -euo pipefail

ROOT="${AUTOGRADER_ROOT:-/autograder}"
COURSE="$ROOT/source/course"
VENV="$ROOT/venv"
MIN_PYTHON="@MIN_PYTHON@"  # the course's requires-python, raised by its pins' own
SERIES="@SERIES@"  # what uv installs: the newest release of this series
BASE_PYTHON="${AUTOGRADER_BASE_PYTHON:-python3}"
BOOTSTRAP="${AUTOGRADER_PYTHON_BOOTSTRAP:-uv}"
UV_VERSION="${AUTOGRADER_UV_VERSION:-@UV_VERSION@}"
TORCH_INDEX_URL="${AUTOGRADER_TORCH_INDEX_URL:-@CPU_INDEX@}"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

say() { echo "setup.sh: $*"; }
die() { echo "setup.sh: error: $*" >&2; exit 1; }

# fits PY: PY runs and is MIN_PYTHON or newer.
fits() {
    "$1" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$MIN_PYTHON'.split('.'))))" \
        > /dev/null 2>&1
}

# Debian and Ubuntu ship pip and venv's ensurepip apart from python3.
apt_install() {
    command -v apt-get > /dev/null || return 1
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" > /dev/null
}

# 1. A Python: the image's when it fits, else CPython from python-build-standalone, which
#    uv (one binary that pip fetches from PyPI) downloads and unpacks into $ROOT/python.
if fits "$BASE_PYTHON"; then
    PY="$(command -v "$BASE_PYTHON")"
    say "using $PY ($("$PY" -V 2>&1)), which satisfies >=$MIN_PYTHON"
elif [ "$BOOTSTRAP" = uv ]; then
    say "$BASE_PYTHON is missing or older than $MIN_PYTHON: installing CPython $SERIES" \
        "with uv $UV_VERSION"
    if ! "$BASE_PYTHON" -m pip --version > /dev/null 2>&1; then
        apt_install python3 python3-pip || die "no pip to fetch uv with: install python3-pip"
        BASE_PYTHON=python3
    fi
    tools="$(mktemp -d)"
    trap 'rm -rf "$tools"' EXIT
    "$BASE_PYTHON" -m pip install --quiet --target "$tools" "uv==$UV_VERSION"
    # Under $ROOT (not root's home) so that the grader's sandbox user can read it.
    export UV_PYTHON_INSTALL_DIR="$ROOT/python"
    "$tools/bin/uv" python install --no-bin "$SERIES"
    PY="$("$tools/bin/uv" python find --managed-python "$SERIES")"
    fits "$PY" || die "uv installed $("$PY" -V 2>&1), older than $MIN_PYTHON: set AUTOGRADER_UV_VERSION"
    say "using $PY ($("$PY" -V 2>&1))"
else
    die "$BASE_PYTHON is missing or older than $MIN_PYTHON and AUTOGRADER_PYTHON_BOOTSTRAP=$BOOTSTRAP:" \
        "set AUTOGRADER_BASE_PYTHON to a Python >= $MIN_PYTHON, or AUTOGRADER_PYTHON_BOOTSTRAP=uv"
fi

# 2. The venv.
if ! "$PY" -m venv --clear "$VENV"; then
    version="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    say "installing python$version-venv (this image's Python has no ensurepip)"
    apt_install "python$version-venv" || die "$PY cannot create a venv: install python$version-venv"
    "$PY" -m venv --clear "$VENV"
fi
pip=("$VENV/bin/python" -m pip)

# 3. torch from the CPU wheel index (the default index has the CUDA build, several GB),
#    without its dependencies, which come pinned with the rest in step 4.
torch="$(grep -m 1 -E '^torch==' "$COURSE/constraints.txt")" || die "constraints.txt pins no torch"
say "installing $torch from $TORCH_INDEX_URL"
"${pip[@]}" install --quiet --no-deps --index-url "$TORCH_INDEX_URL" "$torch"

# 3b. bubblewrap, the sandbox every student's code runs in (Debian's and Ubuntu's package).
if ! command -v bwrap > /dev/null; then
    say "installing bubblewrap (the grader's sandbox)"
    apt_install bubblewrap || die "cannot install bubblewrap: the grader runs no student code without it"
fi
bwrap --version > /dev/null || die "bwrap is installed but does not run"

# 4. The course package (with the grader) and the exact versions it was tested with.
say "installing the course package with constraints.txt"
"${pip[@]}" install --quiet -c "$COURSE/constraints.txt" "$COURSE"
"${pip[@]}" check
# -I: the venv's own copy of the grader, whatever folder this script runs from.
"$VENV/bin/python" -I - "$torch" <<'CHECK'
import sys

import torch

import autograder.grader  # noqa: F401  (the grader imports)

pin = sys.argv[1].split("==")[1]
if torch.version.cuda or torch.__version__.split("+")[0] != pin:
    sys.exit(f"setup.sh: error: torch {torch.__version__} (CUDA {torch.version.cuda}) "
             f"is not the CPU build of {pin}: check AUTOGRADER_TORCH_INDEX_URL")
print(f"setup.sh: ready: Python {sys.version.split()[0]}, torch {torch.__version__} (CPU) in {sys.prefix}")
CHECK
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

ZIP_README = """# Autograder: Transformers from scratch

Chapters graded: @CHAPTERS@. Upload this zip as a Gradescope "zip file upload"
autograder; students submit the chapter's notebook under its own name (`@FIRST@.ipynb`).

## Base images

Written for Gradescope's **Ubuntu 22.04** base image (x86_64). Its `python3` is 3.10,
older than the course and its pins need (>=@MIN_PYTHON@: the course's requires-python,
raised by the Requires-Python of the pinned packages), so `setup.sh` installs its own
CPython: uv @UV_VERSION@ (a single binary, fetched from PyPI with the image's pip)
downloads the newest @SERIES@ release from python-build-standalone into
`/autograder/python`. On an image whose `python3` is already @MIN_PYTHON@ or newer
(Ubuntu 24.04's 3.12) that Python is used as it is, and apt adds its `venv` package if
the image lacks it. Ubuntu 18.04 cannot work: torch's wheels need glibc 2.28 or newer.

## What `setup.sh` installs

1. A Python, as above (nothing is downloaded when the image's fits).
2. `/autograder/venv`, a virtual environment of that Python.
3. `@TORCH@`, the CPU-only build, from PyTorch's CPU wheel index
   (@CPU_INDEX@): the default index has the CUDA build, with several GB of
   libraries a grader never uses.
4. `bubblewrap` from the image's apt (Ubuntu's package), when `bwrap` is missing: the
   grader runs every student's code inside it.
5. The course package (`course/`, with the grader) from PyPI, every dependency at the
   version in `course/constraints.txt`; then `pip check`, and a check that torch is the
   CPU build of the pin.

## Hidden test cases

Each exercise is graded on its visible cases (the ones the notebook's `check` runs) and
on hidden cases. On Gradescope they are two tests per exercise: `<exercise>: N visible
test cases`, always shown, and `<exercise>: N hidden test cases`, with the visibility
`@HIDDEN@` (@HIDDEN_MEANING@). The summary at the top gives the points of the visible
cases only. Choose another with `python -m autograder gradescope --hidden-visibility
{after_due_date,after_published,visible,hidden}` (`visible`: one test per exercise, as
`python -m autograder grade` writes it).

## Gradescope's settings for this autograder

@RESOURCES@

## Variables (to run the scripts elsewhere, e.g. to test them)

| variable | default | what it sets |
|---|---|---|
| `AUTOGRADER_ROOT` | `/autograder` | the folder holding `source/`, `submission/`, `results/` |
| `AUTOGRADER_BASE_PYTHON` | `python3` | the Python used when it is >=@MIN_PYTHON@ |
| `AUTOGRADER_PYTHON_BOOTSTRAP` | `uv` | `none`: fail instead of installing a Python |
| `AUTOGRADER_UV_VERSION` | `@UV_VERSION@` | the uv that installs that Python |
| `UV_PYTHON_INSTALL_MIRROR` | python-build-standalone's releases | where uv downloads Python from |
| `AUTOGRADER_TORCH_INDEX_URL` | @CPU_INDEX@ | the index torch comes from |
| `PIP_INDEX_URL` | PyPI | the index of everything else (pip's own variable) |
| `AUTOGRADER_PYTHON` | `/autograder/venv/bin/python` | the Python `run_autograder` grades with |

## Files

- `setup.sh`, `run_autograder`: the two scripts Gradescope runs.
- `autograder_config.json`: the chapters, the seed of the hidden test cases and their
  visibility.
- `course/`: the course package and the grader (`pyproject.toml`, `constraints.txt`,
  `src/transformer_course/`, `autograder/`).
"""

# Measured by ``python -m autograder gradescope --measure`` (:func:`measure`); the zip's
# README derives its settings from it.
RESOURCES = REPO / "autograder" / "gradescope_resources.json"


def _tree(root: int) -> list[int]:
    """``root`` and every process under it."""
    parents: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _pss_bytes(pids: list[int]) -> int:
    """Proportional set size of the processes: shared pages (torch, forked children)
    counted once in all, as a container's memory limit counts them."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration, ValueError):
            continue
    return total


def _cpu_seconds() -> float:
    """CPU time of this process and of every process it started and waited for (the
    worker and, through it, the exercise processes)."""
    return sum(u.ru_utime + u.ru_stime
               for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


class _PeakMemory:
    """The peak :func:`_pss_bytes` of this process and its descendants while in the
    ``with`` block, sampled every 20 ms."""

    def __enter__(self) -> _PeakMemory:
        self.peak, self._done = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _pss_bytes(_tree(os.getpid())))

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def measure(chapter_ids: list[str], seed: int = HIDDEN_SEED) -> dict:
    """Grade each chapter's solution notebook as ``run_autograder`` does and measure it:
    wall-clock and CPU seconds, the peak memory of the grader and everything it started
    (sampled every 20 ms), and the worst case for the timeout (every exercise running
    until its own timeout)."""
    limits = Limits()
    found = {}
    for chapter in chapter_ids:
        plans = plan_chapter(chapter, seed)  # built before the clock starts, as in the image
        before = _cpu_seconds()
        start = time.perf_counter()
        with _PeakMemory() as memory, Grader(limits, seed) as grader:
            result = grader.grade(REPO / "solutions" / f"{chapter}.ipynb", chapter)
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - before
        timeouts = sum(max(limits.timeout_floor, limits.timeout_factor * p.reference_seconds) for p in plans)
        found[chapter] = {
            "score": result["score"], "max_score": result["max_score"],
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "peak_mib": round(memory.peak / 2**20),
            "worst_case_seconds": round(seconds + timeouts + limits.load_timeout * 2),
        }
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.machine())
    return {"machine": f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}",
            "grader_version": autograder.__version__, "torch": torch.__version__,
            "child_memory_limit_mib": limits.memory_bytes >> 20, "chapters": found}


def resources_text(chapter_ids: list[str]) -> str:
    """The README's settings for these chapters, from :data:`RESOURCES`."""
    data = json.loads(RESOURCES.read_text()) if RESOURCES.is_file() else {"chapters": {}}
    measured = [c for c in chapter_ids if c in data["chapters"]]
    missing = [c for c in chapter_ids if c not in data["chapters"]]
    lines = []
    if measured:
        rows = [data["chapters"][c] for c in measured]
        peak = max(r["peak_mib"] for r in rows)
        memory = math.ceil((peak + data["child_memory_limit_mib"]) / 1024)
        worst = max(r["worst_case_seconds"] for r in rows)
        lines += [
            f"Measured by grading each chapter's solution notebook as `run_autograder` does, on "
            f"{data['machine']} (autograder {data['grader_version']}, torch {data['torch']}):", "",
            "| chapter | wall-clock s | CPU s | peak memory (MiB) | worst case s |",
            "|---|---|---|---|---|",
            *[f"| {c} | {r['seconds']:g} | {r['cpu_seconds']:g} | {r['peak_mib']} | "
              f"{r['worst_case_seconds']} |" for c, r in zip(measured, rows, strict=True)], "",
            f"* **Memory: at least {memory} GB.** The grader and its worker peaked at {peak} MiB "
            "(shared pages counted once), and a student's exercise process may grow to "
            f"{data['child_memory_limit_mib']} MiB before it is stopped.",
            "* **CPU: 1 is enough.** Exercises run one after another on one thread each; "
            "more CPUs do not make a submission faster.",
            f"* **Timeout: {math.ceil(worst / 60)} minutes** covers the worst case, a submission "
            f"whose every exercise runs until its own time limit (the limit is "
            f"{Limits().timeout_factor:g} times the reference's own time, at least "
            f"{Limits().timeout_floor:g} s). With a shorter timeout such a submission "
            "ends with Gradescope's timeout message instead of the grader's feedback.",
        ]
    if missing:
        lines += ["", f"Not measured yet: {', '.join(missing)} (`python -m autograder gradescope "
                  "--measure --chapters ...` measures them)."]
    return "\n".join(lines).strip()


# What the zip carries of the repository, under course/: enough to `pip install` it.
_SOURCES = ["pyproject.toml", "constraints.txt", "README.md", "src/transformer_course", "autograder"]


def _floor(spec: str) -> tuple[int, ...] | None:
    """The lowest version a Requires-Python allows, from its ``>=`` and ``~=`` clauses."""
    found = [tuple(map(int, v.split("."))) for v in re.findall(r"(?:>=|~=)\s*(\d+(?:\.\d+)*)", spec)]
    return max(found, default=None)


def min_python() -> str:
    """The oldest Python that the course and the pins installed here all support, e.g. "3.11.5".

    The course's requires-python, raised by each pinned package's own Requires-Python
    (read from the installed copy): a Python that satisfies the course but not a pin
    would fail ``setup.sh`` halfway through its installs.
    """
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    floors = [_floor(spec)]
    if floors[0] is None:
        raise GradingError(f"requires-python = {spec!r}: setup.sh needs a lower bound ('>=3.X')")
    for name, version in read_pins(REPO).items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version.split("+")[0] == version and dist.metadata.get("Requires-Python"):
            floors.append(_floor(dist.metadata["Requires-Python"]))
    return ".".join(map(str, max(f for f in floors if f)))


def torch_pin() -> str:
    """The ``torch==X`` line of constraints.txt."""
    pins = read_pins(REPO)
    if "torch" not in pins:
        raise GradingError("constraints.txt must pin torch exactly once (torch==X)")
    return f"torch=={pins['torch']}"


def _fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    return template


# Gradescope's visibility of a test, and when a student sees it.
VISIBILITIES = {
    "after_due_date": "students see them once the due date has passed",
    "after_published": "students see them once you publish the grades",
    "visible": "students see them at once",
    "hidden": "students never see them",
}


def with_hidden_cases(result: dict, visibility: str) -> dict:
    """The result as Gradescope shows it: each exercise split into a test of its visible
    cases (always shown) and one of its hidden cases, shown as ``visibility`` says.

    Points are shared among the cases as in the whole exercise, so the tests add up to the
    exercise's score. With ``"visible"`` the result is returned as it is.
    """
    if visibility not in VISIBILITIES:
        raise GradingError(f"hidden-case visibility {visibility!r}: choose one of {', '.join(VISIBILITIES)}")
    if visibility == "visible":
        return result
    tests, shown, shown_max = [], 0.0, 0.0
    for test in result["tests"]:
        exercise = exercise_result(test)
        if not exercise.cases:  # not graded at all (see results.failed_result): one visible test
            tests.append(test)
            shown, shown_max = shown + test["score"], shown_max + test["max_score"]
            continue
        hidden = [c for c in exercise.cases if c.hidden]
        groups = [("visible", [c for c in exercise.cases if c not in hidden]), (visibility, hidden)]
        for seen, cases in groups:
            if not cases:
                continue
            status = exercise.status
            if status == Status.FAILED and all(c.passed for c in cases):
                status = Status.PASSED
            part = replace(exercise, cases=cases, status=status,
                           max_points=exercise.max_points * len(cases) / len(exercise.cases),
                           hints=[h for h in exercise.hints if any(c.mistake == h.name for c in cases)])
            kind = "visible" if seen == "visible" else "hidden"
            tests.append({
                "name": f"{exercise.exercise}: {len(cases)} {kind} test cases",
                "score": round(part.score, 4), "max_score": round(part.max_points, 4),
                "status": "passed" if part.passed else "failed", "output": feedback(part),
                "visibility": seen, "extra_data": part.to_dict(),
            })
            if seen == "visible":
                shown, shown_max = shown + part.score, shown_max + part.max_points
    first, *rest = result["output"].splitlines()
    summary = (f"{result['extra_data']['chapter']}: {shown:.4g} / {shown_max:.4g} points on the visible "
               f"cases; the hidden cases' {result['max_score'] - shown_max:.4g} points: "
               f"{VISIBILITIES[visibility]}")
    return {**result, "tests": tests, "output": "\n".join([summary, *rest])}


def build_zip(chapter_ids: list[str], out: Path, seed: int = HIDDEN_SEED,
              hidden_visibility: str = "after_due_date") -> Path:
    """Write the autograder zip for ``chapter_ids`` to ``out``.

    Args:
        hidden_visibility: Gradescope's visibility of the hidden cases' tests (a key of
            :data:`VISIBILITIES`).
    """
    known = chapters()
    unknown = [c for c in chapter_ids if c not in known]
    if unknown or not chapter_ids:
        raise GradingError(f"unknown chapters {unknown}; choose from: {', '.join(known)}")
    if hidden_visibility not in VISIBILITIES:
        raise GradingError(f"hidden-case visibility {hidden_visibility!r}: choose one of "
                           f"{', '.join(VISIBILITIES)}")
    oldest = min_python()
    values = dict(MIN_PYTHON=oldest, SERIES=".".join(oldest.split(".")[:2]), UV_VERSION=UV_VERSION,
                  CPU_INDEX=CPU_INDEX, TORCH=torch_pin(), CHAPTERS=", ".join(chapter_ids),
                  FIRST=chapter_ids[0], HIDDEN=hidden_visibility,
                  HIDDEN_MEANING=VISIBILITIES[hidden_visibility],
                  RESOURCES=resources_text(chapter_ids))
    config = {"chapters": chapter_ids, "seed": seed, "hidden_visibility": hidden_visibility}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            z.writestr(info, _fill(text, **values))
        z.writestr("README.md", _fill(ZIP_README, **values))
        z.writestr("autograder_config.json", json.dumps(config, indent=1))
        for item in _SOURCES:
            path = REPO / item
            files = [path] if path.is_file() else sorted(
                p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            for file in files:
                z.write(file, "course/" + file.relative_to(REPO).as_posix())
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
    seed = int(config.get("seed", HIDDEN_SEED))
    with Grader(Limits(), seed) as grader:
        try:
            result = grader.grade(chosen, chapter)
        except Exception as err:  # the student still gets a result, and the reason
            result = failed_result(chosen, chapter, seed, "the grader could not grade this submission "
                                   f"({type(err).__name__}: {str(err)[:500]}); tell your instructor")
    result = with_hidden_cases(result, config.get("hidden_visibility", "after_due_date"))
    results.write_text(json.dumps(result, indent=1))
    return 0
