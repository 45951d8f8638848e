"""What crosses the process boundary: JSON plus tensors in safetensors files.

Nothing is ever unpickled. Case arguments (tensors, dicts of tensors, JSON values) are
split by :mod:`transformer_course.tensor_tree` into a JSON skeleton, sent in the job,
and a flat ``{key: tensor}`` dict saved with safetensors. Outputs come back as a
safetensors file and a JSON report, both read without following links, size-limited,
and (the JSON) checked against its schema before anything reads a field.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from safetensors.torch import load, save_file
from torch import Tensor


def save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, never through a link, refusing more than ``max_bytes``
    (a FIFO, a device or ``/dev/zero`` in its place is an error, never a wait)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{path.name} has {info.st_size} bytes, more than the limit of {max_bytes}")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise ValueError(f"{path.name} is larger than the limit of {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_tensors(path: Path, max_bytes: int) -> dict[str, Tensor]:
    """Load a safetensors file written by a child, refusing one larger than ``max_bytes``."""
    return load(read_regular(path, max_bytes))


def load_json(path: Path, max_bytes: int = 1 << 20) -> Any:
    """Read a JSON file a child wrote (size-limited; too deep a nesting is a ValueError)."""
    try:
        return json.loads(read_regular(path, max_bytes).decode("utf-8", errors="replace"))
    except RecursionError:
        raise ValueError(f"{path.name} is nested too deeply") from None


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return value[:limit]


def check_report(data: Any) -> dict:
    """An exercise's JSON report, as the worker's child writes it, checked field by field:
    ``{"cases": [{"forbidden": [str], "reference": str, "not_implemented": true,
    "error": str}], "missing": bool, "seccomp": bool}``; a copy holding only those.

    Raises:
        ValueError: naming the first field of the wrong type.
    """
    if not isinstance(data, dict) or not isinstance(data.get("cases", []), list):
        raise ValueError("the report is not an object with a list of cases")
    cases = []
    for entry in data.get("cases", [])[:10_000]:
        if not isinstance(entry, dict):
            raise ValueError("a case of the report is not an object")
        case: dict[str, Any] = {}
        forbidden = entry.get("forbidden", [])
        if not isinstance(forbidden, list):
            raise ValueError("'forbidden' is not a list")
        case["forbidden"] = [_text(f, 200) for f in forbidden[:10]]
        for key, limit in (("reference", 200), ("error", 2000)):
            if key in entry:
                case[key] = _text(entry[key], limit)
        if entry.get("not_implemented") is True:
            case["not_implemented"] = True
        cases.append(case)
    return {"cases": cases, "missing": data.get("missing") is True,
            "seccomp": data.get("seccomp") is True}


def check_probe(data: Any) -> dict:
    """The probe's JSON (``{"problems": [{"cell": str, "line": int, "error": str}],
    "seccomp": bool}``), checked as :func:`check_report` checks a report."""
    if not isinstance(data, dict) or not isinstance(data.get("problems", []), list):
        raise ValueError("the probe's report is not an object with a list of problems")
    problems = []
    for item in data.get("problems", [])[:200]:
        if not isinstance(item, dict) or type(item.get("line")) is not int:
            raise ValueError("a problem in the probe's report is malformed")
        problems.append({"cell": _text(item.get("cell"), 100), "line": item["line"],
                         "error": _text(item.get("error"), 500)})
    return {"problems": problems, "seccomp": data.get("seccomp") is True}


def numel_limit(expected: dict[str, Tensor]) -> int:
    """The most elements the child may send for one case: far more than a right answer
    needs, far less than a memory bomb."""
    return max(4096, 16 * sum(t.numel() for t in expected.values()))

