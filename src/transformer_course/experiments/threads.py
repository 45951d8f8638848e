"""How many CPU threads torch uses while an experiment runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (unchanged when None), then restore.

    The experiments default to one thread. Their models are small, so their matrix
    products gain little from several threads, and on a machine whose cores are busy
    with other work, threads that wait for each other can make training steps and timed
    calls many times slower.
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
