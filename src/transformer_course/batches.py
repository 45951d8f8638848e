"""Chapter 7: training batches drawn from a file of token ids.

A tokenized corpus of billions of tokens does not fit in memory, so it is kept on disk
as one flat array of ids (``uint16`` when the vocabulary has fewer than 65,536 tokens)
and opened with ``numpy.memmap``: the array is indexed like any other, and the operating
system reads only the pages a batch touches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def write_tokens(path: str | Path, ids: list[int] | Tensor | np.ndarray) -> np.memmap:
    """Store token ids in ``path`` as raw ``uint16`` and return the file opened read-only
    as an ``np.memmap``."""
    array = np.asarray(ids, dtype=np.int64)
    if array.size and (array.min() < 0 or array.max() >= 2**16):
        raise ValueError("uint16 holds token ids 0..65535 only")
    array.astype(np.uint16).tofile(path)
    return np.memmap(path, dtype=np.uint16, mode="r")


def sample_batch(
    tokens: np.ndarray,
    batch_size: int,
    context_length: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``batch_size`` random windows of ``tokens``: inputs and the targets one step ahead.

    The start offsets are drawn with one call,
    ``torch.randint(len(tokens) - context_length, (batch_size,), generator=generator)``,
    so that the same generator state gives the same batch in every implementation;
    window ``b`` starting at ``s`` gives ``x[b] = tokens[s : s + L]`` and
    ``y[b] = tokens[s + 1 : s + L + 1]`` (every start leaves room for the last target).

    Args:
        tokens: 1-D array of token ids, typically an ``np.memmap`` of ``uint16``.
        batch_size: ``B``.
        context_length: ``L``, the tokens the model reads; ``len(tokens) > L``.
        device: where the batch goes.
        generator: a CPU generator, for reproducible batches.

    Returns:
        ``(x, y)``, two LongTensors ``(B, L)`` on ``device``.
    """
    ### BEGIN SOLUTION
    if len(tokens) <= context_length:
        raise ValueError(f"{len(tokens)} tokens cannot fill a window of {context_length} + 1")
    starts = torch.randint(len(tokens) - context_length, (batch_size,), generator=generator)
    # read only the windows from the file; int64 is the dtype embeddings and losses index with
    windows = np.stack([np.asarray(tokens[s : s + context_length + 1], dtype=np.int64)
                        for s in starts.tolist()])
    batch = torch.from_numpy(windows).to(device)
    return batch[:, :-1], batch[:, 1:]
    ### END SOLUTION
