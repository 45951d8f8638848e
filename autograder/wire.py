"""What crosses the process boundary: JSON plus tensors in safetensors files.

Nothing is ever unpickled. Case arguments (tensors, dicts of tensors, JSON values) are
split by :mod:`transformer_course.tensor_tree` into a JSON skeleton, sent in the job,
and a flat ``{key: tensor}`` dict saved with safetensors. Outputs come back as a
safetensors file and a JSON report, both size-limited when read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor


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

