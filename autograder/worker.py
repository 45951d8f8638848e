"""The grading worker: a child process that imports torch once and forks, per job,
one confined grandchild per exercise.

The worker itself never runs student code; normally it runs inside the bubblewrap
sandbox (:mod:`autograder.isolation`), on the judge-free view of the package
(:mod:`autograder.view`). It reads jobs (one JSON line each) on stdin and answers JSON
lines on a private copy of stdout. For each job it first forks a probe that loads the
submission cell by cell (a cell that kills the process while loading is found and left
out), then one grandchild per exercise that disables the chapter's reference solutions,
loads the submission, runs the cases and writes the outputs as safetensors plus a JSON
status.

A grandchild never names a file the worker later reads: the worker creates its output
and progress files itself (``O_CREAT | O_EXCL | O_NOFOLLOW``) and hands over only the
open descriptors, with ``/dev/null`` as stdin, stdout and stderr and every other
inherited descriptor closed; while it runs, the output folder is read-only and finished
files are ``0400`` (the seccomp filter refuses ``chmod``). Its working directory is
fresh and is wiped after it. The worker is not dumpable, so a grandchild cannot reach
its ``/proc`` entries (its stdin, its memory), and the filter lets a grandchild signal
only itself. The worker enforces the per-exercise wall-clock timeout and kills the
grandchild (and, under a separate uid, everything it left behind).

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
PROGRESS = "progress"
_CREATE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # library prints must not corrupt the protocol
    _not_dumpable()
    if os.environ.get("AUTOGRADER_SANDBOX") == "1":  # the sandbox's own tmpfs folders
        for folder in ("/dev/shm", "/dev"):  # no place where one child leaves files for the next
            os.chmod(folder, 0o555)
    import safetensors.torch  # noqa: F401 - imported before any confinement
    import torch

    torch.set_num_threads(1)
    from autograder import seccomp
    from transformer_course.checks import registry, running

    registry.exercises()  # imports every chapter's checks (judge-free in the sandbox)
    state = {"running": running}
    proto.write(json.dumps({"ready": True, "inside": _inside(seccomp)}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            _handle(job, proto, state)
        except Exception as err:  # reported, the worker survives
            proto.write(json.dumps({"error": f"{type(err).__name__}: {err}"}) + "\n")
        proto.write(json.dumps({"done": True}) + "\n")


def _not_dumpable() -> None:
    """No ptrace-level access to this process (its /proc fds and memory) for a grandchild."""
    import ctypes

    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0


def _inside(seccomp) -> dict:
    """What the worker sees of its confinement (the client records it)."""
    import socket

    try:
        interfaces = [name for _, name in socket.if_nameindex()]
    except OSError:
        interfaces = []
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    return {"uid": os.getuid(), "pid": os.getpid(), "interfaces": interfaces,
            "capabilities": status.get("CapEff", "").strip(),
            "dumpable": _dumpable(), "seccomp_supported": seccomp.supported()}


def _dumpable() -> bool:
    import ctypes

    return bool(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE


def _handle(job: dict, proto, state: dict) -> None:
    out = Path(job["out"])
    _preimport(job.get("imports", []))
    job["compiled"] = _compile(job["cells"])  # once per job; every grandchild runs it
    excluded: dict[str, str] = {}
    labels = [c["label"] for c in job["cells"]]
    for _ in range(len(labels) + 1):  # probe until the submission loads in one piece
        status, detail = _fork_and_wait(job, None, excluded, state, job["load_timeout"])
        if status == "ok":
            break
        culprit = state.pop("progress", None)
        if culprit is None or culprit in excluded:
            excluded["*"] = detail
            break
        excluded[culprit] = detail
    proto.write(json.dumps({"probe": {"excluded": excluded}}) + "\n")
    for index, exercise in enumerate(job["exercises"]):
        if "*" in excluded:
            status, detail = "load", excluded["*"]
        else:
            status, detail = _fork_and_wait(job, index, excluded, state, exercise["timeout"])
            if status == "ok" and not os.lstat(out / f"ex{index}.json").st_size:
                status, detail = "exit", ("the process ended before reporting a result "
                                          "(os._exit or sys.exit in your code?)")
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


def _outputs(index: int | None) -> list[str]:
    return ["probe.json"] if index is None else [f"ex{index}.json", f"ex{index}.safetensors"]


def _wipe(path: Path) -> None:
    """Remove a folder a grandchild wrote in, whatever modes and links it left (links
    are removed, never followed)."""
    try:
        os.chmod(path, 0o700, follow_symlinks=False)
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    except OSError:
        entries = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _wipe(Path(entry.path))
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _read_progress(fd: int) -> str | None:
    """The cell the grandchild was loading, from the worker's own descriptor."""
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return text or None


def _fork_and_wait(job: dict, index: int | None, excluded: dict, state: dict,
                   timeout: float) -> tuple[str, str]:
    """Run a grandchild (the probe when ``index`` is None); return (status, detail)."""
    work, out = Path(job["work"]), Path(job["out"])
    _wipe(work)
    os.mkdir(work, 0o700)
    if job.get("uid") is not None:
        os.chown(work, job["uid"], job["uid"])
    for name in (*_outputs(index), PROGRESS):  # an earlier probe's (the worker's own files)
        try:
            os.unlink(out / name)
        except FileNotFoundError:
            pass
    fds = [os.open(out / name, _CREATE | os.O_WRONLY, 0o600) for name in _outputs(index)]
    progress = os.open(out / PROGRESS, _CREATE | os.O_RDWR, 0o600)
    if job.get("uid") is not None:
        for fd in (*fds, progress):
            os.fchown(fd, job["uid"], job["uid"])
    os.chmod(out, 0o500)  # nothing new appears beside the outputs while it runs
    os.chmod(work.parent, 0o555)  # nor beside its working directory
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # grandchild: never returns
        code = 0
        try:
            _grandchild(job, index, excluded, state, timeout, [*fds, progress])
        except BaseException:
            code = 70
        os._exit(code)
    for fd in fds:
        os.close(fd)
    try:
        return _wait(job, pid, timeout)
    finally:
        state["progress"] = _read_progress(progress)
        os.close(progress)
        os.chmod(out, 0o700)
        os.chmod(work.parent, 0o755)
        os.unlink(out / PROGRESS)
        for name in _outputs(index):
            os.chmod(out / name, 0o400, follow_symlinks=False)
        _wipe(work)


def _wait(job: dict, pid: int, timeout: float) -> tuple[str, str]:
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


def _grandchild(job: dict, index: int | None, excluded: dict, state: dict, timeout: float,
                fds: list[int]) -> None:
    os.setpgid(0, 0)
    work = job["work"]
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # never the worker's job pipe
        os.dup2(null, fd)
    kept = []
    for number, fd in enumerate(fds):  # the worker's descriptors, at 3, 4, ...
        os.dup2(fd, 3 + number, inheritable=False)
        kept.append(3 + number)
    os.closerange(3 + len(fds), 1 << 16)  # the protocol pipe and anything else
    *outputs, progress = kept
    os.chdir(work)
    from safetensors import safe_open
    from torch import Tensor

    from autograder import sandbox

    cases = []
    if index is not None:
        exercise = job["exercises"][index]
        from transformer_course.tensor_tree import unflatten

        prefix = f"e{index}/"
        with safe_open(job["inputs"], "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
        cases = [(unflatten(c["args"], tensors), c["limit"]) for c in exercise["cases"]]
        del tensors
    from safetensors.torch import save

    from autograder import seccomp

    sandbox.set_limits(timeout, job["memory_bytes"], job["file_bytes"], job.get("uid"))
    if index is not None:
        for module_name, qualname in exercise["disable"]:
            sandbox.disable_reference(module_name, qualname)
    protected = tuple(job["protected"])
    if seccomp.supported():
        seccomp.install()  # before the audit hook, which refuses ctypes
    filtered = seccomp.active()
    sandbox.install_audit_hook(work, protected)
    linecache.clearcache()
    write_json, write = json.dumps, _write_all
    module, problems = _load(job["compiled"], excluded, work, progress)
    if index is None:  # the probe reports what failed to load; every grandchild sees the same
        write(outputs[0], write_json({"problems": problems, "seccomp": filtered}).encode())
        return
    running = state["running"]
    from transformer_course.checks.registry import get

    report: dict = {"cases": [], "seccomp": filtered}
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
        write(outputs[1], save(saved))
    write(outputs[0], write_json(report).encode())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
            except (SyntaxError, ValueError, RecursionError, MemoryError) as err:  # top-level return
                codes.append((node.lineno, f"SyntaxError: {err}"))
        compiled.append((cell["label"], codes))
    return compiled


def _load(compiled: list, excluded: dict, work: str, progress: int):
    """Execute the kept statements cell by cell into a fresh module."""
    module = types.ModuleType("submission")
    module.__dict__["__builtins__"] = builtins
    module.__file__ = os.path.join(work, "submission.py")
    sys.modules["submission"] = module
    problems = []
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
    return module, problems


if __name__ == "__main__":
    main()
