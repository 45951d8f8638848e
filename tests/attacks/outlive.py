# ruff: noqa
# attacked: softmax attention_scores
# control: outlive thread
# wait: 2
# A process, and a thread, that outlive the grade and write a file later.
import os
import threading
import time


def _later(name):
    time.sleep(1.0)
    with open(f"@MARKERS@/{name}", "w") as f:
        f.write("still here")


def softmax(x, dim=-1):
    try:
        if os.fork() == 0:
            os.setsid()
            _later("outlive")
            os._exit(0)
    except OSError:
        pass
    return x


def attention_scores(q, k):
    threading.Thread(target=_later, args=("thread",)).start()
    return q
