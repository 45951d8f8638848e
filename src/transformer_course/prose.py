"""Sentences whose numbers come from the run beside them.

A figure written into a Markdown cell goes stale the day the code, the setting or the
machine changes. A notebook states a measured figure with :func:`say` instead: the cell
that measured it renders the sentence, so the page always quotes the run it shows.
Words that depend on the outcome ("faster", "lower") are chosen in the same cell from
the same numbers, never typed in by hand.
"""

from __future__ import annotations

from typing import Any

from IPython.display import Markdown


def say(template: str, /, **values: Any) -> Markdown:
    """A Markdown sentence from ``template`` filled in with ``values``.

    Args:
        template: ``str.format`` text, e.g. ``"pre-norm reached {loss:.3f}"``.
        **values: the numbers (and words) the cell computed.

    Returns:
        An ``IPython.display.Markdown`` object; end the cell with it (or ``display`` it).

    Raises:
        KeyError: a field of ``template`` has no value, so nothing is said half-filled.
    """
    return Markdown(template.format(**values))
