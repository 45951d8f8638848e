# ruff: noqa
# attacked: softmax attention_scores causal_mask
# Writes deeply nested and type-confused JSON as its own report, then exits at once.
import os


def softmax(x, dim=-1):
    os.write(3, b"[" * 200_000)
    os._exit(0)


def attention_scores(q, k):
    os.write(3, b'{"cases": [{"forbidden": {"a": 1}, "error": [1], "reference": 5}], "missing": "yes"}')
    os._exit(0)


def causal_mask(seq_len):
    os.write(3, b'{"cases": [' + b'{"forbidden": [], "error": "x"},' * 100_000 + b'{}]}')
    os.write(4, b"\xff" * 64)
    os._exit(0)
