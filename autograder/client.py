"""The parent's side of the grading worker: start it, send it jobs, read its answers.

The worker (:mod:`autograder.worker`) is a long-lived ``python -I -m autograder.worker``
process with a clean environment; it answers each job with JSON lines on its stdout,
read here without buffering so that a deadline holds, each line size-limited and
schema-checked. Normally the worker runs in the bubblewrap sandbox
(:mod:`autograder.isolation`) on the judge-free view of the chapter it grades
(:mod:`autograder.view`), and is restarted when the chapter changes. Without the sandbox
(``--unsafe-no-sandbox``) and as root, each job runs under a fresh unprivileged uid when
the interpreter allows it (:func:`can_drop_root`).
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import transformer_course
from autograder import isolation

MAX_LINE = 1 << 20  # bytes of one protocol message


class WorkerError(Exception):
    """The worker stopped answering, or exited; it is restarted for the next job."""


class Worker:
    """A long-lived ``python -m autograder.worker`` process (see :mod:`autograder.worker`)."""

    START_TIMEOUT = 300.0  # torch import on a loaded machine

    def __init__(self, sandboxed: bool = True, memory_bytes: int = 3 << 30,
                 tmp_bytes: int = 256 << 20) -> None:
        self.sandboxed = sandboxed
        self.memory_bytes, self.tmp_bytes = memory_bytes, tmp_bytes
        self.proc: subprocess.Popen | None = None
        self.home: str | None = None
        self.view: Path | None = None
        self.cgroups: isolation.Cgroups | None = None
        self.layers: dict[str, bool] = {}
        self.host_uid = os.geteuid()  # who the sandbox's processes are outside it
        self._buffer = b""  # bytes read past the last full line
        self._jobs = 0

    def _start(self, view: Path | None) -> None:
        self.home = tempfile.mkdtemp(prefix="autograder-worker-")
        os.chmod(self.home, 0o755)
        for name in ("in", "out", "tmp"):
            os.mkdir(os.path.join(self.home, name), 0o755)
        inner_tmp = "/tmp" if self.sandboxed else os.path.join(self.home, "tmp")
        env = {
            "PATH": "/usr/bin:/bin", "HOME": inner_tmp, "TMPDIR": inner_tmp,
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": inner_tmp, "TRANSFORMER_COURSE_QUICK": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        argv = [sys.executable, "-I", "-m", "autograder.worker"]
        self.cgroups = None
        self.host_uid = os.geteuid()
        prefix: list[str] = []
        if self.sandboxed and self.host_uid == 0:  # never root: a fresh unprivileged uid
            self.host_uid = random.randrange(200_000, 2_000_000_000)
            os.chown(os.path.join(self.home, "out"), self.host_uid, self.host_uid)
            prefix = isolation.unprivileged_prefix(self.host_uid, Path(self.home, "mnt"))
        if self.sandboxed:
            assert view is not None
            self.cgroups = isolation.Cgroups(os.path.basename(self.home),
                                             self.memory_bytes + (1 << 30), 64)
            setenv = [a for key, value in {**env, "AUTOGRADER_SANDBOX": "1"}.items()
                      for a in ("--setenv", key, value)]
            argv = (self.cgroups.join_prefix() + prefix
                    + isolation.command(view, Path(self.home, "in"), Path(self.home, "out"),
                                        self.tmp_bytes)
                    + setenv + ["--", *argv])
        stderr = open(os.path.join(self.home, "stderr.txt"), "wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            cwd=self.home, env=env, start_new_session=True)
        stderr.close()
        self.view = view
        self._buffer = b""
        message = self._read(time.monotonic() + self.START_TIMEOUT)
        if not message.get("ready") or not isinstance(message.get("inside"), dict):
            raise WorkerError(f"the grading worker did not start: {str(message)[:500]}")
        self.layers = isolation.layers(message["inside"], self.sandboxed, self.cgroups,
                                       isolation.process_uid(self.proc.pid))

    def job_folders(self) -> tuple[Path, Path, str, str, str]:
        """A new job's host folders for inputs and outputs, and the paths the worker sees
        for them and for the working directory: ``(in, out, inner in, inner out, work)``."""
        assert self.home is not None
        self._jobs += 1
        name = f"job{self._jobs}"
        host_in, host_out = Path(self.home, "in", name), Path(self.home, "out", name)
        host_in.mkdir(mode=0o755)
        host_out.mkdir(mode=0o700)
        if self.host_uid != os.geteuid():
            os.chown(host_out, self.host_uid, self.host_uid)
        if self.sandboxed:
            inner = isolation.EXCHANGE
            return host_in, host_out, f"{inner}/in/{name}", f"{inner}/out/{name}", "/tmp/work"
        return host_in, host_out, str(host_in), str(host_out), str(Path(self.home, "tmp", "work"))

    def ensure(self, view: Path | None) -> None:
        """A running worker on ``view`` (restarted when the chapter's view changes)."""
        if self.proc is not None and (self.proc.poll() is not None or view != self.view):
            self.close()
        if self.proc is None:
            self._start(view)

    def _read(self, deadline: float) -> dict:
        """The next JSON line from the worker (raw reads: no hidden buffering)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                self.close()
                raise WorkerError("the grading worker sent a message larger than the limit")
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
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            self.close()
            raise WorkerError("the grading worker sent a message that is not a JSON object")
        return message

    def run(self, job: dict, deadline: float) -> list[dict]:
        """Send a job and collect the worker's messages up to ``done`` (call
        :meth:`ensure` first)."""
        if self.proc is None or self.proc.poll() is not None:
            raise WorkerError("the grading worker is not running")
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
        if self.cgroups is not None:
            self.cgroups.remove()
            self.cgroups = None
        if self.home:
            remove_tree(Path(self.home))
            self.home = None


def remove_tree(path: Path) -> None:
    """Remove a folder the worker wrote in, restoring the modes it narrowed (links are
    removed, never followed)."""
    for folder, dirs, _ in os.walk(path):
        for name in dirs:
            try:
                os.chmod(os.path.join(folder, name), 0o700, follow_symlinks=False)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


def can_drop_root() -> bool:
    """True when running as root and an unprivileged uid can still import Python's
    libraries. When it cannot (an interpreter installed in a folder only root may
    enter), the grader stays root and relies on the audit hook to stop forks and
    signals."""
    if os.geteuid() != 0:
        return False
    for module in (os, torch, transformer_course):
        folder = Path(module.__file__).resolve().parent
        if not folder.stat().st_mode & stat.S_IROTH:
            return False
        for parent in (folder, *folder.parents):
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
    return True
