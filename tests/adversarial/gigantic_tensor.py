# ruff: noqa
# attacked: softmax
# message: far larger than the expected output
import torch


def softmax(x, dim=-1):
    return torch.zeros(3000, 3000)
