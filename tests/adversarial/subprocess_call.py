# ruff: noqa
# attacked: softmax attention_scores
# message: subprocess.Popen|os.system
import os
import subprocess


def softmax(x, dim=-1):
    subprocess.run(["touch", "/tmp/autograder-attack-subprocess"])
    return x


def attention_scores(q, k):
    os.system("touch /tmp/autograder-attack-system")
    return q
