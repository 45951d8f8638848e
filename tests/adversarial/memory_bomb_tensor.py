# ruff: noqa
# attacked: softmax
# message: allocate|[Mm]emory
import torch


def softmax(x, dim=-1):
    return torch.empty(1 << 40)
