"""Your building blocks: ``from transformer_course.mine import MultiHeadAttention``.

Every exercise a later chapter builds on is imported from here. Each name is resolved
once per kernel, and the import says whose code it is:

- **yours**: the last version of yours that passed ``check()``, kept in ``mine/<name>.py``
  next to your notebooks (:mod:`transformer_course.workspace`). It is checked again
  before it is used; when it no longer passes (you edited the file, or the check
  changed) the import stops with :class:`KeptCodeFails`, never falls back in silence.
- **the course's reference**, when you have not passed that exercise yet: in the
  instructor edition always, in the student edition only once its chapter's solution
  is released. Otherwise the import stops with :class:`NotPassedYet`, which names the
  exercise to finish and its chapter.

:func:`whose` lists what this kernel took, for a notebook to show.
"""

from __future__ import annotations

import importlib
import json
import types
from typing import Any

from transformer_course import workspace
from transformer_course.checks.exercise import Exercise
from transformer_course.checks.registry import get
from transformer_course.checks.stored import STORE

MODULES_FILE = STORE / "modules.json"
"""Student edition: ``{exercise: module of its reference}`` (the reference itself is not shipped)."""

_TAKEN: dict[str, tuple[Any, str]] = {}  # name -> (object, whose line)


class NotPassedYet(ImportError):
    """A later chapter needs an exercise that is neither passed nor released."""


class KeptCodeFails(ImportError):
    """A kept implementation no longer imports or no longer passes its check."""


def _chapter_number(chapter: str) -> int:
    return int(chapter.split("_", 1)[0])


def _reference_module(exercise: Exercise) -> str:
    if exercise.reference is not None:
        return exercise.reference.__module__
    return json.loads(MODULES_FILE.read_text())[exercise.name]


def _kept(exercise: Exercise) -> tuple[Any, str]:
    name, path = exercise.name, workspace.shown(workspace.path_of(exercise.name))
    fix = (
        f"Fix it in chapter {_chapter_number(exercise.chapter)}'s notebook ({exercise.chapter}.ipynb) "
        f"and run check({name}) there, which keeps the new version; or delete {path} to stop using it."
    )
    try:
        obj = workspace.load(name)
    except (KeptCodeFails, NotPassedYet):  # a block it imports: that one's message
        raise
    except Exception as err:  # whatever the kept file raises, said in one line
        raise KeptCodeFails(
            f"{name}: your kept code in {path} no longer imports ({type(err).__name__}: {err}). {fix}"
        ) from None
    from transformer_course.checks import check

    result = check(obj, name)
    if not result.passed:
        first = next((c for c in result.cases if not c.passed), None)
        detail = f"{first.name}: {first.message}" if first else result.note or result.status.value
        raise KeptCodeFails(
            f"{name}: your kept code in {path} no longer passes check({name}) "
            f"({result.headline().rstrip('.')}; first failure: {detail}). {fix}"
        )
    return obj, f"{name}: yours ({workspace.describe_kept(workspace.path_of(name))}; {path})"


def _reference(exercise: Exercise) -> tuple[Any, str]:
    name, number = exercise.name, _chapter_number(exercise.chapter)
    module = importlib.import_module(_reference_module(exercise))
    if not has_reference(name):
        raise NotPassedYet(
            f"{name} is an exercise of chapter {number}, which this chapter builds on. Finish it in "
            f"{exercise.chapter}.ipynb and run check({name}) there: a passing check keeps your code "
            f"in {workspace.shown(workspace.folder())}/ for the chapters after it. (Or wait until "
            f"your instructor releases chapter {number}'s solution.)"
        )
    if not workspace.enabled():
        why = "the workspace is off here"
    else:
        why = f"chapter {number} not passed yet here"
    return getattr(module, name), f"{name}: the course's reference ({why})"


def has_reference(name: str) -> bool:
    """Whether this edition holds the course's reference of exercise ``name`` (the
    instructor edition always; the student edition once its chapter is released)."""
    module = importlib.import_module(_reference_module(get(name)))
    return name not in vars(module).get("__unreleased__", {})


def take(name: str) -> Any:
    """Your kept ``name`` where it passes, else the reference (see the module docstring)."""
    if name not in _TAKEN:
        exercise = get(name)
        kept = workspace.enabled() and workspace.path_of(name).is_file()
        obj, line = _kept(exercise) if kept else _reference(exercise)
        workspace.HANDED_OUT[id(obj)] = name
        _TAKEN[name] = (obj, line)
        print(line)
    return _TAKEN[name][0]


def whose(*names: str) -> str:
    """One line per block this kernel took (only ``names`` when given): yours or the reference."""
    return "\n".join(line for name, (_, line) in _TAKEN.items() if not names or name in names)


def is_yours(obj: Any) -> bool:
    """Whether ``obj`` (a block, an instance or a module's layer) came from a kept file of yours."""
    module = obj.__module__ if isinstance(obj, (type, types.FunctionType)) else type(obj).__module__
    return module.startswith(__name__ + ".")


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return take(name)
    except KeyError as err:
        raise AttributeError(str(err)) from None
