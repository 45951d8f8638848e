"""Nested data with tensors as a JSON skeleton plus a flat ``{key: tensor}`` dict.

The one serializer for data that leaves a process or is saved: the autograder sends
case arguments to its worker this way, and the student edition stores its check data
this way. The tensors go to a safetensors file; the skeleton is plain JSON. Nothing is
pickled, and reading a skeleton back executes nothing. A skeleton is a JSON scalar or
one of these tagged containers::

    {"tensor": key}           a tensor of the flat dict
    {"list": [...]}           a list
    {"tuple": [...]}          a tuple
    {"dict": {str: ...}}      a dict with string keys
    {tag: [field, ...]}       a dataclass named in ``records`` (``{"case": Case}``), its
                              fields in declaration order
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import Tensor

_SCALARS = (bool, int, float, str, type(None))
_CONTAINERS = ("tensor", "list", "tuple", "dict")


def flatten(value: Any, tensors: dict[str, Tensor], prefix: str = "",
            records: Mapping[str, type] | None = None) -> Any:
    """The JSON skeleton of ``value``; its tensors are added to ``tensors`` under the
    keys ``prefix0``, ``prefix1``, ... (numbered by the size of ``tensors``).

    Args:
        value: tensors, dicts with string keys, lists, tuples, JSON scalars and the
            dataclasses of ``records``, nested in any way.
        tensors: the flat dict that receives a detached, contiguous copy of each tensor.
        prefix: the start of every key added (several values can share one dict).
        records: ``{tag: dataclass}``, the dataclasses allowed in ``value``.

    Raises:
        TypeError: for anything else (a function, a module, a dict with other keys).
    """
    records = records or {}
    if isinstance(value, Tensor):
        key = f"{prefix}{len(tensors)}"
        tensors[key] = value.detach().as_subclass(Tensor).contiguous().clone()
        return {"tensor": key}
    for tag, cls in records.items():
        if type(value) is cls:
            return {tag: [flatten(getattr(value, f.name), tensors, prefix, records)
                          for f in dataclasses.fields(cls)]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"only dicts with string keys can be stored, got {sorted(map(repr, value))}")
        return {"dict": {k: flatten(v, tensors, prefix, records) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [flatten(v, tensors, prefix, records) for v in value]}
    if isinstance(value, _SCALARS):
        return value
    raise TypeError(f"cannot store a {type(value).__name__}: only tensors and plain data")


def unflatten(skeleton: Any, tensors: Mapping[str, Tensor],
              records: Mapping[str, type] | None = None) -> Any:
    """Inverse of :func:`flatten` (given the same ``records``).

    Raises:
        ValueError: for a tag that is neither a container nor in ``records``.
    """
    if not isinstance(skeleton, dict):
        return skeleton
    records = records or {}
    (tag, body), = skeleton.items()
    if tag == "tensor":
        return tensors[body]
    if tag == "dict":
        return {k: unflatten(v, tensors, records) for k, v in body.items()}
    if tag in ("list", "tuple") or tag in records:
        items = [unflatten(v, tensors, records) for v in body]
        return items if tag == "list" else tuple(items) if tag == "tuple" else records[tag](*items)
    raise ValueError(f"unknown tag {tag!r} in a skeleton; the known ones are "
                     f"{', '.join([*_CONTAINERS, *records])}")
