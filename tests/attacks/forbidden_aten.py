# ruff: noqa
# attacked: softmax
# message: forbidden|torch.softmax
# A correct softmax through the aten operator, below torch-function modes.
import torch


def softmax(x, dim=-1):
    return torch.ops.aten._softmax(x, dim, False)
