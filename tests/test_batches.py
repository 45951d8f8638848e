"""Batches from a memory-mapped token file: shifted targets, reproducible, int64."""

import numpy as np
import pytest
import torch

from transformer_course.batches import sample_batch, write_tokens


def test_windows_and_shifted_targets(tmp_path):
    tokens = write_tokens(tmp_path / "t.bin", list(range(1000, 1100)))
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    x, y = sample_batch(tokens, 6, 9, "cpu", torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (6, 9) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y - x, torch.ones_like(x))  # consecutive ids: each target is the next one
    assert int(y.max()) <= 1099


def test_same_generator_state_same_batch_and_every_start_reachable(tmp_path):
    tokens = write_tokens(tmp_path / "t.bin", np.arange(12))
    a = sample_batch(tokens, 4, 5, "cpu", torch.Generator().manual_seed(3))
    b = sample_batch(tokens, 4, 5, "cpu", torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    starts = set(sample_batch(tokens, 500, 5, "cpu", torch.Generator().manual_seed(0))[0][:, 0].tolist())
    assert starts == set(range(12 - 5))  # the last start still leaves room for the last target


def test_too_short_and_too_large():
    with pytest.raises(ValueError):
        sample_batch(np.arange(5), 1, 5)
    with pytest.raises(ValueError):
        write_tokens("/dev/null", [70_000])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_lands_on_the_device(tmp_path):
    x, y = sample_batch(write_tokens(tmp_path / "t.bin", range(50)), 2, 4, "cuda")
    assert x.is_cuda and y.is_cuda
