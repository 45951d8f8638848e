# ruff: noqa
# attacked: softmax attention_scores
# Signals the grader (SIGUSR1 only: the test counts it) and the worker.
import os
import signal


def softmax(x, dim=-1):
    for pid in (int("@GRADER_PID@"), os.getppid(), 1):
        try:
            os.kill(pid, signal.SIGUSR1)
        except OSError:
            pass
    return x


def attention_scores(q, k):
    try:
        os.kill(int("@GRADER_PID@"), signal.SIGUSR1)
    except OSError:
        pass
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                os.kill(int(entry), signal.SIGUSR1)
            except OSError:
                pass
    return q
