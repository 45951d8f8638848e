"""The grading worker: a child process that imports torch once and forks, per job,
one confined grandchild per exercise.

The worker itself never runs student code. It reads jobs (one JSON line each) on stdin
and answers JSON lines on a private copy of stdout. For each job it first forks a probe
that loads the submission cell by cell (a cell that kills the process while loading is
found and left out), then one grandchild per exercise that disables the chapter's
reference solutions, loads the submission, runs the cases and writes the outputs as
safetensors plus a JSON status. The worker enforces the per-exercise wall-clock timeout,
kills the grandchild (and, under a separate uid, everything it left behind) and moves
finished output files out of reach of the next grandchild.

Run with ``python -I -m autograder.worker``; the parent drives it through
:mod:`autograder.client`.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import json
import linecache
import os
import select
import signal
import sys
import time
import types
from pathlib import Path

PREIMPORT = frozenset({
    "torch", "numpy", "math", "matplotlib", "tqdm", "transformer_course", "collections",
    "itertools", "functools", "dataclasses", "typing", "random", "re", "json", "string",
    "unicodedata", "copy", "heapq", "statistics", "abc", "enum", "warnings", "einops",
    "time", "pathlib", "operator", "__future__",
})
PROGRESS = "progress.txt"


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # library prints must not corrupt the protocol
    import safetensors.torch  # noqa: F401 - imported before any confinement
    import torch

    torch.set_num_threads(1)
    from transformer_course.checks import registry, running

    registry.exercises()  # imports every chapter's checks and references
    state = {"running": running}
    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            _handle(job, proto, state)
        except Exception as err:  # reported, the worker survives
            proto.write(json.dumps({"error": f"{type(err).__name__}: {err}"}) + "\n")
        proto.write(json.dumps({"done": True}) + "\n")


def _handle(job: dict, proto, state: dict) -> None:
    work = Path(job["work"])
    _preimport(job.get("imports", []))
    job["compiled"] = _compile(job["cells"])  # once per job; every grandchild runs it
    excluded: dict[str, str] = {}
    labels = [c["label"] for c in job["cells"]]
    for _ in range(len(labels) + 1):  # probe until the submission loads in one piece
        status, detail = _fork_and_wait(job, None, excluded, state, job["load_timeout"])
        if status == "ok":
            break
        culprit = _read_progress(work)
        if culprit is None or culprit in excluded:
            excluded["*"] = detail
            break
        excluded[culprit] = detail
    proto.write(json.dumps({"probe": {"excluded": excluded}}) + "\n")
    _secure(work, Path(job["dir"]), ["probe.json"])
    for index, exercise in enumerate(job["exercises"]):
        if "*" in excluded:
            status, detail = "load", excluded["*"]
        else:
            for stale in (f"ex{index}.json", f"ex{index}.safetensors"):
                _remove(work / stale)
            status, detail = _fork_and_wait(job, index, excluded, state, exercise["timeout"])
            if status == "ok" and not (work / f"ex{index}.json").is_file():
                status, detail = "exit", ("the process ended before reporting a result "
                                          "(os._exit or sys.exit in your code?)")
        _secure(work, Path(job["dir"]), [f"ex{index}.json", f"ex{index}.safetensors"])
        proto.write(json.dumps({"exercise": index, "status": status, "detail": detail}) + "\n")


def _preimport(modules: list[str]) -> None:
    import importlib

    for name in modules:
        if name.split(".")[0] in PREIMPORT:
            parent = name.rpartition(".")[0]
            if parent and parent in sys.modules and not hasattr(sys.modules[parent], "__path__"):
                continue  # ``from module import name``: name is not a submodule
            try:
                importlib.import_module(name)
            except Exception:  # the grandchild reports it
                pass


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _secure(work: Path, dest: Path, names: list[str]) -> None:
    """Move finished outputs out of the work directory (only regular files)."""
    for name in names:
        src = work / name
        try:
            if src.is_symlink() or not src.is_file():
                _remove(src)
                continue
            os.replace(src, dest / name)
        except OSError:
            pass


def _read_progress(work: Path) -> str | None:
    try:
        text = (work / PROGRESS).read_text(errors="replace")[:200].strip()
    except OSError:
        return None
    return text or None


def _fork_and_wait(job: dict, index: int | None, excluded: dict, state: dict,
                   timeout: float) -> tuple[str, str]:
    """Run a grandchild (the probe when ``index`` is None); return (status, detail)."""
    work = Path(job["work"])
    _remove(work / PROGRESS)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # grandchild: never returns
        code = 0
        try:
            _grandchild(job, index, excluded, state, timeout)
        except BaseException:
            code = 70
        os._exit(code)
    uid = job.get("uid")
    start = time.monotonic()
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        pidfd = None
    status = None
    while status is None:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            break
        if pidfd is not None:
            select.select([pidfd], [], [], left)
        else:
            time.sleep(min(left, 0.01))
        done, status_code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = status_code
    if pidfd is not None:
        os.close(pidfd)
    if status is None:
        _kill(pid, uid)
        os.waitpid(pid, 0)
        return "timeout", f"stopped after {timeout:.1f} s (wall clock)"
    _sweep(uid)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        reason = {"SIGXCPU": "it used up its CPU time limit", "SIGSEGV": "segmentation fault",
                  "SIGKILL": "it was killed (out of memory or time)",
                  "SIGXFSZ": "it wrote a file larger than the limit"}.get(name, "")
        return "crashed", f"the process died with {name}" + (f" ({reason})" if reason else "")
    code = os.WEXITSTATUS(status)
    if code != 0:
        return "exit", f"the process ended with exit code {code} (sys.exit or os._exit in your code?)"
    return "ok", ""


def _kill(pid: int, uid: int | None) -> None:
    for target in (pid, -pid):
        try:
            os.kill(target, signal.SIGKILL) if target > 0 else os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    _sweep(uid)


def _sweep(uid: int | None) -> None:
    """Kill every process left under the job's uid (nothing may outlive a grade)."""
    if uid is None:
        return
    killer = os.fork()
    if killer == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal, itself last
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(killer, 0)


# --------------------------------------------------------------------------- grandchild


def _grandchild(job: dict, index: int | None, excluded: dict, state: dict, timeout: float) -> None:
    os.setpgid(0, 0)
    work = job["work"]
    out = os.open(os.path.join(work, "output.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for fd in (1, 2):
        os.dup2(out, fd)
    os.close(out)
    os.closerange(3, 1024)  # the protocol pipe and anything else the worker holds
    os.chdir(work)
    from safetensors import safe_open
    from safetensors.torch import save_file
    from torch import Tensor

    from autograder import sandbox

    cases = []
    if index is not None:
        exercise = job["exercises"][index]
        from transformer_course.tensor_tree import unflatten

        prefix = f"e{index}/"
        with safe_open(os.path.join(job["dir"], "inputs.safetensors"), "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
        cases = [(unflatten(c["args"], tensors), c["limit"]) for c in exercise["cases"]]
        del tensors
    sandbox.set_limits(timeout, job["memory_bytes"], job["file_bytes"], job.get("uid"))
    if index is not None:
        for module_name, qualname in exercise["disable"]:
            sandbox.disable_reference(module_name, qualname)
    sandbox.install_audit_hook(work, sandbox.protected_paths(job["chapter"]))
    linecache.clearcache()
    write_json = json.dumps
    module, problems = _load(job["compiled"], excluded, work)
    if index is None:  # the probe reports what failed to load; every grandchild sees the same
        with open("probe.json", "w") as f:
            f.write(write_json({"problems": problems}))
        return
    running = state["running"]
    from transformer_course.checks.registry import get

    report: dict = {"cases": []}
    obj = getattr(module, exercise["name"], None)
    if obj is None:
        report["missing"] = True
    else:
        spec = get(exercise["name"])
        saved: dict[str, Tensor] = {}
        for number, (args, limit) in enumerate(cases):
            entry = _run_case(running, spec, obj, args, limit, sandbox)
            for key, value in entry.pop("outputs", {}).items():
                saved[f"c{number}/{key}"] = value
            report["cases"].append(entry)
            if entry.get("not_implemented") or entry.get("reference"):
                break  # every remaining case fails the same way
        save_file(saved, f"ex{index}.safetensors")
    with open(f"ex{index}.json", "w") as f:
        f.write(write_json(report))


def _run_case(running, spec, obj, args, limit: int, sandbox) -> dict:
    """One case in the confined process: outputs (plain tensors) and what went wrong."""
    import torch
    from torch import Tensor, nn

    from transformer_course.checks.exercise import Case

    def checked_run(impl, call_args):
        raw = spec.run(impl, call_args)
        values = [raw] if len(spec.outputs) == 1 else raw
        if isinstance(values, (tuple, list)):
            for name, value in zip(spec.outputs, values, strict=False):
                kind = type(value)
                if isinstance(value, Tensor) and kind is not Tensor and kind is not nn.Parameter:
                    raise running.OutputError(
                        f"'{name}' is a {kind.__name__} (a subclass of torch.Tensor); "
                        "return a plain torch.Tensor")
                if kind in (Tensor, nn.Parameter) and value.numel() > limit:
                    raise running.OutputError(
                        f"'{name}' has shape {tuple(value.shape)}, far larger than the expected "
                        "output; it was not compared")
        return raw

    guarded = dataclasses.replace(spec, run=checked_run)
    entry: dict = {}
    try:
        outcome = running.execute(guarded, obj, Case("case", args))
    except sandbox.ReferenceSolutionUsed as err:
        return {"reference": str(err), "error": "called the course's reference solution"}
    except SystemExit as err:
        return {"error": f"called sys.exit({err.code!r})"}
    except BaseException as err:  # KeyboardInterrupt, GeneratorExit, ...
        return {"error": f"raised {type(err).__name__}"}
    entry["forbidden"] = list(outcome.forbidden)
    if sandbox.USED:
        entry["reference"] = sandbox.USED[0]
    if outcome.not_implemented:
        entry["not_implemented"] = True
    elif outcome.error is not None:
        entry["error"] = outcome.error[:2000]
    else:
        outputs = {}
        for key, value in (outcome.outputs or {}).items():
            if type(value) is not torch.Tensor:
                entry["error"] = f"'{key}' is not a plain tensor"
                return entry
            outputs[key] = value.detach().contiguous().clone()
        entry["outputs"] = outputs
    return entry


def _compile(cells: list[dict]) -> list[tuple[str, list]]:
    """``[(label, [(line, code), ...]), ...]``: the kept statements, compiled (compiling
    runs nothing, so the worker does it once for all the job's grandchildren)."""
    compiled = []
    for cell in cells:
        filename = f"<{cell['label']}>"
        linecache.cache[filename] = (len(cell["source"]), None,
                                     cell["source"].splitlines(keepends=True), filename)
        body = ast.parse(cell["source"]).body
        codes = []
        for i in cell["keep"]:
            node = body[i]
            try:
                codes.append((node.lineno, compile(ast.Module(body=[node], type_ignores=[]),
                                                   filename, "exec")))
            except (SyntaxError, ValueError) as err:  # e.g. 'return' outside a function
                codes.append((node.lineno, f"SyntaxError: {err}"))
        compiled.append((cell["label"], codes))
    return compiled


def _load(compiled: list, excluded: dict, work: str):
    """Execute the kept statements cell by cell into a fresh module."""
    module = types.ModuleType("submission")
    module.__dict__["__builtins__"] = builtins
    module.__file__ = os.path.join(work, "submission.py")
    sys.modules["submission"] = module
    problems = []
    progress = os.open(PROGRESS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for label, codes in compiled:
        if label in excluded:
            continue
        os.lseek(progress, 0, 0)
        os.ftruncate(progress, 0)
        os.write(progress, label.encode())
        for line, code in codes:
            if isinstance(code, str):
                problems.append({"cell": label, "line": line, "error": code[:500]})
                continue
            try:
                exec(code, module.__dict__)  # confined student code
            except BaseException as err:  # costs only this statement
                detail = "called sys.exit()" if isinstance(err, SystemExit) else (
                    f"{type(err).__name__}: {err}")
                problems.append({"cell": label, "line": line, "error": detail[:500]})
    os.close(progress)
    return module, problems


if __name__ == "__main__":
    main()
