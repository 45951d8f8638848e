# ruff: noqa
# attacked: softmax
# message: forbidden|torch.softmax
# A correct softmax from torch.special.
import torch


def softmax(x, dim=-1):
    return torch.special.softmax(x, dim)
