"""All graded exercises, found by name.

Each chapter registers its exercises in modules of this package named ``chNN_<topic>.py``
(``ch01_attention.py`` registers ``01_attention``; a chapter with two topics has two,
such as ``ch06_bpe.py`` and ``ch06_gpt.py``). Adding a chapter means adding such a
module; nothing else here changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from transformer_course.checks.exercise import Exercise
from transformer_course.checks.rubric import rubric

_EXERCISES: dict[str, Exercise] = {}


def register(*exercises: Exercise) -> None:
    """Add exercises to the registry; names are unique across the course."""
    for exercise in exercises:
        if exercise.name in _EXERCISES and _EXERCISES[exercise.name] is not exercise:
            raise ValueError(f"exercise {exercise.name!r} is registered twice")
        _EXERCISES[exercise.name] = exercise


@cache
def _load_all() -> None:
    import transformer_course.checks as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("ch") and info.name[2:4].isdigit():
            importlib.import_module(f"{package.__name__}.{info.name}")


def exercises(chapter: str | None = None) -> list[Exercise]:
    """Registered exercises, in rubric order; only ``chapter``'s when given."""
    _load_all()
    order = [(ch, name) for ch, names in rubric().items() for name in names]
    found = [_EXERCISES[name] for ch, name in order if name in _EXERCISES]
    return [e for e in found if chapter is None or e.chapter == chapter]


def chapters() -> list[str]:
    """Chapter ids that have registered exercises, in course order."""
    return list(dict.fromkeys(e.chapter for e in exercises()))


def get(name: str) -> Exercise:
    """The exercise called ``name``; a KeyError lists the known names otherwise."""
    _load_all()
    try:
        return _EXERCISES[name]
    except KeyError:
        known = ", ".join(e.name for e in exercises())
        raise KeyError(f"no exercise is called {name!r}; the graded exercises are: {known}") from None
