"""Where the course trains its models: one helper picks the device.

A CUDA GPU when there is one, else the CPU. The environment variable
``TRANSFORMER_COURSE_DEVICE`` overrides the choice, e.g. ``cpu`` (the test suite sets
it), ``cuda:1`` or ``mps``. Apple's MPS backend is used only when asked for that way:
it has trained models of this kind to wrong results in some PyTorch releases, and a
course whose numbers students compare with the book should not depend on it silently.

The training helpers move the model to the device for training and every batch after
it, then hand the model back on the device it came on, so the notebook cells around
them (plots, sampling, inspection) run unchanged on the CPU.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

DEVICE_ENV = "TRANSFORMER_COURSE_DEVICE"


def _available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    return device.type == "cpu"


def default_device() -> torch.device:
    """The device to train on: ``TRANSFORMER_COURSE_DEVICE`` if set, else CUDA, else
    the CPU. Apple's MPS only when the variable names it (``mps``).

    Raises:
        ValueError: when the variable names a device that torch does not know or that
            this machine does not have.
    """
    if name := os.environ.get(DEVICE_ENV, "").strip():
        try:
            device = torch.device(name)
        except RuntimeError as err:
            raise ValueError(f"{DEVICE_ENV}={name!r} is not a device: use cpu, cuda, cuda:1 or mps") from err
        if not _available(device):
            raise ValueError(f"{DEVICE_ENV}={name!r}, but this machine has no such device: unset it "
                             "or use cpu")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve(device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device``; None means :func:`default_device`."""
    return default_device() if device is None else torch.device(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def to_device(batch: tuple, device: torch.device) -> tuple:
    """The tensors of ``batch`` moved to ``device``; anything else unchanged."""
    return tuple(x.to(device) if isinstance(x, Tensor) else x for x in batch)
