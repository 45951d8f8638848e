"""Grading one submission: plan, run it in the worker, judge what came back.

The parent is the only trusted party. It builds every input and all the data that judging
needs (:mod:`autograder.plan`) itself, sends only the inputs to the worker
(:mod:`autograder.client`), reads back tensors from safetensors files (never unpickling
anything), and judges them with :func:`transformer_course.checks.judging.judge`, the
judgement of the notebooks' ``check`` (sampled tokens come back as tensors and are judged
by their distribution). Forbidden built-ins are also looked for in the submission's
code (:mod:`autograder.forbidden`); the stricter of that and the child's report wins.
:mod:`autograder.results` turns the verdicts into Gradescope's result, and
``extra_data.sandbox`` records which confinement layers held (:mod:`autograder.isolation`).

Student code runs only in the sandbox: a :class:`Grader` refuses to start without it
unless it is made with ``unsafe_no_sandbox=True`` (``--unsafe-no-sandbox``, or
:data:`UNSAFE_NO_SANDBOX` for every grader of the process).
"""

from __future__ import annotations

import ast
import hashlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from autograder import GradingError, forbidden, isolation
from autograder.client import Worker, WorkerError, can_drop_root, remove_tree
from autograder.plan import HIDDEN_SEED, ExercisePlan, mistake_outputs, plan_chapter
from autograder.reader import Program, SubmissionError, imported_modules, read_submission
from autograder.results import build_result
from autograder.sandbox import functions_of, protected_paths
from autograder.view import build_view
from autograder.wire import check_probe, check_report, load_json, load_tensors, numel_limit, save_tensors
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


UNSAFE_NO_SANDBOX = False
"""The default of :attr:`Grader.unsafe_no_sandbox` (the command line's ``--unsafe-no-sandbox``)."""


@dataclass
class Grader:
    """Grades submissions one after another with one worker process.

    Use as a context manager, or call :meth:`close`.

    Raises:
        GradingError: on creation, when the sandbox cannot run here and
            ``unsafe_no_sandbox`` is not set.
    """

    limits: Limits = field(default_factory=Limits)
    seed: int = HIDDEN_SEED
    unsafe_no_sandbox: bool = field(default_factory=lambda: UNSAFE_NO_SANDBOX)
    worker: Worker = field(init=False)
    workers: int = 3
    """Workers kept running, one per chapter's view (the least recently used stops)."""

    def __post_init__(self) -> None:
        if not self.unsafe_no_sandbox:
            why = isolation.usable()
            if why is not None:
                raise GradingError(
                    f"the grader runs student code only in its sandbox, and {why}; run "
                    "`make setup` (it installs bubblewrap), or pass --unsafe-no-sandbox to grade "
                    "without it, trusting every submission")
        self._pool: dict[Path | None, Worker] = {}
        self.worker = self._worker(None)

    def _worker(self, view: Path | None) -> Worker:
        """The worker for ``view`` (a chapter's view: a batch that alternates chapters
        restarts no worker while at most :attr:`workers` chapters alternate)."""
        worker = self._pool.pop(view, None)
        if worker is None:
            worker = Worker(sandboxed=not self.unsafe_no_sandbox,
                            memory_bytes=self.limits.memory_bytes,
                            tmp_bytes=4 * self.limits.file_bytes)
        self._pool[view] = worker  # most recently used last
        while len(self._pool) > max(1, self.workers):
            self._pool.pop(next(iter(self._pool))).close()
        self.worker = worker
        return worker

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._pool.values():
            worker.close()

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
        self._layers: dict[str, bool] = {}
        try:
            results, flags, problems = self._run(program, plans, notes)
        except Exception as err:  # this submission fails; the grader goes on with the next
            why = f"the grader could not grade this submission ({type(err).__name__}: {str(err)[:300]})"
            results, flags, problems = [_all_failed(p, why) for p in plans], {}, []
            notes.append(why)
        result = build_result(path, chapter, sha, self.seed, results, flags, notes, problems,
                              time.perf_counter() - start)
        result.setdefault("extra_data", {})["sandbox"] = self._layers
        return result

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
        messages, job_dir = self._submit(program, kept, plans)
        try:
            status = {m["exercise"]: m for m in messages if "exercise" in m}
            for m in messages:
                if "probe" in m:
                    for label, detail in m["probe"]["excluded"].items():
                        where = "loading your code" if label == "*" else f"loading {label}"
                        notes.append(f"{detail} while {where}; it was left out")
                if "error" in m:
                    notes.append(f"grader error: {m['error']}")
            probe = _read_report(job_dir / "probe.json", check_probe) if job_dir else {}
            problems = probe.get("problems", []) if isinstance(probe, dict) else []
            filtered = [probe.get("seccomp")] if isinstance(probe, dict) else []
            statements = program.statements()
            results = []
            for index, plan in enumerate(plans):
                message = status.get(index, {"status": "error", "detail": "no answer from the worker"})
                result, flag, seen = self._judge(plan, program, message, job_dir, index, statements)
                filtered.append(seen)
                if flag:
                    flags[plan.exercise.name] = flag
                results.append(result)
            self._layers["seccomp"] = self._layers.get("seccomp", False) and all(
                f is True for f in filtered if f is not None) and any(f is True for f in filtered)
            return results, flags, problems
        finally:
            if job_dir is not None:
                remove_tree(job_dir.parent.parent / "in" / job_dir.name)
                remove_tree(job_dir)

    def _submit(self, program: Program, kept: list[dict], plans) -> tuple[list[dict], Path | None]:
        """Run the job in the worker; its messages and the host folder of its outputs."""
        view = None
        if not self.unsafe_no_sandbox:
            view = build_view(plans[0].exercise.chapter, _harness_references(plans))
        error: Exception | None = None
        for _ in range(2):  # a worker that died is started afresh, once
            try:
                self._worker(view).ensure(view)
                host_in, host_out, inner_in, inner_out, work = self.worker.job_folders()
                self._layers = dict(self.worker.layers)
                job = self._job(program, kept, plans, host_in, inner_in, inner_out, work)
                return self.worker.run(job, time.monotonic() + self._budget(job)), host_out
            except WorkerError as err:
                error = err
        return [{"error": str(error)}], None

    def _budget(self, job: dict) -> float:
        return (self.limits.load_timeout * (len(job["cells"]) + 2)
                + sum(e["timeout"] for e in job["exercises"]) + 60)

    def _job(self, program: Program, kept: list[dict], plans, host_in: Path, inner_in: str,
             inner_out: str, work: str) -> dict:
        uid = None
        if self.unsafe_no_sandbox and can_drop_root():
            uid = random.randrange(200_000, 2_000_000_000)
        tensors: dict[str, Tensor] = {}
        job_exercises = []
        for index, plan in enumerate(plans):
            cases = [{"args": flatten(c.args, tensors, f"e{index}/c{i}/"), "limit": numel_limit(want)}
                     for i, (c, want) in enumerate(zip(plan.cases, plan.expected, strict=True))]
            job_exercises.append({"name": plan.exercise.name, "cases": cases,
                                  "timeout": self._timeout(plan), "disable": plan.disable})
        save_tensors(tensors, host_in / "inputs.safetensors")
        (host_in / "inputs.safetensors").chmod(0o644)  # for the sandbox's unprivileged uid
        return {
            "inputs": f"{inner_in}/inputs.safetensors", "out": inner_out, "work": work,
            "uid": uid, "cells": kept, "chapter": plans[0].exercise.chapter,
            "protected": list(protected_paths(plans[0].exercise.chapter)),
            "imports": imported_modules(program), "exercises": job_exercises,
            "load_timeout": self.limits.load_timeout, "memory_bytes": self.limits.memory_bytes,
            "file_bytes": self.limits.file_bytes,
        }

    def _missing(self, plan: ExercisePlan, program: Program | None) -> CheckResult:
        name = plan.exercise.name
        why = f"{name} was not found in the submission; define a function or class named {name}"
        if program is not None:
            broken = program.broken_cells_mentioning(name)
            if broken:
                why = (f"{broken[0].label} has a syntax error ({broken[0].error}), so {name}, "
                       "which it defines, could not be graded")
        return _all_failed(plan, why)

    def _judge(self, plan: ExercisePlan, program: Program, message: dict, job_dir: Path | None,
               index: int, statements: list[ast.stmt]) -> tuple[CheckResult, str | None, bool | None]:
        """The exercise's result, the reference it used (if any) and whether its child
        reported the seccomp filter active (None when it reported nothing)."""
        ex = plan.exercise
        status = message.get("status")
        if status != "ok" or job_dir is None:
            kind = {"timeout": "took too long", "crashed": "crashed", "exit": "ended the process",
                    "load": "could not be loaded"}.get(str(status), "could not be graded")
            detail = str(message.get("detail", ""))[:500]
            return _all_failed(plan, f"{ex.name} {kind}: {detail}"), None, None
        report = _read_report(job_dir / f"ex{index}.json", check_report)
        if not isinstance(report, dict):
            return _all_failed(plan, f"{ex.name}: the grader received no result ({report})"), None, None
        if report.get("missing"):
            return self._missing(plan, program), None, report.get("seccomp")
        entries = report["cases"]
        try:
            tensors = load_tensors(job_dir / f"ex{index}.safetensors", 1 << 28)
        except Exception:  # a missing or corrupt file is a failed output
            tensors = {}
        found = forbidden.find(statements, ex.name, ex.forbidden)
        outcomes, flag = [], None
        for number in range(len(plan.cases)):
            entry = entries[number] if number < len(entries) else (entries[-1] if entries else {})
            if entry.get("reference"):
                flag = entry["reference"][:200]
            outcomes.append(_outcome(entry, tensors, number, plan.exercise.outputs, found))
        if flag:
            result = _all_failed(plan, f"{ex.name} uses the course's reference solution "
                                       f"({flag}); no credit. Write it yourself.")
            result.status = Status.REFERENCE
            return result, flag, report.get("seccomp")
        result = judge(ex, plan.cases, outcomes, plan.data,
                       lambda: mistake_outputs(plan, self.seed))
        return result, None, report.get("seccomp")


def _harness_references(plans: list[ExercisePlan]) -> frozenset[str]:
    """Exercises of the chapter whose reference some exercise's harness needs (never
    disabled for it), so the judge-free view keeps their code."""
    disabled = [{qualname for _, qualname in p.disable} for p in plans]
    return frozenset(p.exercise.name for p in plans if functions_of(p.exercise.reference)
                     and any(p.exercise.reference.__qualname__ not in d for d in disabled))


def _read_report(path: Path, check) -> Any:
    try:
        return check(load_json(path))
    except (OSError, ValueError) as err:
        return f"{type(err).__name__}: {str(err)[:200]}"


def _outcome(entry: dict, tensors: dict[str, Tensor], number: int, names,
             found: list[str]) -> Outcome:
    # the stricter wins: what the code shows counts when the child reported nothing
    forbidden = list(entry.get("forbidden", []))[:10] or found[:1]
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
