"""Stored check data: what ``check`` needs, saved at release time, so that the student
edition judges answers without the reference code.

The release tool saves each exercise's prepared data (the visible cases, the reference's
outputs on them, the catalogued mistakes' outputs: whatever ``core.prepare`` returns) as
two files in ``checks/stored/``: ``<exercise>-<seed>.safetensors`` with every tensor, and
``<exercise>-<seed>.json`` with the structure around them. Nothing is pickled and nothing
read back is executed: the JSON holds only plain values and these tagged containers::

    {"tensor": key}           a tensor of the safetensors file
    {"list": [...]}           a list
    {"tuple": [...]}          a tuple
    {"dict": {str: ...}}      a dict with string keys
    {"case": [name, args]}    a core.Case

The instructor edition has no ``checks/stored/`` folder, so :func:`load_prepared`
returns None there and the checks run the reference as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

from transformer_course.checks.exercise import Case

STORE = Path(__file__).with_name("stored")
_SCALARS = (bool, int, float, str, type(None))


def encode(value: Any, tensors: dict[str, Tensor]) -> Any:
    """JSON form of ``value``; its tensors are added to ``tensors`` under fresh keys.

    Raises:
        TypeError: for anything but tensors, Cases, dicts with string keys, lists,
            tuples and JSON scalars.
    """
    if isinstance(value, Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().as_subclass(Tensor).contiguous().clone()
        return {"tensor": key}
    if isinstance(value, Case):
        return {"case": [value.name, encode(value.args, tensors)]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"stored dicts need string keys, got {sorted(map(repr, value))}")
        return {"dict": {k: encode(v, tensors) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [encode(v, tensors) for v in value]}
    if isinstance(value, _SCALARS):
        return value
    raise TypeError(f"cannot store a {type(value).__name__}: only tensors and plain data")


def decode(skeleton: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`encode`."""
    if not isinstance(skeleton, dict):
        return skeleton
    (tag, body), = skeleton.items()
    if tag == "tensor":
        return tensors[body]
    if tag == "case":
        return Case(body[0], decode(body[1], tensors))
    if tag == "dict":
        return {k: decode(v, tensors) for k, v in body.items()}
    if tag in ("list", "tuple"):
        items = [decode(v, tensors) for v in body]
        return items if tag == "list" else tuple(items)
    raise ValueError(f"unknown tag {tag!r} in stored check data")


def save(value: Any, stem: Path) -> None:
    """Write ``value`` as ``stem.json`` and ``stem.safetensors``."""
    tensors: dict[str, Tensor] = {}
    skeleton = encode(value, tensors)
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(stem.with_suffix(".safetensors")))
    stem.with_suffix(".json").write_text(json.dumps(skeleton, sort_keys=True) + "\n")


def load(stem: Path) -> Any:
    """Read what :func:`save` wrote."""
    # Fresh copies: a tensor read in place from the file may sit at an address that
    # sends matmul down another kernel, changing a float32 result in its last digit.
    tensors = {k: v.clone() for k, v in load_file(str(stem.with_suffix(".safetensors"))).items()}
    return decode(json.loads(stem.with_suffix(".json").read_text()), tensors)


def stem(exercise: str, seed: int, store: Path | None = None) -> Path:
    """Where the data of ``exercise``'s cases for ``seed`` is stored (in ``store``,
    the package's own store by default)."""
    return (store or STORE) / f"{exercise}-{seed}"


def load_prepared(exercise: str, seed: int) -> Any | None:
    """The stored prepared data of ``exercise`` for ``seed``; None when there is none
    (always in the instructor edition)."""
    path = stem(exercise, seed)
    return load(path) if path.with_suffix(".json").is_file() else None
