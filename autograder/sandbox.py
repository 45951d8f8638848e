"""Confinement of a grading child process, applied after fork and before any student code.

Layers, each a backstop for the others:
- resource limits (CPU time, address space, processes, file size, no core dumps);
- a different user id when the grader runs as root (root ignores the process limit and
  could signal the grader; a fresh uid cannot);
- a runtime audit hook (``sys.addaudithook``; it cannot be removed) that refuses to
  open the reference and grader sources, to write outside the working directory, to
  start processes, to open sockets, to call into C through ctypes, to signal other
  processes and to walk the garbage collector (which would reach the hook itself);
- the reference solutions of the chapter being graded are disabled in place, so no
  path to them (an import, a subclass, the registry) computes anything.
"""

from __future__ import annotations

import os
import resource
import sys
import types
from typing import Any

_PROCESS_EVENTS = frozenset({
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "subprocess.Popen", "os.startfile", "pty.spawn", "resource.setrlimit", "resource.prlimit",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.addaudithook",
    "os.setuid", "os.setgid",
})
_PATH_EVENTS = {  # event -> indices of the arguments that are paths being changed
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
    "os.replace": (0, 1), "os.chmod": (0,), "os.chown": (0,), "os.link": (0, 1),
    "os.symlink": (1,), "os.truncate": (0,), "os.utime": (0,), "shutil.rmtree": (0,),
    "os.chflags": (0,), "os.lchown": (0,), "os.lchmod": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class ReferenceSolutionUsed(BaseException):  # reads well in a report
    """Raised by a disabled reference object. A BaseException, so that a student's
    ``except Exception`` does not hide it."""


USED: list[str] = []


def set_limits(cpu_seconds: float, memory_bytes: int, file_bytes: int, uid: int | None) -> None:
    """Resource limits for this process, then drop to ``uid`` (when root)."""
    cpu = int(cpu_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (32, 32))
    with open("/proc/self/statm") as f:  # pages of address space already in use (torch)
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + memory_bytes, used + memory_bytes))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def install_audit_hook(work_dir: str, protected: tuple[str, ...]) -> None:
    """Refuse dangerous operations from now on in this process (see module docstring).

    Args:
        work_dir: the only directory the process may write in.
        protected: directories and files that may not be opened at all.
    """
    realpath, fsdecode, getpid = os.path.realpath, os.fsdecode, os.getpid
    work = realpath(work_dir).rstrip("/") + "/"
    protected = tuple(realpath(p) for p in protected)
    own_proc = (f"/proc/{getpid()}/", "/proc/self/", "/proc/thread-self/")
    write_flags = _WRITE_FLAGS
    process_events, path_events = _PROCESS_EVENTS, dict(_PATH_EVENTS)

    def is_protected(path: str) -> bool:
        return any(path == p or path.startswith(p + "/") or (p.endswith(".cpython") and path.startswith(p))
                   for p in protected) or (
            path.startswith("/proc/") and not path.startswith(own_proc)
        )

    def resolve(path) -> str:
        return realpath(fsdecode(path))

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or path is None:
                return
            real = resolve(path)
            if is_protected(real):
                raise PermissionError(f"the grader does not let submissions open {path}")
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writing and not (real + "/").startswith(work) and real != "/dev/null":
                raise PermissionError(f"submissions may only write files in their working "
                                      f"directory, not {path}")
        elif event in process_events or event.startswith(("socket.", "ctypes.")):
            raise PermissionError(f"the grader does not let submissions use {event}")
        elif event in ("os.kill", "os.killpg") and args[0] not in (0, getpid()):
            raise PermissionError(f"the grader does not let submissions use {event}")
        elif event in path_events:
            for index in path_events[event]:
                if index < len(args) and isinstance(args[index], (str, bytes, os.PathLike)):
                    if not (resolve(args[index]) + "/").startswith(work):
                        raise PermissionError(f"submissions may only change files in their "
                                              f"working directory ({event} {args[index]})")

    sys.addaudithook(hook)


# --------------------------------------------------------------------------- reference


def _stub_code(label: str, n_free: int):
    """Code that raises ReferenceSolutionUsed(label), with ``n_free`` free variables so
    that it can replace the code of a function with a closure (``super()`` makes one)."""
    names = [f"_c{i}" for i in range(n_free)]
    lines = ["def _outer():"] + [f"    {n} = None" for n in names] + ["    def _stub(*args, **kwargs):"]
    if names:
        lines.append(f"        ({', '.join(names)},)")
    lines += [
        "        _sandbox = __import__('autograder.sandbox').sandbox",
        f"        _sandbox.USED.append({label!r})",
        f"        raise _sandbox.ReferenceSolutionUsed({label!r})",
        "    return _stub",
    ]
    namespace: dict = {}
    exec("\n".join(lines), namespace)  # builds a fixed stub
    return namespace["_outer"]().__code__


def functions_of(obj: Any) -> list[tuple[str, types.FunctionType]]:
    """The Python functions that make up a reference object, each with the attribute it
    stands under: ``obj`` itself (attribute ``""``) when it is a function; for a class,
    the methods, static and class methods and property accessors that the class's own
    module defines (an inherited or borrowed function belongs to another object).
    Anything else (a builtin, a torch function) has none."""
    if not isinstance(obj, type):
        return [("", obj)] if isinstance(obj, types.FunctionType) else []
    found = []
    for attr, value in vars(obj).items():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        accessors = (value.fget, value.fset, value.fdel) if isinstance(value, property) else (value,)
        found += [(attr, f) for f in accessors
                  if isinstance(f, types.FunctionType) and f.__module__ == obj.__module__]
    return found


def disable_reference(module_name: str, qualname: str) -> None:
    """Replace, in place, the code of a reference function or of every method a
    reference class defines (:func:`functions_of`), so that every path to it raises
    ReferenceSolutionUsed."""
    first, *rest = qualname.split(".")
    obj = vars(sys.modules[module_name])[first]  # past the student edition's import guard
    for part in rest:
        obj = getattr(obj, part)
    label = f"{module_name}.{qualname}"
    for attr, func in functions_of(obj):
        func.__code__ = _stub_code(f"{label}.{attr}" if attr else label, len(func.__code__.co_freevars))


def protected_paths(chapter: str) -> tuple[str, ...]:
    """Files a submission for ``chapter`` may not open: the grader, the checks (which
    hold the mistakes and import every reference), and the reference modules of this
    chapter and of later ones. Earlier chapters' modules and the course's helpers stay
    importable, as the notebooks import them."""
    import autograder
    import transformer_course.checks as checks
    from transformer_course.checks.registry import chapters, exercises

    order = chapters()
    current = order.index(chapter) if chapter in order else 0
    earlier = {e.reference.__module__ for e in exercises() if e.chapter in order[:current]}
    later = {e.reference.__module__ for e in exercises() if e.chapter in order[current:]}
    files = [os.path.realpath(sys.modules[m].__file__) for m in sorted(later - earlier)
             if getattr(sys.modules.get(m), "__file__", None)]
    folders = [os.path.dirname(os.path.realpath(m.__file__)) for m in (autograder, checks)]
    cached = [os.path.join(os.path.dirname(f), "__pycache__", os.path.basename(f)[:-3] + ".cpython")
              for f in files]  # compiled copies: attention.cpython-311.pyc
    return (*folders, *files, *cached)
