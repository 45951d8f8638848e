"""The OS sandbox around the grading worker: bubblewrap, plus cgroup limits.

The worker (:mod:`autograder.worker`) starts as
``sh -c 'join cgroups; exec bwrap ... python -I -m autograder.worker'``. Inside:

- new user, pid, mount, network, IPC and UTS namespaces and a new session; uid and gid
  65534 without capabilities, which outside is the caller's uid, or, when the grader runs
  as root, a fresh unprivileged uid (:func:`unprivileged_prefix`: bubblewrap runs as that
  uid; an interpreter installed where only root may enter, such as pyenv under
  ``/root``, is first bound into a private mount namespace where that folder is a
  world-readable tmpfs holding only the interpreter);
- a root of its own holding only ``/usr`` (and its ``/lib``, ``/bin`` links), the
  interpreter's installation, the virtual environment, ``/dev`` (null, zero, urandom),
  a fresh ``/proc`` of the new pid namespace, a size-limited tmpfs at ``/tmp`` (the
  working directories) and the job folders (inputs read-only, outputs writable by the
  worker only: :mod:`autograder.worker`); over the package's own folder, the
  judge-free view (:mod:`autograder.view`);
- the worker's cgroups (v1 ``memory`` and ``pids``, when the grader may create them)
  bound the whole sandbox's memory and number of tasks.

The seccomp filter (:mod:`autograder.seccomp`) is loaded by each grading child itself,
and the audit hook and resource limits (:mod:`autograder.sandbox`) stay as a second
layer. :func:`layers` says which are active; every result records it.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

SANDBOX_UID = 65534
CGROUP_ROOT = Path("/sys/fs/cgroup")
EXCHANGE = "/x"  # where the job folders appear inside the sandbox


class SandboxUnavailable(Exception):
    """bubblewrap is missing or cannot create namespaces here."""


def bwrap() -> str | None:
    """The ``bwrap`` executable, if installed."""
    return shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap",) if os.access(p, os.X_OK)), None)


@functools.cache
def _isolated_path() -> list[str]:
    """``sys.path`` of ``python -I`` (the worker) with this interpreter."""
    done = subprocess.run([sys.executable, "-I", "-c", "import sys; print(*sys.path, sep=chr(10))"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True, timeout=60)
    return [line for line in done.stdout.splitlines() if line]


def _python_binds() -> list[str]:
    """Folders the interpreter needs: its installation, the virtual environment, every
    link on the way to the executable, and the import path of ``python -I`` (the
    worker's: not this process's current folder, which on Gradescope is
    ``/autograder/source`` with the course's sources and every check's cases, nor
    PYTHONPATH).

    From a source tree (an editable install) the folders in or around the repository are
    left out (``solutions/``, ``tests/``, ``.git``; the view replaces the packages). From
    a copy installed in site-packages (Gradescope's venv) site-packages is bound like the
    rest of the environment, and the view is bound over the two packages in it.
    """
    from autograder.view import autograder_dir, package_dir

    ours = (package_dir(), autograder_dir())
    site = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    installed = all(p.parent in site for p in ours)
    repository = Path(os.path.commonpath(ours))

    def source(path: Path) -> bool:
        """In the repository, or holding part of it."""
        return not installed and (path.is_relative_to(repository)
                                  or any(p.is_relative_to(path) for p in ours))

    folders = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), *site}
    folders.update(Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib"))
    hop = Path(sys.executable).absolute()
    for _ in range(40):  # each link's folder (a venv made from another venv's python)
        folders.add(hop.parent.resolve())
        if not hop.is_symlink():
            break
        hop = (hop.parent / os.readlink(hop)).absolute()
    for entry in _isolated_path():
        path = Path(entry).resolve()
        if path.is_dir() and not source(path):
            folders.add(path)
    kept: list[Path] = []
    for folder in sorted(folders, key=lambda p: len(p.parts)):
        if folder.exists() and not any(folder.is_relative_to(k) for k in kept) \
                and (installed or not any(p.is_relative_to(folder) for p in ours)):
            kept.append(folder)
    return [str(k) for k in kept if not str(k).startswith("/usr/")]


def process_uid(pid: int) -> int:
    """The real uid of process ``pid``, as this (the host's) /proc shows it."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))


def closed_ancestor(path: Path) -> Path | None:
    """The highest folder above ``path`` that other users may not enter, if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & 0o001:
            return parent
    return None


def unprivileged_prefix(uid: int, staging: Path) -> list[str]:
    """A command prefix that runs the rest as ``uid`` (from root), in a private mount
    namespace where each folder the interpreter needs is reachable by that uid: a folder
    only root may enter above it (``/root``) becomes a tmpfs with the needed folders bound
    back in read-only. ``staging`` (empty, root's) holds the binds meanwhile."""
    needed = [(folder, closed) for folder in _python_binds()
              if (closed := closed_ancestor(Path(folder))) is not None]
    q = shlex.quote
    steps = []  # every bind first: a tmpfs over a closed folder hides what is below it
    for number, (folder, _) in enumerate(needed):
        steps += [f"mkdir -p {q(str(staging / str(number)))}",
                  f"mount --bind {q(folder)} {q(str(staging / str(number)))}"]
    for closed in dict.fromkeys(closed for _, closed in needed):
        steps.append(f"mount -t tmpfs -o mode=755 tmpfs {q(str(closed))}")
    for number, (folder, _) in enumerate(needed):
        steps += [f"mkdir -p {q(folder)}",
                  f"mount --bind -o ro {q(str(staging / str(number)))} {q(folder)}"]
    steps.append(f'exec setpriv --reuid={uid} --regid={uid} --clear-groups -- "$@"')
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
            " && ".join(steps), "sh"]


def command(view: Path, inputs: Path, outputs: Path, tmp_bytes: int) -> list[str]:
    """The bubblewrap command line that runs the worker on ``view``.

    Args:
        view: the judge-free view's root (``transformer_course/``, ``autograder/``).
        inputs, outputs: host folders bound at ``/x/in`` (read-only) and ``/x/out``.
        tmp_bytes: size of the tmpfs at ``/tmp``.
    """
    from autograder.view import autograder_dir, package_dir

    exe = bwrap()
    if exe is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    args = [exe, "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--ro-bind", "/usr", "/usr",
            # the tmpfs first: a venv or package under /tmp is bound onto it, not hidden by it
            "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    for link in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink(f"/{link}"):
            args += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            args += ["--ro-bind", f"/{link}", f"/{link}"]
    for path in ("/etc/ld.so.cache", "/etc/localtime"):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for folder in _python_binds():
        args += ["--ro-bind", folder, folder]
    args += ["--ro-bind", str(view / "transformer_course"), str(package_dir()),
             "--ro-bind", str(view / "autograder"), str(autograder_dir()),
             "--proc", "/proc", "--dev", "/dev",
             "--ro-bind", str(inputs), f"{EXCHANGE}/in", "--bind", str(outputs), f"{EXCHANGE}/out",
             "--chdir", "/tmp", "--clearenv"]
    return args


@functools.cache
def usable() -> str | None:
    """None when bubblewrap can build the sandbox here, else why not."""
    exe = bwrap()
    if exe is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        done = subprocess.run(
            [exe, "--unshare-user", "--uid", str(SANDBOX_UID), "--unshare-pid", "--unshare-net",
             "--unshare-ipc", "--die-with-parent", "--ro-bind", "/usr", "/usr",
             *[a for link in ("lib", "lib64", "bin") if os.path.islink(f"/{link}")
               for a in ("--symlink", os.readlink(f"/{link}"), f"/{link}")],
             "--proc", "/proc", "--dev", "/dev", "true"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap could not run: {err}"
    if done.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {done.stderr.decode(errors='replace').strip()}"
    return None


class Cgroups:
    """The worker's own v1 ``memory`` and ``pids`` cgroups, where this process may make
    them (as root, with the controllers mounted); :attr:`active` says which."""

    def __init__(self, name: str, memory_bytes: int, pids: int) -> None:
        self.paths: dict[str, Path] = {}
        for controller, limits in (("memory", {"memory.limit_in_bytes": memory_bytes,
                                               "memory.memsw.limit_in_bytes": memory_bytes}),
                                   ("pids", {"pids.max": pids})):
            folder = CGROUP_ROOT / controller / name
            try:
                folder.mkdir()
            except OSError:
                continue
            try:
                for file, value in limits.items():
                    try:
                        (folder / file).write_text(str(value))
                    except FileNotFoundError:
                        if file != "memory.memsw.limit_in_bytes":  # no swap accounting
                            raise
                self.paths[controller] = folder
            except OSError:
                folder.rmdir()

    @property
    def active(self) -> dict[str, bool]:
        return {"cgroup_memory": "memory" in self.paths, "cgroup_pids": "pids" in self.paths}

    def join_prefix(self) -> list[str]:
        """A shell prefix that moves itself into the cgroups, then execs the rest."""
        moves = " && ".join(f"echo $$ > {p / 'cgroup.procs'}" for p in self.paths.values())
        return ["/bin/sh", "-c", f'{moves + " && " if moves else ""}exec "$@"', "sh"]

    def remove(self) -> None:
        """Remove the cgroups once the sandbox's last task has left them (it may take a
        moment after the kill)."""
        for folder in self.paths.values():
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy: tasks still exiting
                    time.sleep(0.02)
        self.paths.clear()


def layers(inside: dict, sandboxed: bool, cgroups: Cgroups | None,
           host_uid: int) -> dict[str, bool]:
    """Which confinement layers hold, from what the worker saw inside (its ``ready``
    message), the uid the kernel shows for the sandbox's first process outside
    (``host_uid``) and what the parent set up."""
    found = {
        "bubblewrap": sandboxed,
        "user_namespace": sandboxed and inside.get("uid") == SANDBOX_UID,
        "unprivileged_uid": inside.get("uid") != 0 and host_uid != 0,
        "no_capabilities": set(str(inside.get("capabilities", "x"))) <= {"0"},
        "pid_namespace": sandboxed and inside.get("pid", 0) < 100,
        "no_network": inside.get("interfaces") in (["lo"], []),
        "judge_free_view": sandboxed,
        "worker_not_dumpable": inside.get("dumpable") is False,
        "seccomp": bool(inside.get("seccomp_supported")),
        "audit_hook": True,
        "rlimits": True,
    }
    found.update(cgroups.active if cgroups is not None else {"cgroup_memory": False, "cgroup_pids": False})
    return found
