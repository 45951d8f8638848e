# ruff: noqa
# attacked: softmax attention_scores
# control: cffi ctypes
# libc's system() and fork() through cffi and ctypes.
import cffi


def softmax(x, dim=-1):
    try:
        ffi = cffi.FFI()
        ffi.cdef("int system(const char *command);")
        ffi.dlopen(None).system(b"touch @MARKERS@/cffi")
    except Exception:
        pass
    return x


def attention_scores(q, k):
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        if libc.syscall(57) == 0:  # fork
            with open("@MARKERS@/ctypes", "w") as f:
                f.write("child")
            libc._exit(0)
    except Exception:
        pass
    return q
