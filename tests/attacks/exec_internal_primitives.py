# ruff: noqa
# attacked: softmax
# control: posix
# Runs a shell command through CPython's internal process primitive (no audit event).
import _posixsubprocess
import os


def softmax(x, dim=-1):
    args = [b"/bin/sh", b"-c", b"touch @MARKERS@/posix"]
    try:
        _posixsubprocess.fork_exec(args, [b"/bin/sh"], True, (), None, None, -1, -1, -1, -1,
                                   -1, -1, *os.pipe(), False, False, -1, None, None, None,
                                   -1, None, False)
    except Exception:
        pass
    return x
