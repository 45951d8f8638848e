"""Which edition of the course this is, and the guard on unreleased exercises.

The instructor edition (the course repository) holds every reference solution. The
student edition, built by ``python -m transformer_course.student_edition``, holds the
solutions of the released chapters only; in the others each exercise's solution is
``raise NotImplementedError(...)``, as in the student notebooks.

A later chapter takes earlier exercises from :mod:`transformer_course.mine`: the
student's own passing version, else a released reference, else a clear stop. Importing
an exercise whose chapter is not released yet straight from its reference module, from
outside the package, raises :class:`NotReleasedError`, which names the chapter and points
to ``transformer_course.mine``. The package's own modules still import it (``encoder.py``
needs ``MultiHeadAttention`` to define ``EncoderLayer``).
"""

from __future__ import annotations

import sys
import types
from importlib import metadata

PACKAGE = "transformer_course"
DISTRIBUTION = "transformers-from-scratch"


class NotReleasedError(ImportError):
    """An exercise of a chapter whose solution is not released yet was imported."""


def edition() -> str:
    """``"student"`` or ``"instructor"`` (from the installed version's ``+student`` label)."""
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "instructor"  # a source checkout that was never installed
    return "student" if version.endswith("+student") else "instructor"


def not_released_message(name: str, chapter: str) -> str:
    """What a student reads on importing ``name`` of the unreleased ``chapter``."""
    number = int(chapter.split("_", 1)[0])
    return (
        f"{name} is an exercise of chapter {chapter}, whose solution is not released yet. "
        f"Import your own instead: finish it in chapter {number} ({chapter}.ipynb), where a "
        f"passing check({name}) keeps it, then `from transformer_course.mine import {name}`."
    )


class _GuardedModule(types.ModuleType):
    """A module whose unreleased exercises are hidden from code outside the package."""

    def __getattribute__(self, name: str):
        waiting = super().__getattribute__("__dict__").get("__unreleased__", {})
        if name in waiting:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller != PACKAGE and not caller.startswith(PACKAGE + "."):
                raise NotReleasedError(
                    not_released_message(name, waiting[name]), name=super().__getattribute__("__name__")
                )
        return super().__getattribute__(name)


def guard_unreleased(module_name: str, exercises: dict[str, str]) -> None:
    """Hide ``{exercise name: chapter}`` of module ``module_name`` from outside imports.

    The student edition calls this at the end of every module with unreleased exercises.
    """
    module = sys.modules[module_name]
    module.__unreleased__ = dict(exercises)
    module.__class__ = _GuardedModule
