"""Grading in the parent process: plan the cases, drive a worker, judge the outputs.

The parent is the only trusted party. It builds every input and all the data that judging
needs (:func:`transformer_course.checks.prepare.prepare`) itself, sends only the inputs to the
worker, reads back tensors from safetensors files (never unpickling anything), and judges
them with :func:`transformer_course.checks.judging.judge`, the judgement of the notebooks'
``check`` (sampled tokens come back as tensors and are judged by their distribution).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import autograder
from autograder.reader import Program, SubmissionError, imported_modules, read_submission
from autograder.wire import load_json, load_tensors, numel_limit, pack, save_tensors
from transformer_course.checks import VISIBLE_SEED, judging, prepare, running
from transformer_course.checks.exercise import Case, Exercise
from transformer_course.checks.registry import chapters, exercises
from transformer_course.checks.results import CaseResult, CheckResult, Outcome

HIDDEN_SEED = 1
"""Default seed of the hidden cases; instructors can choose another (``--seed``)."""


class GradingError(Exception):
    """No result can be written (unknown chapter, unreadable arguments)."""


@dataclass(frozen=True)
class Limits:
    """Confinement of student code. The wall-clock timeout of an exercise is
    ``max(timeout_floor, timeout_factor * reference seconds)``."""

    timeout_floor: float = 10.0
    timeout_factor: float = 50.0
    load_timeout: float = 20.0
    memory_bytes: int = 3 << 30
    file_bytes: int = 64 << 20


# --------------------------------------------------------------------------- planning


@dataclass
class ExercisePlan:
    exercise: Exercise
    cases: list[Case]
    data: list[dict[str, Tensor]]  # prepared data of each case (layout: prepare.prepare)
    seeds: list[int]  # the seed of each case
    reference_seconds: float
    disable: list[tuple[str, str]]

    @property
    def expected(self) -> list[dict[str, Tensor]]:
        """The reference's outputs on each case."""
        return [prepare.expected_outputs(d) for d in self.data]


_PLANS: dict[tuple[str, int], list[ExercisePlan]] = {}
_PLAN_LOCK = threading.Lock()


def plan_chapter(chapter: str, seed: int = HIDDEN_SEED) -> list[ExercisePlan]:
    """Cases (visible, then hidden ones that differ), reference outputs and the
    reference objects to disable, for every exercise of ``chapter`` (cached)."""
    with _PLAN_LOCK:
        if (chapter, seed) not in _PLANS:
            _PLANS[chapter, seed] = _plan(chapter, seed)
        return _PLANS[chapter, seed]


def _plan(chapter: str, seed: int) -> list[ExercisePlan]:
    found = exercises(chapter)
    if not found:
        known = ", ".join(chapters())
        raise GradingError(f"no graded exercises for chapter {chapter!r}; the chapters are: {known}")
    plans = []
    for exercise in found:
        start = time.perf_counter()
        cases, data = prepare.reference_run(exercise, VISIBLE_SEED)
        cases, data, seeds = list(cases), list(data), [VISIBLE_SEED] * len(cases)
        if seed != VISIBLE_SEED:
            hidden, hidden_data = prepare.reference_run(exercise, seed)
            for case, want in zip(hidden, hidden_data, strict=True):
                if not any(_same_args(case.args, c.args) for c in cases):
                    cases.append(Case(f"hidden: {case.name}", case.args))
                    data.append(want)
                    seeds.append(seed)
        elapsed = time.perf_counter() - start
        plans.append(ExercisePlan(exercise, cases, data, seeds, elapsed,
                                  _to_disable(exercise, found, cases)))
    return plans


def _same_args(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool((a == b).all()))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_args(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_args(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _codes_of(obj: Any) -> list:
    import types

    if isinstance(obj, type):
        found = []
        for value in vars(obj).values():
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                found += [f.__code__ for f in (value.fget, value.fset, value.fdel)
                          if isinstance(f, types.FunctionType)]
            elif isinstance(value, types.FunctionType) and value.__module__ == obj.__module__:
                found.append(value.__code__)
        return found
    return [obj.__code__] if isinstance(obj, types.FunctionType) else []


def _to_disable(exercise: Exercise, chapter: list[Exercise], cases: list[Case]) -> list[tuple[str, str]]:
    """The chapter's reference objects to disable while ``exercise`` runs: all of them,
    except those the exercise's own ``run`` needs outside the reference implementation
    (a reference model handed to ``greedy_decode``, say). Found by tracing a reference
    run: a reference object entered while no frame of the exercise's reference is on
    the stack belongs to the harness."""
    owners = {code: other.name for other in chapter for code in _codes_of(other.reference)}
    own = {code for code, name in owners.items() if name == exercise.name}
    needed: set[str] = set()

    def profile(frame, event, arg):
        if event != "call":
            return
        name = owners.get(frame.f_code)
        if name is None or name == exercise.name or name in needed:
            return
        caller = frame.f_back
        while caller is not None:
            if caller.f_code in own:
                return
            caller = caller.f_back
        needed.add(name)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        for case in cases:
            running.execute(exercise, exercise.reference, case)
    finally:
        sys.setprofile(previous)
    return [(other.reference.__module__, other.reference.__qualname__) for other in chapter
            if other.name not in needed and _codes_of(other.reference)]


# --------------------------------------------------------------------------- worker


class WorkerError(Exception):
    pass


class Worker:
    """A long-lived ``python -m autograder.worker`` process (see :mod:`autograder.worker`)."""

    START_TIMEOUT = 300.0  # torch import on a loaded machine

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.home: str | None = None

    def _start(self) -> None:
        self.home = tempfile.mkdtemp(prefix="autograder-worker-")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.home, "TMPDIR": self.home,
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": self.home, "TRANSFORMER_COURSE_QUICK": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        stderr = open(os.path.join(self.home, "stderr.txt"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "autograder.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=stderr, cwd=self.home, env=env,
            start_new_session=True)
        stderr.close()
        self._buffer = b""
        message = self._read(time.monotonic() + self.START_TIMEOUT)
        if not message.get("ready"):
            raise WorkerError(f"the grading worker did not start: {message}")

    def _read(self, deadline: float) -> dict:
        """The next JSON line from the worker (raw reads: no hidden buffering)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                self.close()
                raise WorkerError("the grading worker stopped answering")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                detail = ""
                if self.home and os.path.exists(os.path.join(self.home, "stderr.txt")):
                    detail = Path(self.home, "stderr.txt").read_text(errors="replace")[-2000:]
                self.close()
                raise WorkerError(f"the grading worker exited unexpectedly {detail}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def run(self, job: dict, deadline: float) -> list[dict]:
        """Send a job and collect the worker's messages up to ``done``."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job).encode() + b"\n")
        self.proc.stdin.flush()
        messages = []
        while True:
            message = self._read(deadline)
            if message.get("done"):
                return messages
            messages.append(message)

    def close(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                pass
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except (OSError, AttributeError):
                    pass
            self.proc = None
        if self.home:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None


# --------------------------------------------------------------------------- grading


def _can_drop_root() -> bool:
    """True when running as root and an unprivileged uid can still import Python's
    libraries (here the interpreter may live under /root, which no other uid can enter;
    then the grader stays root and relies on the audit hook to stop forks and signals)."""
    if os.geteuid() != 0:
        return False
    import stat

    import transformer_course

    for module in (os, torch, transformer_course):
        folder = Path(module.__file__).resolve().parent
        if not folder.stat().st_mode & stat.S_IROTH:
            return False
        for parent in (folder, *folder.parents):
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
    return True


def chapter_of(path: Path) -> str | None:
    """The chapter id a file's stem names, if it names one."""
    return path.stem if path.stem in chapters() else None


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Grader:
    """Grades submissions one after another with one worker process.

    Use as a context manager, or call :meth:`close`.
    """

    limits: Limits = field(default_factory=Limits)
    seed: int = HIDDEN_SEED
    worker: Worker = field(default_factory=Worker)

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.worker.close()

    def grade(self, path: Path | str, chapter: str | None = None) -> dict:
        """Grade one submission; returns Gradescope's results.json as a dict.

        Raises:
            GradingError: when the chapter is unknown or cannot be inferred.
        """
        start = time.perf_counter()
        path = Path(path)
        chapter = chapter or chapter_of(path)
        if chapter is None:
            raise GradingError(
                f"cannot tell the chapter from the file name {path.name!r}; pass --chapter "
                f"(one of: {', '.join(chapters())})")
        plans = plan_chapter(chapter, self.seed)
        sha = sha256_of(path)
        notes: list[str] = []
        try:
            program = read_submission(path)
        except SubmissionError as err:
            program, notes = None, [str(err)]
        results, flags, problems = self._run(program, plans, notes)
        return build_result(path, chapter, sha, self.seed, results, flags, notes, problems,
                            time.perf_counter() - start)

    def _timeout(self, plan: ExercisePlan) -> float:
        return max(self.limits.timeout_floor, self.limits.timeout_factor * plan.reference_seconds)

    def _run(self, program: Program | None, plans: list[ExercisePlan], notes: list[str]):
        flags: dict[str, str] = {}
        problems: list[dict] = []
        if program is not None:
            for cell in program.cells:
                if cell.error:
                    notes.append(f"{cell.label} has a syntax error ({cell.error}); what it "
                                 "defines was not graded")
        kept = program.to_json()["cells"] if program is not None else []
        if not kept:
            if program is not None:
                notes.append("no function, class or import was found in the submission")
            return [self._missing(p, program) for p in plans], flags, problems
        job_dir = Path(tempfile.mkdtemp(prefix="autograder-job-"))
        try:
            messages = self._submit(job_dir, program, kept, plans)
            status = {m["exercise"]: m for m in messages if "exercise" in m}
            for m in messages:
                if "probe" in m:
                    for label, detail in m["probe"]["excluded"].items():
                        where = "loading your code" if label == "*" else f"loading {label}"
                        notes.append(f"{detail} while {where}; it was left out")
                if "error" in m:
                    notes.append(f"grader error: {m['error']}")
            probe = _read_report(job_dir / "probe.json")
            problems = probe.get("problems", []) if isinstance(probe, dict) else []
            results = []
            for index, plan in enumerate(plans):
                message = status.get(index, {"status": "error", "detail": "no answer from the worker"})
                result, flag = self._judge(plan, program, message, job_dir, index)
                if flag:
                    flags[plan.exercise.name] = flag
                results.append(result)
            return results, flags, problems
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)

    def _submit(self, job_dir: Path, program: Program, kept: list[dict], plans) -> list[dict]:
        work = job_dir / "work"
        work.mkdir()
        uid = random.randrange(200_000, 2_000_000_000) if _can_drop_root() else None
        if uid is not None:
            os.chown(work, uid, uid)
            os.chmod(job_dir, 0o711)
        work.chmod(0o700)
        tensors: dict[str, Tensor] = {}
        job_exercises = []
        for index, plan in enumerate(plans):
            cases = [{"name": c.name, "args": pack(c.args, f"e{index}/c{i}", tensors),
                      "limit": numel_limit(want)}
                     for i, (c, want) in enumerate(zip(plan.cases, plan.expected, strict=True))]
            job_exercises.append({"name": plan.exercise.name, "cases": cases,
                                  "timeout": self._timeout(plan), "disable": plan.disable})
        save_tensors(tensors, job_dir / "inputs.safetensors")
        job = {
            "dir": str(job_dir), "work": str(work), "uid": uid, "cells": kept,
            "chapter": plans[0].exercise.chapter,
            "imports": imported_modules(program), "exercises": job_exercises,
            "load_timeout": self.limits.load_timeout, "memory_bytes": self.limits.memory_bytes,
            "file_bytes": self.limits.file_bytes,
        }
        budget = (self.limits.load_timeout * (len(kept) + 2)
                  + sum(e["timeout"] for e in job_exercises) + 60)
        for attempt in range(2):
            try:
                return self.worker.run(job, time.monotonic() + budget)
            except WorkerError as err:
                if attempt:
                    return [{"error": str(err)}]
        return []

    def _missing(self, plan: ExercisePlan, program: Program | None, why: str | None = None):
        name = plan.exercise.name
        if why is None:
            why = f"{name} was not found in the submission; define a function or class named {name}"
            if program is not None:
                broken = program.broken_cells_mentioning(name)
                if broken:
                    why = (f"{broken[0].label} has a syntax error ({broken[0].error}), so {name}, "
                           "which it defines, could not be graded")
        return _all_failed(plan, why)

    def _judge(self, plan: ExercisePlan, program: Program, message: dict, job_dir: Path,
               index: int) -> tuple[CheckResult, str | None]:
        ex = plan.exercise
        if message["status"] != "ok":
            kind = {"timeout": "took too long", "crashed": "crashed", "exit": "ended the process",
                    "load": "could not be loaded"}.get(message["status"], "could not be graded")
            return _all_failed(plan, f"{ex.name} {kind}: {message.get('detail', '')}"), None
        report = _read_report(job_dir / f"ex{index}.json")
        if not isinstance(report, dict):
            return _all_failed(plan, f"{ex.name}: the grader received no result ({report})"), None
        if report.get("missing"):
            return self._missing(plan, program), None
        entries = report.get("cases")
        entries = entries if isinstance(entries, list) else []
        try:
            tensors = load_tensors(job_dir / f"ex{index}.safetensors", 1 << 28)
        except Exception:  # noqa: BLE001 - a missing or corrupt file is a failed output
            tensors = {}
        outcomes, flag = [], None
        for number in range(len(plan.cases)):
            entry = entries[number] if number < len(entries) and isinstance(entries[number], dict) \
                else (entries[-1] if entries and isinstance(entries[-1], dict) else {})
            if entry.get("reference"):
                flag = str(entry["reference"])[:200]
            outcomes.append(_outcome(entry, tensors, number, plan.exercise.outputs))
        if flag:
            result = _all_failed(plan, f"{ex.name} uses the course's reference solution "
                                       f"({flag}); no credit. Write it yourself.")
            result.status = "reference"
            return result, flag
        result = judging.judge(ex, plan.cases, outcomes, plan.data,
                            lambda: _catalogue(plan, self.seed))
        return result, None


def _read_report(path: Path) -> Any:
    try:
        return load_json(path)
    except (OSError, ValueError) as err:
        return f"{type(err).__name__}"


def _outcome(entry: dict, tensors: dict[str, Tensor], number: int, names) -> Outcome:
    forbidden = [str(f) for f in entry.get("forbidden", []) if isinstance(f, str)][:10]
    if entry.get("not_implemented"):
        return Outcome(not_implemented=True, forbidden=forbidden)
    if entry.get("error") is not None or "error" in entry:
        return Outcome(error=str(entry.get("error"))[:2000], forbidden=forbidden)
    outputs = {}
    for name in names:
        value = tensors.get(f"c{number}/{name}")
        if value is None:
            return Outcome(error="no output was received for this case", forbidden=forbidden)
        outputs[name] = value
    return Outcome(outputs=outputs, forbidden=forbidden)


def _catalogue(plan: ExercisePlan, seed: int) -> dict[str, list]:
    """The mistakes' outputs on the plan's cases, from the cached per-seed catalogues."""
    visible = prepare.mistake_run(plan.exercise, VISIBLE_SEED)
    hidden = prepare.mistake_run(plan.exercise, seed) if seed != VISIBLE_SEED else {}
    hidden_cases, _ = prepare.reference_run(plan.exercise, seed)
    hidden_index = {f"hidden: {c.name}": i for i, c in enumerate(hidden_cases)}
    found: dict[str, list] = {}
    for mistake in plan.exercise.mistakes:
        row = []
        for case, case_seed in zip(plan.cases, plan.seeds, strict=True):
            if case_seed == VISIBLE_SEED:
                row.append(visible[mistake.name][len(row)] if len(row) < len(visible[mistake.name]) else None)
            else:
                row.append(hidden[mistake.name][hidden_index[case.name]])
        found[mistake.name] = row
    return found


def _all_failed(plan: ExercisePlan, why: str) -> CheckResult:
    return CheckResult(
        exercise=plan.exercise.name, chapter=plan.exercise.chapter, status="failed",
        cases=[CaseResult(c.name, False, why) for c in plan.cases],
        max_points=plan.exercise.points, note=why)


# --------------------------------------------------------------------------- results


def _score(result: CheckResult) -> float:
    return 0.0 if result.status == "reference" else round(result.score, 4)


def test_output(result: CheckResult) -> str:
    """The feedback text of one exercise."""
    if result.status == "reference" or (
        result.note and all(not c.passed and c.message == result.note for c in result.cases)
    ):
        return result.note  # one reason for every case: missing, timed out, crashed, ...
    lines = [result.headline()]
    lines += [f"Likely mistake: {hint.hint}" for hint in result.hints]
    if result.status == "failed":
        for case in result.cases:
            if case.passed:
                lines.append(f"  [ok]   {case.name}")
            else:
                extra = f" (matches the known mistake '{case.mistake}')" if case.mistake else ""
                lines.append(f"  [FAIL] {case.name}: {case.message}{extra}")
    return "\n".join(lines)


def build_result(path: Path, chapter: str, sha: str, seed: int, results: list[CheckResult],
                 flags: dict[str, str], notes: list[str], problems: list[dict],
                 seconds: float) -> dict:
    """Gradescope's results.json for one graded submission."""
    tests = []
    for result in results:
        score = _score(result)
        tests.append({
            "name": f"{result.exercise}: {len(result.cases)} test cases",
            "score": score,
            "max_score": result.max_points,
            "status": "passed" if result.passed and score == result.max_points else "failed",
            "output": test_output(result),
            "visibility": "visible",
            "extra_data": {"exercise": result.exercise, "status": result.status,
                           "passed_cases": result.n_passed, "cases": len(result.cases),
                           "mistakes": [h.name for h in result.hints]},
        })
    for problem in problems[:20]:
        notes.append(f"{problem.get('cell')}, line {problem.get('line')}: {problem.get('error')}")
    total = round(sum(t["score"] for t in tests), 4)
    maximum = sum(t["max_score"] for t in tests)
    summary = [f"{chapter}: {total:g} / {maximum:g} points"] + [f"Note: {n}" for n in notes]
    summary += [f"Flagged: {name} uses the reference solution ({where})" for name, where in flags.items()]
    return {
        "score": total,
        "max_score": maximum,
        "execution_time": round(seconds, 3),
        "output": "\n".join(summary),
        "visibility": "visible",
        "tests": tests,
        "extra_data": {
            "chapter": chapter, "submission": path.name, "sha256": sha,
            "grader_version": autograder.__version__, "seed": seed,
            "visible_seed": VISIBLE_SEED, "time_taken": round(seconds, 3),
            "flags": flags, "notes": notes, "torch": torch.__version__,
        },
    }
