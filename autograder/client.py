"""The parent's side of the grading worker: start it, send it jobs, read its answers.

The worker (:mod:`autograder.worker`) is a long-lived ``python -I -m autograder.worker``
process with a clean environment; it answers each job with JSON lines on its stdout,
read here without buffering so that a deadline holds. When the grader runs as root, each
job runs under a fresh unprivileged uid (:func:`can_drop_root`).
"""

from __future__ import annotations

import json
import os
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


class WorkerError(Exception):
    """The worker stopped answering, or exited; it is restarted for the next job."""


class Worker:
    """A long-lived ``python -m autograder.worker`` process (see :mod:`autograder.worker`)."""

    START_TIMEOUT = 300.0  # torch import on a loaded machine

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.home: str | None = None
        self._buffer = b""  # bytes read past the last full line

    def _start(self) -> None:
        self.home = tempfile.mkdtemp(prefix="autograder-worker-")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.home, "TMPDIR": self.home,
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": self.home, "TRANSFORMER_COURSE_QUICK": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        stderr = open(os.path.join(self.home, "stderr.txt"), "wb")
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
