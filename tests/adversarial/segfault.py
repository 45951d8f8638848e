# ruff: noqa
# attacked: softmax attention_scores
# message: SIGSEGV|ctypes
import ctypes
import faulthandler


def softmax(x, dim=-1):
    faulthandler._sigsegv()


def attention_scores(q, k):
    return ctypes.string_at(0)
