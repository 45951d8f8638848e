# ruff: noqa
# attacked: softmax
# message: forbidden|torch.softmax|reference
# A correct softmax that switches the in-process forbidden detector off first.
import torch


def softmax(x, dim=-1):
    with torch._C.DisableTorchFunction():
        return getattr(torch, "soft" + "max")(x, dim)
