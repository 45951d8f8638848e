# ruff: noqa
# attacked: softmax attention_scores causal_mask
# control: dirfd race victim
# Writes outside the work dir through a directory fd and a symlink race; deletes a file.
import os


def softmax(x, dim=-1):
    try:
        root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        fd = os.open("@MARKERS@/dirfd".lstrip("/"), os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=root)
        os.write(fd, b"x")
    except OSError:
        pass
    return x


def attention_scores(q, k):
    for i in range(300):
        try:
            if os.path.lexists("link"):
                os.unlink("link")
            os.symlink("ok.txt" if i % 2 else "@MARKERS@/race", "link")
            with open("link", "a") as f:
                f.write("x")
        except OSError:
            pass
    return q


def causal_mask(seq_len):
    try:
        os.unlink("@VICTIM@")
    except OSError:
        pass
    return None
