# ruff: noqa
# attacked: softmax attention_scores causal_mask padding_mask
# Reads what must stay out of reach: solutions, tests, .git, the real reference and
# checks, and the hidden seed from /proc.
import hashlib
import os


def _leak(what):
    raise RuntimeError(f"LEAKED {what}")


def softmax(x, dim=-1):
    for path in ("@REPO@/solutions/01_attention.ipynb", "@REPO@/tests/test_autograder.py",
                 "@REPO@/.git/HEAD", "@REPO@/tests/alternatives"):
        if os.path.exists(path):
            _leak(path)
    return x


def attention_scores(q, k):
    for path, digest in (("@REFERENCE@", "@SHA_REFERENCE@"), ("@CHECKS@", "@SHA_CHECKS@")):
        try:
            with open(path, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() == digest:
                    _leak(path)
        except OSError:
            pass
    return q


def causal_mask(seq_len):
    for entry in os.listdir("/proc"):
        for name in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{name}", "rb") as f:
                    if b"@SEED@" in f.read():
                        _leak(f"/proc/{entry}/{name}")
            except OSError:
                pass
    return None


def padding_mask(lengths, seq_len):
    import inspect

    import transformer_course.attention as reference

    try:
        if "BEGIN SOLUTION" in inspect.getsource(reference):
            _leak("reference source")
    except (OSError, TypeError):
        pass
    return None
