"""The blocks an experiment builds its models from: yours, or the course's reference.

An experiment takes ``blocks``, any object with the exercises' names as attributes: the
module :mod:`transformer_course.mine` (your kept blocks), a ``types.SimpleNamespace`` of
the classes and functions a notebook defined, or None for the course's reference. This
is the pattern of :func:`transformer_course.pretrained.minilm.load_minilm`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def blocks_for(experiment: str, blocks: object | None, reference: dict[str, Any]) -> SimpleNamespace:
    """The objects ``experiment`` uses, taken from ``blocks`` by name.

    Args:
        experiment: the experiment's name, for the error message.
        blocks: any object with an attribute for every name of ``reference``, or None.
        reference: ``{name: the course's reference}``, what the experiment needs and what
            it uses when ``blocks`` is None.

    Returns:
        A namespace with one attribute per name of ``reference``.

    Raises:
        AttributeError: when ``blocks`` lacks some of the names (said which).
    """
    if blocks is None:
        return SimpleNamespace(**reference)
    missing = [name for name in reference if not hasattr(blocks, name)]
    if missing:
        raise AttributeError(
            f"{experiment} builds its models from {', '.join(reference)}, and {blocks!r} has no "
            f"{', '.join(missing)}: pass an object with all of them (transformer_course.mine, or a "
            "types.SimpleNamespace of your classes), or blocks=None for the course's reference"
        )
    return SimpleNamespace(**{name: getattr(blocks, name) for name in reference})
