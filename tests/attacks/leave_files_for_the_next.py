# ruff: noqa
# attacked: softmax
# Leaves files outside its working directory for the next submission graded by the same
# worker (a channel between students); the test's next submission looks for them.
import os


def softmax(x, dim=-1):
    for folder in ("/tmp", "/dev/shm", "/dev", "..", "/x/in", "/x/out"):
        try:
            with open(os.path.join(folder, "left-for-the-next"), "w") as f:
                f.write("x")
        except OSError:
            pass
    return x
