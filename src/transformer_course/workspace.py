"""The student's workspace: the last passing version of each exercise, kept as code.

When ``check(MultiHeadAttention)`` passes in a notebook, the class's source and the
definitions it depends on (the helpers and classes of the notebook it calls, the imports
and constants it reads) are written as one plain module, ``mine/MultiHeadAttention.py``,
in the folder of the notebook (Jupyter runs a notebook in its own folder). Later chapters
import it through :mod:`transformer_course.mine`, which checks it again before handing
it out. A student may read, commit, edit or delete these files; :func:`forget` deletes
one.

``TRANSFORMER_COURSE_WORKSPACE`` overrides the folder; ``off`` turns the workspace off
(nothing is kept or read: every block is the course's reference), as the autograder does
in the process that runs a submission: a submission is graded alone.
"""

from __future__ import annotations

import ast
import builtins
import datetime
import importlib
import inspect
import linecache
import os
import re
import symtable
import sys
import types
from pathlib import Path
from typing import Any

WORKSPACE_ENV = "TRANSFORMER_COURSE_WORKSPACE"
FOLDER = "mine"
_HEADER = re.compile(r"^# (\w+): passed check\(\) of chapter (\S+) on (\d{4}-\d{2}-\d{2})", re.M)
_PLAIN = (int, float, str, bool, type(None))

# id(object) -> name, for every object transformer_course.mine handed out: a kept
# module that uses one imports it from there again, never from where it happened to live.
HANDED_OUT: dict[int, str] = {}


class NotKept(Exception):
    """A passing implementation whose source could not be kept (the reason a student reads)."""


def enabled() -> bool:
    """Whether this process keeps and reads a workspace (not when turned ``off``: the
    autograder turns it off in the process that runs a submission)."""
    return os.environ.get(WORKSPACE_ENV, "").strip().lower() != "off"


def folder() -> Path:
    """Where kept implementations live: ``$TRANSFORMER_COURSE_WORKSPACE`` or ``./mine``."""
    override = os.environ.get(WORKSPACE_ENV, "").strip()
    return Path(override) if override else Path.cwd() / FOLDER


def path_of(name: str) -> Path:
    """The file that keeps exercise ``name``."""
    return folder() / f"{name}.py"


def shown(path: Path) -> str:
    """``path`` as a student reads it: relative to the notebook's folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def header(path: Path) -> tuple[str, str] | None:
    """``(chapter, date passed)`` from a kept file's first lines, or None."""
    match = _HEADER.search(path.read_text()[:500])
    return (match[2], match[3]) if match else None


def forget(name: str) -> bool:
    """Delete the kept ``name`` (later chapters use the course's reference, where there
    is one). Returns whether there was a kept file."""
    path = path_of(name)
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return existed


# --------------------------------------------------------------------------- keeping


def keep(obj: Any, name: str, chapter: str) -> Path:
    """Write ``obj`` (which just passed the check of exercise ``name``) and what it
    depends on as ``<folder>/<name>.py``, replacing an earlier version.

    Raises:
        NotKept: when its source, or that of a definition it uses, cannot be found.
    """
    namespace = _namespace(obj)
    imports: dict[str, str] = {}
    constants: dict[str, str] = {}
    definitions: dict[str, str] = {}
    _collect(obj, name, namespace, imports, constants, definitions, set())
    chapter_number = int(chapter.split("_", 1)[0])
    today = datetime.date.today().isoformat()
    text = "\n".join([
        f"# {name}: passed check() of chapter {chapter} on {today}.",
        f"# Kept by the course from your chapter {chapter_number} notebook: later chapters import it",
        f"# with `from transformer_course.mine import {name}`. Run check() again to replace it;",
        "# delete this file to stop using it.",
        "",
        *sorted(imports.values(), key=lambda line: (line.split()[1], line)),  # by module
        "",
        *constants.values(),
        "",
        "\n\n\n".join(definitions.values()),
        "",
    ])
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    target = path_of(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".py.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, target)  # two kernels never leave half a file
    return target


def _namespace(obj: Any) -> dict[str, Any]:
    code = _code_of(obj)
    if isinstance(obj, types.FunctionType):
        return inspect.unwrap(obj).__globals__
    for value in vars(obj).values():
        function = _function_in(value)
        if function is not None and function.__code__ is code:
            return function.__globals__
    return vars(sys.modules[obj.__module__])


def _function_in(value: Any) -> types.FunctionType | None:
    value = getattr(value, "__func__", getattr(value, "fget", value))
    return value if isinstance(value, types.FunctionType) else None


def _code_of(obj: Any) -> types.CodeType:
    if isinstance(obj, types.FunctionType):
        # A decorated function (@torch.no_grad()) is the decorator's wrapper: its own
        # code and globals are the decorator's, the student's are under __wrapped__.
        return inspect.unwrap(obj).__code__
    if isinstance(obj, type):
        for value in vars(obj).values():
            function = _function_in(value)
            if function is not None:
                return function.__code__
    raise NotKept(f"{getattr(obj, '__name__', obj)!r} is not a function or a class with methods")


def definition_source(obj: Any) -> str:
    """The source of the top-level ``def`` or ``class`` that defined ``obj``, decorators
    included, from the notebook cell or file it was run from."""
    code = _code_of(obj)
    lines = linecache.getlines(code.co_filename)
    if not lines:
        raise NotKept(f"the source of {obj.__name__} is not available (was it run from a notebook cell?)")
    for node in ast.parse("".join(lines)).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        # A decorated function's code starts at its first decorator.
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        if node.name == obj.__name__ and start <= code.co_firstlineno <= node.end_lineno:
            return "".join(lines[start - 1:node.end_lineno]).rstrip() + "\n"
    raise NotKept(f"the definition of {obj.__name__} was not found in {code.co_filename}")


def _global_names(source: str) -> list[str]:
    """Names a top-level definition reads from its module's globals."""
    names: list[str] = []

    def visit(table: symtable.SymbolTable, top: bool) -> None:
        for symbol in table.get_symbols():
            wanted = symbol.is_referenced() if top else symbol.is_global()
            if wanted and symbol.get_name() not in names:
                names.append(symbol.get_name())
        for child in table.get_children():
            visit(child, False)

    visit(symtable.symtable(source, "<kept>", "exec"), True)
    return names


def _collect(obj, name, namespace, imports, constants, definitions, seen) -> None:
    seen.add(name)
    source = definition_source(obj)
    if obj.__name__ != name:  # check(my_softmax, name="softmax") keeps it as softmax
        source = re.sub(rf"^((?:async )?def |class ){obj.__name__}\b", rf"\g<1>{name}", source,
                        count=1, flags=re.M)
    for used in _global_names(source):
        if used in seen or used not in namespace:
            continue  # itself, or a builtin
        value = namespace[used]
        if getattr(value, "__wrapped__", None) is getattr(builtins, used, None) is not None:
            continue  # a shell's wrapper of a builtin (IPython's open): the kept file uses the builtin
        if id(value) in HANDED_OUT:
            imports[used] = _import_line("transformer_course.mine", HANDED_OUT[id(value)], used)
        elif isinstance(value, types.ModuleType):
            imports[used] = (
                f"import {value.__name__}" if value.__name__ == used else f"import {value.__name__} as {used}"
            )
        elif _defined_here(value, namespace):
            _collect(value, used, namespace, imports, constants, definitions, seen)
        elif (where := _importable(value)) is not None:
            imports[used] = _import_line(*where, used)
        elif _is_plain(value):
            constants[used] = f"{used} = {value!r}"
        else:
            raise NotKept(
                f"{name} uses {used}, a {type(value).__name__} made in the notebook; "
                f"create it inside {name} (or pass it in) so the kept code has it"
            )
    definitions[name] = source.rstrip()


def _import_line(module: str, attribute: str, name: str) -> str:
    return f"from {module} import {attribute}" + ("" if attribute == name else f" as {name}")


def _defined_here(value: Any, namespace: dict[str, Any]) -> bool:
    """A function or class defined by the notebook (or module) that ``namespace`` is."""
    if not isinstance(value, (types.FunctionType, type)):
        return False
    return value.__module__ == namespace.get("__name__") and "<locals>" not in value.__qualname__


def _importable(value: Any) -> tuple[str, str] | None:
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not module or not qualname or "." in qualname or "<" in qualname or module == "__main__":
        return None
    try:
        found = getattr(importlib.import_module(module), qualname, None)
    except Exception:  # any import failure: not importable from there
        return None
    return (module, qualname) if found is value else None


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, list)):
        return all(_is_plain(v) for v in value)
    return False


# --------------------------------------------------------------------------- reading


def load(name: str) -> Any:
    """Import the kept ``name`` from its file (each call runs the file again).

    Raises:
        the error the file raised on import, or AttributeError when it lacks ``name``.
    """
    path = path_of(name)
    module = types.ModuleType(f"transformer_course.mine.{name}")
    module.__file__ = str(path)
    source = path.read_text()
    linecache.cache[str(path)] = (len(source), None, source.splitlines(keepends=True), str(path))
    exec(compile(source, str(path), "exec"), module.__dict__)
    value = getattr(module, name, None)
    if value is None:
        raise AttributeError(f"{path} defines no {name}")
    return value


def describe_kept(path: Path) -> str:
    """``"chapter 2, passed 2026-12-07"`` for a kept file."""
    found = header(path)
    if found is None:
        return "edited by hand"
    chapter, date = found
    return f"chapter {int(chapter.split('_', 1)[0])}, passed {date}"

