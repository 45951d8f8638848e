"""The course rubric: points per exercise, from ``rubric.toml`` (one file for the checks
and the autograder)."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources


@cache
def rubric() -> dict[str, dict[str, int]]:
    """``{chapter id: {exercise name: points}}`` in course order."""
    text = resources.files("transformer_course.checks").joinpath("rubric.toml").read_text()
    return tomllib.loads(text)


def points_for(chapter: str, exercise: str) -> int:
    """Points of one exercise; raises KeyError naming what is missing from the rubric."""
    try:
        return rubric()[chapter][exercise]
    except KeyError:
        raise KeyError(f"rubric.toml has no entry for {chapter}.{exercise}") from None
