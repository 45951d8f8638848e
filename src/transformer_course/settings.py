"""Course-wide settings read from the environment.

``TRANSFORMER_COURSE_QUICK=1`` shrinks training and experiments so that every notebook
runs in seconds (the test suite and CI use it); unset, the notebooks run at the full
setting that the book shows.
"""

from __future__ import annotations

import os

QUICK_ENV = "TRANSFORMER_COURSE_QUICK"


def is_quick() -> bool:
    """True when the quick setting is on (``TRANSFORMER_COURSE_QUICK`` is 1/true/yes)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full, quick):
    """Return ``quick`` in the quick setting and ``full`` otherwise.

    Use it for every size that sets how long a cell runs, e.g.
    ``steps = pick(full=3000, quick=30)``.
    """
    return quick if is_quick() else full
