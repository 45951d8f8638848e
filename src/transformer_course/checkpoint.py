"""Chapter 7: checkpoints, so that a stopped run resumes exactly where it was.

Resuming needs more than the model's weights: AdamW's running averages (without them
the first updates after a restart are as large as the very first ones), the step (the
learning-rate schedule is a function of it) and the state of the generator that draws
the batches (or the resumed run would see other data than the run it continues). With
all four, a run that stops and resumes computes exactly the losses of a run that never
stopped.

A checkpoint is one file written by ``torch.save`` holding a dict with the keys
``"model"`` (the model's ``state_dict()``), ``"optimizer"`` (the optimizer's
``state_dict()``), ``"step"`` (an int: the updates made so far) and ``"rng"`` (the
generator's ``get_state()``). It holds tensors and plain values only, so
``torch.load(path)`` reads it back with its safe default ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    generator: torch.Generator,
) -> None:
    """Write the model, optimizer, step and generator state to ``path`` (one file, in
    the format this module's docstring gives)."""
    ### BEGIN SOLUTION
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "step": int(step), "rng": generator.get_state()}, path)
    ### END SOLUTION


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> int:
    """Restore what :func:`save_checkpoint` wrote into ``model``, ``optimizer`` and
    ``generator`` (in place) and return the step to continue from."""
    ### BEGIN SOLUTION
    checkpoint = torch.load(path, map_location="cpu")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])  # moves the state to the parameters' device
    generator.set_state(checkpoint["rng"])
    return int(checkpoint["step"])
    ### END SOLUTION
