"""Read a submission (``.ipynb`` or ``.py``) into the code the grader runs.

Only imports, top-level functions and classes, and constant assignments are kept, so
training loops, plots and prints never run while grading. Each notebook cell (or each
``# %%`` section of a ``.py`` file) is parsed on its own: a syntax error costs only
what that cell defines. Cells run in order, so a later definition overrides an earlier
one, as in a kernel.

Hostile files cost only their own grade: a notebook nested too deeply for the JSON
parser, a cell nested too deeply to compile, or one that exhausts memory while parsing is
a :class:`SubmissionError` or a cell with an error, never an exception out of here.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

SUFFIXES = (".ipynb", ".py")

# Calls allowed in a kept assignment: cheap constructors that a constant needs
# (``DEVICE = torch.device("cpu")``); any other call may train a model, so it is skipped.
_CHEAP_CALLS = frozenset({
    "bool", "int", "float", "str", "bytes", "tuple", "list", "dict", "set", "frozenset",
    "range", "len", "min", "max", "abs", "round", "sorted", "sqrt", "log", "exp", "pow",
    "device", "dtype", "tensor", "as_tensor", "namedtuple", "TypeVar", "compile", "Path",
    "getLogger", "pick", "field",
})
_CONSTANT_NODES = (
    ast.Constant, ast.Name, ast.Attribute, ast.Subscript, ast.Slice, ast.Tuple, ast.List,
    ast.Set, ast.Dict, ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp,
    ast.JoinedStr, ast.FormattedValue, ast.Starred, ast.keyword, ast.expr_context,
    ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)
_MAGIC = re.compile(r"^\s*[%!]")


class SubmissionError(Exception):
    """The file cannot be read as a submission at all (not a notebook, not text)."""


@dataclass
class Cell:
    """One cell's kept code.

    Attributes:
        label: how the report names it ("cell 7", or "file" for a plain ``.py``).
        source: the cell's source after IPython magics were blanked out.
        keep: indices into the parsed module's body of the statements to run.
        error: the syntax error, when the cell does not parse.
    """

    label: str
    source: str
    keep: list[int] = field(default_factory=list)
    error: str | None = None


@dataclass
class Program:
    """A submission's cells, in order."""

    cells: list[Cell]

    def to_json(self) -> dict:
        return {"cells": [{"label": c.label, "source": c.source, "keep": c.keep}
                          for c in self.cells if c.error is None and c.keep]}

    def statements(self) -> list[ast.stmt]:
        """The kept statements of every cell, in order (what the grader runs)."""
        found = []
        for cell in self.cells:
            if cell.error is None and cell.keep:
                body = ast.parse(cell.source).body
                found += [body[i] for i in cell.keep]
        return found

    def broken_cells_mentioning(self, name: str) -> list[Cell]:
        """Cells with a syntax error whose text seems to define ``name``."""
        pattern = re.compile(rf"^\s*(def|class)\s+{re.escape(name)}\b|^\s*{re.escape(name)}\s*=", re.M)
        return [c for c in self.cells if c.error and pattern.search(c.source)]


def read_submission(path: Path) -> Program:
    """Parse ``path`` into a :class:`Program`.

    Raises:
        SubmissionError: for an unknown suffix, a notebook that is not valid JSON, or a
            file that is not UTF-8 text.
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise SubmissionError(f"{path.name}: submit a .ipynb notebook or a .py file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise SubmissionError(
            f"{path.name} is not UTF-8 text (byte {err.start} cannot be decoded); "
            "submit the notebook file itself"
        ) from None
    known: set[str] = set(dir(builtins))
    try:
        sections = notebook_cells(text, path.name) if path.suffix == ".ipynb" else script_sections(text)
        return Program([_parse_cell(label, src, known) for label, src in sections])
    except (RecursionError, MemoryError) as err:
        raise SubmissionError(f"{path.name} could not be read ({type(err).__name__}: it is nested "
                              "too deeply or is too large)") from None


def notebook_cells(text: str, name: str = "notebook") -> list[tuple[str, str]]:
    """``(label, source)`` of each code cell; labels count all cells from 1, as
    JupyterLab shows them."""
    try:
        nb = json.loads(text)
    except RecursionError:
        raise SubmissionError(f"{name} is not a valid notebook (nested too deeply)") from None
    except json.JSONDecodeError as err:
        raise SubmissionError(
            f"{name} is not a valid notebook (JSON error at line {err.lineno}, column "
            f"{err.colno}: {err.msg}); open it in Jupyter, save it, and submit it again"
        ) from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise SubmissionError(f"{name} is JSON but not a notebook (it has no list of cells)")
    found = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if isinstance(source, str):
            found.append((f"cell {number}", source))
    return found


def script_sections(text: str) -> list[tuple[str, str]]:
    """A ``.py`` file split at ``# %%`` markers (jupytext's percent format); line
    numbers are kept by padding each section with blank lines."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("# %%")]
    if not starts:
        return [("file", text)]
    bounds = [0, *starts, len(lines)] if starts[0] != 0 else [*starts, len(lines)]
    sections = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        sections.append((f"section at line {a + 1}", "\n" * a + "".join(lines[a:b])))
    return sections


def _parse_cell(label: str, source: str, known: set[str]) -> Cell:
    """Parse one cell; ``known`` (names bound so far) grows with what it defines."""
    if source.lstrip().startswith("%%"):
        return Cell(label, "")  # a cell magic (%%time, %%bash): not Python
    source = "\n".join("" if _MAGIC.match(line) else line for line in source.split("\n"))
    cell = Cell(label, source)
    try:
        tree = ast.parse(source)
        try:
            compile(tree, f"<{label}>", "exec", dont_inherit=True)  # nesting the compiler refuses
        except (SyntaxError, ValueError):
            pass  # a statement the worker cannot compile costs only that statement
    except (RecursionError, MemoryError) as err:
        cell.error = f"the cell is nested too deeply or is too large to compile ({type(err).__name__})"
        return cell
    except (SyntaxError, ValueError) as err:
        line = getattr(err, "lineno", None)
        text = (getattr(err, "text", None) or "").strip()
        where = f"line {line}: " if line else ""
        cell.error = f"{where}{getattr(err, 'msg', str(err))}" + (f" ({text!r})" if text else "")
        return cell
    for index, node in enumerate(tree.body):
        names = kept_names(node, known)
        if names is not None:
            cell.keep.append(index)
            known.update(names)
    return cell


def kept_names(node: ast.stmt, known: set[str] | None = None) -> list[str] | None:
    """Names a statement binds when the grader keeps it; None when it is skipped.

    An assignment is kept when its value is constant-like and, given ``known``, uses
    only names bound before it (so one computed from a skipped statement is skipped).
    """
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Import):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [a.asname or a.name for a in node.names]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names: list[str] = []
        for target in targets:
            elts = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
            if not all(isinstance(e, ast.Name) for e in elts):
                return None
            names.extend(e.id for e in elts)
        if node.value is None or not _is_constant(node.value):
            return None
        if known is not None and not _uses_only(node.value, known):
            return None
        return names
    return None


def _uses_only(node: ast.AST, known: set[str]) -> bool:
    if isinstance(node, ast.Lambda):
        return True
    if isinstance(node, ast.Name):
        return node.id in known
    return all(_uses_only(child, known) for child in ast.iter_child_nodes(node))


def _is_constant(node: ast.AST) -> bool:
    if isinstance(node, ast.Lambda):
        return True  # a function, like a def
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        return name in _CHEAP_CALLS and all(_is_constant(a) for a in (*node.args, *node.keywords))
    if not isinstance(node, _CONSTANT_NODES):
        return False
    return all(_is_constant(child) for child in ast.iter_child_nodes(node))


def imported_modules(program: Program) -> list[str]:
    """Absolute module names the kept import statements load."""
    found: list[str] = []
    for cell in program.cells:
        if cell.error:
            continue
        body = ast.parse(cell.source).body
        for index in cell.keep:
            node = body[index]
            if isinstance(node, ast.Import):
                found.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append(node.module)
                found.extend(f"{node.module}.{a.name}" for a in node.names)  # submodules
    return list(dict.fromkeys(found))
