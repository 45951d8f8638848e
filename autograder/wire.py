"""What crosses the process boundary: JSON plus tensors in safetensors files.

Nothing is ever unpickled. Case arguments (tensors, dicts of tensors, JSON values) are
split into a JSON skeleton with ``{"$t": key}`` placeholders and a flat ``{key: tensor}``
dict saved with safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

TENSOR = "$t"


def pack(value: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """JSON skeleton of ``value``; its tensors go into ``tensors`` under ``prefix...``."""
    if isinstance(value, Tensor):
        key = f"{prefix}#{len(tensors)}"
        tensors[key] = value.detach().contiguous().clone()
        return {TENSOR: key}
    if isinstance(value, dict):
        return {str(k): pack(v, prefix, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pack(v, prefix, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"case arguments must be tensors, dicts of tensors or JSON values, got {type(value).__name__}"
    )


def unpack(skeleton: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`pack`."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {TENSOR}:
            return tensors[skeleton[TENSOR]]
        return {k: unpack(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unpack(v, tensors) for v in skeleton]
    return skeleton


def save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def load_tensors(path: Path, max_bytes: int) -> dict[str, Tensor]:
    """Load a safetensors file written by a child, refusing one larger than ``max_bytes``."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"output file of {size} bytes is larger than the limit of {max_bytes}")
    return load_file(str(path))


def load_json(path: Path, max_bytes: int = 1 << 20) -> Any:
    """Read a JSON file a child wrote (size-limited)."""
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{path.name} is larger than {max_bytes} bytes")
    return json.loads(path.read_text(encoding="utf-8", errors="replace"))


def numel_limit(expected: dict[str, Tensor]) -> int:
    """The most elements the child may send for one case: far more than a right answer
    needs, far less than a memory bomb."""
    return max(4096, 16 * sum(t.numel() for t in expected.values()))

