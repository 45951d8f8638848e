"""The exact versions the course installs: ``constraints.txt`` at the repository's root,
one ``name==version`` line per package (``#`` starts a comment). Release tools, the
Gradescope package and the tests read the pins through :func:`read_pins`."""

from __future__ import annotations

import re
from pathlib import Path


def normalize(name: str) -> str:
    """A package name as pip compares them: lower case, ``-`` for ``_`` and ``.``."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def read_pins(root: Path) -> dict[str, str]:
    """``{normalized name: version}`` of ``root / "constraints.txt"``.

    Raises:
        ValueError: a line that is neither a comment nor an exact ``name==version`` pin,
            or a package pinned twice.
    """
    pins = {}
    for number, line in enumerate((root / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name or not version:
            raise ValueError(f"constraints.txt, line {number}: {line!r} is not an exact pin (name==version)")
        if normalize(name) in pins:
            raise ValueError(f"constraints.txt, line {number}: {name.strip()} is pinned twice")
        pins[normalize(name)] = version.strip()
    return pins
