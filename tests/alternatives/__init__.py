"""Alternative correct implementations of every exercise, one module per chapter.

Each module maps exercise names to variants in ``ALTERNATIVES``; :func:`load` returns
them all, keyed by chapter."""

import importlib
from pathlib import Path


def load() -> dict[str, dict[str, list]]:
    """``{chapter: {exercise: [variants]}}`` for every module of this folder."""
    found = {}
    for path in sorted(Path(__file__).parent.glob("ch[0-9][0-9]_*.py")):
        module = importlib.import_module(f"{__name__}.{path.stem}")
        found[path.stem[2:]] = module.ALTERNATIVES
    return found
