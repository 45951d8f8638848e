# ruff: noqa
# attacked: softmax attention_scores
# message: [Mm]emory|allocate|SIGKILL|took too long
import torch


def softmax(x, dim=-1):
    hog = []
    while True:
        hog.append(bytearray(1 << 28))  # grows until the address-space limit (or the clock) stops it


def attention_scores(q, k):
    return [torch.ones(1 << 26) for _ in range(1 << 10)]  # 256 MiB each, touched
