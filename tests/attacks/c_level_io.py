# ruff: noqa
# attacked: softmax attention_scores
# control: torch fifo safetensors
# File I/O in C and C++ that raises no audit event.
import os

import torch


def softmax(x, dim=-1):
    for step in (lambda: torch.save(x, "@MARKERS@/torch"),
                 lambda: os.mkfifo("@MARKERS@/fifo"),
                 lambda: __import__("safetensors.torch").torch.save_file({"x": x}, "@MARKERS@/safetensors")):
        try:
            step()
        except Exception:
            pass
    return x


def attention_scores(q, k):
    try:  # the file's bytes, read by C++ (no audit event)
        secret = torch.from_file("@REPO@/solutions/01_attention.ipynb", size=64, dtype=torch.uint8)
    except Exception:
        return q
    raise RuntimeError(f"LEAKED {bytes(secret.tolist())!r}")
