"""Forbidden built-ins found in a submission's code, by the parent (no student code runs).

The child reports the forbidden torch functions it called (a torch-function mode in
:mod:`transformer_course.checks.running`), but a submission can switch that mode off or
reach the same kernel another way. So the parent also reads the code an exercise can
reach: the exercise's definition and, transitively, every top-level function, class or
constant of the submission it names. There, a forbidden function counts as used when an
attribute, a name imported from torch or a string handed to ``getattr`` (or
``attrgetter``, ``methodcaller``) names a torch function that is it or one of its other doors: the
same name with ``_``, ``native_``, ``log_``, ``special_`` or ``fused_`` before it, in any case, with
or without underscores (``torch.ops.aten._softmax``, ``torch.special.softmax``,
``x.log_softmax(-1).exp()``, ``torch.layer_norm``, ``nn.RMSNorm``), and every name the
exercise's label gives (``"torch.nn.RNNCell (torch.rnn_tanh_cell)"``). Switching off
torch-function modes (``torch._C.DisableTorchFunction``, ``_pop_mode`` and the like)
counts as using every forbidden function of the exercise, and so does looking functions
up by a computed name (``getattr(torch, "soft" + "max")``, ``eval``, ``importlib``),
which no reading of the code can check. A forbidden Python function of the course
(``train_language_model``) counts as used where that code names it, as a variable or an
attribute (importing it alone does not: the notebooks import it). Statements the student
notebooks give as they are (``LayerNorm``'s ``if self.fused: return F.layer_norm(...)``,
off by default) are not read. The grade takes the union of what the child reported and
what is found here: the stricter wins.
"""

from __future__ import annotations

import ast
import functools
import re
import types
from collections.abc import Callable

from autograder.reader import kept_names

_PREFIXES = ("", "native", "log", "special", "fused")
_TAMPERING = re.compile(r"disabletorchfunction|torchfunctionmode|popmode|pushmode|"
                        r"settorchfunctionmode|gettorchfunctionmode|disabletorchdispatch|"
                        r"torchfunctionenabled|torchdispatchmode|overrides")


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


def doors(label: str, func: Callable) -> set[str]:
    """Normalised names through which the forbidden ``func`` (labelled ``label``) is reached."""
    names = {getattr(func, "__name__", "")} | set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", label))
    names -= {"torch", "F", "nn", "Tensor", "functional"}
    bases = {_norm(n) for n in names if len(n) > 3}
    return {prefix + base for base in bases for prefix in _PREFIXES}


@functools.cache
def _torch_api(name: str) -> bool:
    """True when ``name`` is a function or class of torch (so a student's own attribute
    ``self.rnn_cell`` never counts; ``x.log_softmax`` does)."""
    import torch
    from torch import nn
    from torch.nn import functional

    spaces = (torch, torch.Tensor, functional, nn, torch.special, torch.linalg, torch._C,
              torch._C._nn, torch._VF, torch.ops.aten)
    for space in spaces:
        try:
            if hasattr(space, name):
                return True
        except Exception:  # a lazy namespace that cannot resolve the name
            continue
    return False


@functools.cache
def given_statements() -> frozenset[str]:
    """``ast.dump`` of every statement the student notebooks give inside the exercises
    (the reference modules with every solution region stubbed, as students get them)."""
    import importlib
    import inspect

    from transformer_course import student_edition

    found = set()
    for module, names in student_edition.exercise_chapters().items():
        source = inspect.getsource(importlib.import_module(module))
        tree = ast.parse(student_edition.student_module(source, module, names, ()))
        found.update(ast.dump(n) for n in ast.walk(tree)
                     if isinstance(n, ast.stmt) and not isinstance(n, (ast.FunctionDef, ast.ClassDef)))
    return frozenset(found)


def _walk(node: ast.AST, given: frozenset[str]):
    """``ast.walk`` without the statements the notebooks give and without docstrings."""
    todo = [node]
    while todo:
        sub = todo.pop()
        if isinstance(sub, ast.stmt) and not isinstance(sub, (ast.FunctionDef, ast.ClassDef)) \
                and ast.dump(sub) in given:
            continue
        if isinstance(sub, ast.Expr) and isinstance(sub.value, ast.Constant):
            continue
        yield sub
        todo.extend(ast.iter_child_nodes(sub))


def _spelled(node: ast.AST) -> list[tuple[str, str, str]]:
    """``(normalised name, name, how it appears)`` of the attributes, imported names and
    words of string constants a node spells out."""
    found = []
    for sub in _walk(node, given_statements()):
        if isinstance(sub, ast.Attribute):
            found.append((_norm(sub.attr), sub.attr, ast.unparse(sub)[:80]))
        elif isinstance(sub, ast.Import):
            found += [(_norm(part), part, a.name) for a in sub.names if a.name.startswith("torch")
                      for part in a.name.split(".")]
        elif isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith("torch"):
            found += [(_norm(part), part, f"from {sub.module} import {a.name}")
                      for a in sub.names for part in (*sub.module.split("."), a.name)]
        elif isinstance(sub, ast.Call) and _called(sub) in _LOOKUPS:  # getattr(F, "softmax")
            found += [(_norm(arg.value), arg.value, ast.unparse(sub)[:80]) for arg in sub.args
                      if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    return found


_DYNAMIC = frozenset({"eval", "exec", "compile", "__import__", "vars", "globals", "locals"})
_LOOKUPS = frozenset({"getattr", "attrgetter", "methodcaller", "__getattribute__", "import_module"})


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _computed_lookup(node: ast.AST) -> str | None:
    """How ``node`` looks a function up by a name computed at run time, if it does."""
    for sub in _walk(node, given_statements()):
        if not isinstance(sub, ast.Call):
            continue
        func = sub.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in _DYNAMIC and isinstance(func, ast.Name):
            return ast.unparse(sub)[:80]
        if name in _LOOKUPS:
            index = 1 if name == "getattr" else 0
            key = sub.args[index] if len(sub.args) > index else None
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                return ast.unparse(sub)[:80]
    return None


def _course_function(func: Callable) -> bool:
    """A forbidden Python function of the course rather than of torch."""
    return isinstance(func, types.FunctionType) and not func.__module__.startswith("torch")


def _named(node: ast.AST, name: str) -> list[str]:
    """How ``node`` names ``name`` as a variable or an attribute (an import alone does not)."""
    return [ast.unparse(sub)[:80] for sub in _walk(node, given_statements())
            if (isinstance(sub, ast.Name) and sub.id == name)
            or (isinstance(sub, ast.Attribute) and sub.attr == name)]


def find(statements: list[ast.stmt], exercise: str,
         forbidden: dict[str, Callable]) -> list[str]:
    """Labels of ``forbidden`` that the code reachable from ``exercise`` uses, each with
    where it was seen (``"F.softmax (your code names torch.ops.aten._softmax)"``)."""
    if not forbidden:
        return []
    table: dict[str, list[ast.stmt]] = {}
    for node in statements:  # later definitions override earlier ones, as when run
        for name in kept_names(node) or []:  # the grader keeps every statement it gets
            table.setdefault(name, [])
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                table[name] = [node]
            else:
                table[name].append(node)
    reach, todo, seen = [], [exercise], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in table:
            continue
        seen.add(name)
        for node in table[name]:
            reach.append(node)
            todo += [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in table]
    spelled = [found for node in reach for found in _spelled(node)]
    tampering = next((shown for norm, _, shown in spelled if _TAMPERING.search(norm)), None)
    computed = next(filter(None, (_computed_lookup(n) for n in reach)), None)
    used = []
    for label, func in forbidden.items():
        if _course_function(func):  # a helper of the course: named as it is, called or passed
            hit = next((shown for node in reach for shown in _named(node, func.__name__)), None)
        else:
            names = doors(label, func)
            hit = next((shown for norm, name, shown in spelled if norm in names and _torch_api(name)), None)
        if hit is not None:
            used.append(f"{label} (your code names {hit})")
        elif tampering is not None:
            used.append(f"{label} (your code switches off the grader's check: {tampering})")
        elif computed is not None:
            used.append(f"{label} (your code looks functions up by a computed name, which the "
                        f"grader cannot check: {computed})")
    return used
