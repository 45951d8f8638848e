# ruff: noqa
# attacked: softmax
# control: mp
# Starts a program through multiprocessing's helpers.
import multiprocessing.util


def softmax(x, dim=-1):
    try:
        multiprocessing.util.spawnv_passfds(b"/bin/sh", [b"sh", b"-c", b"touch @MARKERS@/mp"], [])
    except Exception:
        pass
    return x
