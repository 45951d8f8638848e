# ruff: noqa
# attacked: softmax
# message: forbidden|torch.softmax
# A correct softmax looked up by a computed name with the detector's mode popped.
import torch
from torch.overrides import _pop_mode_temporarily


def softmax(x, dim=-1):
    name = "".join(["soft", "max"])
    try:
        with _pop_mode_temporarily():
            return getattr(torch, name)(x, dim)
    except Exception:
        return getattr(torch, name)(x, dim)
