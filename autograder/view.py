"""The judge-free view of the course package that a grading child sees.

Built by the parent, per chapter, from the package's own metadata, the way the student
edition is (:mod:`transformer_course.student_edition`): the exercises of earlier
chapters keep their reference code (later chapters import them as given building
blocks), those of the chapter being graded and of later chapters are
``raise NotImplementedError`` stubs, the check modules lose their references, case
generators and mistake implementations, and the instructor-only tools
(``release.py``, ``student_edition.py``, stored check data) are left out. Only the
exercises of the graded chapter that an exercise's own harness hands to the student
(a reference model given to ``greedy_decode``) keep their code; the worker disables
them in every other exercise's child. ``transformer_course.mine`` (a submission's
``from transformer_course.mine import MultiHeadAttention``) resolves to the earlier
chapters' references and never to a student's kept code.

Next to it, ``autograder/`` holds only the modules the worker runs. Nothing else of the
repository (``solutions/``, ``tests/``, ``.git``, ``checks`` cases) is in the view.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import threading
from pathlib import Path

import autograder
import transformer_course
from transformer_course import student_edition
from transformer_course.checks.registry import chapters, exercises
from transformer_course.edition import PACKAGE

WORKER_MODULES = ("__init__.py", "worker.py", "sandbox.py", "seccomp.py")
_KEPT = "(kept for a harness)"  # a pseudo-chapter: released in the view
_GUARD = "\n\n# Student edition: these exercises' chapters are not released yet.\n"
_MINE = '''"""Exercises of earlier chapters, as given building blocks (grader's view: the
course's reference solutions, never a student's own code)."""

import importlib

from transformer_course.edition import NotReleasedError, not_released_message

_RELEASED = {released!r}
_WAITING = {waiting!r}


def __getattr__(name):
    if name in _RELEASED:
        return getattr(importlib.import_module(_RELEASED[name]), name)
    if name in _WAITING:
        raise NotReleasedError(not_released_message(name, _WAITING[name]), name=__name__)
    raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}")
'''

_LOCK = threading.Lock()
_BUILT: dict[tuple[str, frozenset[str]], Path] = {}
_ROOT: list[Path] = []


def package_dir() -> Path:
    """Where the real ``transformer_course`` package lives (the view is bound over it)."""
    return Path(transformer_course.__file__).resolve().parent


def autograder_dir() -> Path:
    return Path(autograder.__file__).resolve().parent


def build_view(chapter: str, keep: frozenset[str] = frozenset()) -> Path:
    """The view's root for ``chapter`` (cached per process): ``ROOT/transformer_course``
    and ``ROOT/autograder``, world-readable, owned by the parent.

    Args:
        keep: names of the chapter's exercises whose reference stays (harness use).
    """
    with _LOCK:
        key = (chapter, frozenset(keep))
        if key not in _BUILT or not _BUILT[key].is_dir():
            if not _ROOT:
                _ROOT.append(Path(tempfile.mkdtemp(prefix="autograder-view-")))
                _ROOT[0].chmod(0o755)
                atexit.register(forget)
            digest = hashlib.sha256(repr(sorted(key[1])).encode() + chapter.encode()).hexdigest()[:12]
            _BUILT[key] = _build(chapter, keep, _ROOT[0] / f"{chapter}-{digest}")
        return _BUILT[key]


def _build(chapter: str, keep: frozenset[str], root: Path) -> Path:
    order = chapters()
    released = tuple(order[: order.index(chapter)]) if chapter in order else ()
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=root.parent))
    package = staging / PACKAGE
    student_edition._copy_package(package_dir(), package)
    for module, names in student_edition.exercise_chapters().items():
        graded = {name: (_KEPT if name in keep else ch) for name, ch in names.items()}
        path = package / (module.removeprefix(PACKAGE + ".").replace(".", "/") + ".py")
        text = student_edition.student_module(path.read_text(), module, graded, (*released, _KEPT))
        # no import guard: an import of a stub reaches the disabled reference, and is flagged
        path.write_text(text.split(_GUARD)[0] + "\n" if _GUARD in text else text)
    for path in sorted((package / "checks").glob("ch[0-9][0-9]_*.py")):
        path.write_text(student_edition.student_checks(path.read_text()))
    if (package / "mine.py").exists():
        found = [(e.name, e.reference.__module__, e.chapter) for e in exercises()]
        (package / "mine.py").write_text(_MINE.format(
            released={n: m for n, m, ch in found if ch in released},
            waiting={n: ch for n, _, ch in found if ch not in released}))
    worker = staging / "autograder"
    worker.mkdir()
    for name in WORKER_MODULES:
        shutil.copy2(autograder_dir() / name, worker / name)
    for path in (staging, *staging.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    return root


def forget() -> None:
    """Remove every view this process built."""
    with _LOCK:
        for root in _ROOT:
            shutil.rmtree(root, ignore_errors=True)
        _ROOT.clear()
        _BUILT.clear()
