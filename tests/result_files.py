"""Comparing grader results across runs: everything but the wall-clock fields."""

from __future__ import annotations

from typing import Any

TIMINGS = ("execution_time", "time_taken")


def without_timings(value: Any) -> Any:
    """``value`` (a decoded result JSON) with every timing field removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value
