"""Grading one submission: plan, run it in the worker, judge what came back.

The parent is the only trusted party. It builds every input and all the data that judging
needs (:mod:`autograder.plan`) itself, sends only the inputs to the worker
(:mod:`autograder.client`), reads back tensors from safetensors files (never unpickling
anything), and judges them with :func:`transformer_course.checks.judging.judge`, the
judgement of the notebooks' ``check`` (sampled tokens come back as tensors and are judged
by their distribution). :mod:`autograder.results` turns the verdicts into Gradescope's
result.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from autograder import GradingError
from autograder.client import Worker, WorkerError, can_drop_root
from autograder.plan import HIDDEN_SEED, ExercisePlan, mistake_outputs, plan_chapter
from autograder.reader import Program, SubmissionError, imported_modules, read_submission
from autograder.results import build_result
from autograder.wire import load_json, load_tensors, numel_limit, save_tensors
from transformer_course.checks.judging import judge
from transformer_course.checks.registry import chapters
from transformer_course.checks.results import CaseResult, CheckResult, Outcome, Status
from transformer_course.tensor_tree import flatten


@dataclass(frozen=True)
class Limits:
    """Confinement of student code. The wall-clock timeout of an exercise is
    ``max(timeout_floor, timeout_factor * reference seconds)``."""

    timeout_floor: float = 10.0
    timeout_factor: float = 50.0
    load_timeout: float = 20.0
    memory_bytes: int = 3 << 30
    file_bytes: int = 64 << 20


def chapter_of(path: Path) -> str | None:
    """The chapter id a file's stem names, if it names one."""
    return path.stem if path.stem in chapters() else None


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes (results name the submission they grade by it)."""
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
        uid = random.randrange(200_000, 2_000_000_000) if can_drop_root() else None
        if uid is not None:
            os.chown(work, uid, uid)
            os.chmod(job_dir, 0o711)
        work.chmod(0o700)
        tensors: dict[str, Tensor] = {}
        job_exercises = []
        for index, plan in enumerate(plans):
            cases = [{"args": flatten(c.args, tensors, f"e{index}/c{i}/"), "limit": numel_limit(want)}
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
        for _ in range(2):  # a worker that died is started afresh, once
            try:
                return self.worker.run(job, time.monotonic() + budget)
            except WorkerError as err:
                error = err
        return [{"error": str(error)}]

    def _missing(self, plan: ExercisePlan, program: Program | None) -> CheckResult:
        name = plan.exercise.name
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
        except Exception:  # a missing or corrupt file is a failed output
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
            result.status = Status.REFERENCE
            return result, flag
        result = judge(ex, plan.cases, outcomes, plan.data,
                            lambda: mistake_outputs(plan, self.seed))
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
    if "error" in entry:
        return Outcome(error=str(entry.get("error"))[:2000], forbidden=forbidden)
    outputs = {}
    for name in names:
        value = tensors.get(f"c{number}/{name}")
        if value is None:
            return Outcome(error="no output was received for this case", forbidden=forbidden)
        outputs[name] = value
    return Outcome(outputs=outputs, forbidden=forbidden)


def _all_failed(plan: ExercisePlan, why: str) -> CheckResult:
    return CheckResult(
        exercise=plan.exercise.name, chapter=plan.exercise.chapter, status=Status.FAILED,
        cases=[CaseResult(c.name, False, why) for c in plan.cases],
        max_points=plan.exercise.points, note=why)
