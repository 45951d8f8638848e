"""Stored check data: what ``check`` needs, saved at release time, so that the student
edition judges answers without the reference code.

The release tool saves each exercise's prepared data (the visible cases, the reference's
outputs on them, the catalogued mistakes' outputs: whatever ``prepare.prepare`` returns) as
two files in ``checks/stored/``: ``<exercise>-<seed>.safetensors`` with every tensor, and
``<exercise>-<seed>.json`` with the structure around them, written by
:mod:`transformer_course.tensor_tree` (an ``exercise.Case`` is tagged ``"case"``). Nothing is
pickled and nothing read back is executed.

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
from transformer_course.tensor_tree import flatten, unflatten

STORE = Path(__file__).with_name("stored")
RECORDS = {"case": Case}  # the dataclasses stored data holds


def save(value: Any, stem: Path) -> None:
    """Write ``value`` as ``stem.json`` and ``stem.safetensors``."""
    tensors: dict[str, Tensor] = {}
    skeleton = flatten(value, tensors, records=RECORDS)
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(stem.with_suffix(".safetensors")))
    stem.with_suffix(".json").write_text(json.dumps(skeleton, sort_keys=True) + "\n")


def load(stem: Path) -> Any:
    """Read what :func:`save` wrote."""
    # Fresh copies: a tensor read in place from the file may sit at an address that
    # sends matmul down another kernel, changing a float32 result in its last digit.
    tensors = {k: v.clone() for k, v in load_file(str(stem.with_suffix(".safetensors"))).items()}
    return unflatten(json.loads(stem.with_suffix(".json").read_text()), tensors, RECORDS)


def stem(exercise: str, seed: int, store: Path | None = None) -> Path:
    """Where the data of ``exercise``'s cases for ``seed`` is stored (in ``store``,
    the package's own store by default)."""
    return (store or STORE) / f"{exercise}-{seed}"


def load_prepared(exercise: str, seed: int) -> Any | None:
    """The stored prepared data of ``exercise`` for ``seed``; None when there is none
    (always in the instructor edition)."""
    path = stem(exercise, seed)
    return load(path) if path.with_suffix(".json").is_file() else None
