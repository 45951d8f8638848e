"""A kernel-enforced system-call filter for a grading child (seccomp BPF, x86-64).

Loaded by the child itself (``prctl(PR_SET_SECCOMP)``) after the worker forked it and
before any student code runs, so the interpreter could still be started normally; once
loaded it cannot be removed, and it holds whatever Python does (C extensions, ctypes,
CPython's internal process primitives alike). Refused with ``EPERM``:

- running programs and new processes (``execve``, ``fork``, ``vfork``, ``clone`` without
  ``CLONE_THREAD`` or with new namespaces); threads stay, torch uses them. ``clone3``
  answers ``ENOSYS`` so that the C library falls back to ``clone``, whose flags the
  filter can read;
- sockets, ``ptrace`` and reading or writing another process's memory;
- ``mknod`` (FIFOs, devices), mounts, new namespaces, ``chroot``, changing file modes or
  owners (the worker's output folder is made read-only with ``chmod``);
- signals to any process but the child itself, pidfds, io_uring (its requests bypass
  this filter), BPF, perf events, userfaultfd, keyrings and kernel modules.

The filter is built by hand (:func:`build`): no maintained Python binding of libseccomp
is installed with the course's pins. ``tests/test_attack_suite.py`` checks each rule.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
X32_BIT = 0x40000000
CLONE_THREAD = 0x00010000
CLONE_NAMESPACES = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET

_DENIED = {  # x86-64 system call numbers (asm/unistd_64.h)
    "execve": 59, "execveat": 322, "fork": 57, "vfork": 58,
    "socket": 41, "socketpair": 53, "ptrace": 101, "process_vm_readv": 310,
    "process_vm_writev": 311, "process_madvise": 440, "mknod": 133, "mknodat": 259,
    "tkill": 200, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "pidfd_open": 434,
    "pidfd_send_signal": 424, "pidfd_getfd": 438, "mount": 165, "umount2": 166,
    "unshare": 272, "setns": 308, "pivot_root": 155, "chroot": 161, "move_mount": 429,
    "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452,
    "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260, "keyctl": 250,
    "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "kexec_load": 246, "kexec_file_load": 320,
    "init_module": 175, "finit_module": 313, "delete_module": 176,
    "name_to_handle_at": 303, "open_by_handle_at": 304,
}
_CLONE, _CLONE3, _KILL, _TGKILL = 56, 435, 62, 234

# classic BPF opcodes and seccomp return values
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO, _KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (arg 0, low 32 bits)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def supported() -> bool:
    """True where this filter can be built (Linux on x86-64)."""
    return os.uname().sysname == "Linux" and platform.machine() == "x86_64"


def build(own_pid: int) -> list[tuple[int, int, int, int]]:
    """The filter program: ``(code, jump if true, jump if false, k)`` instructions.
    ``own_pid`` is the only process ``kill``/``tgkill`` may target."""
    denied = sorted(set(_DENIED.values()))
    # labels, placed after the checks: ALLOW, EPERM, ENOSYS, KILL and two argument checks
    body: list[tuple[int, object, object, int]] = [
        (_LD_ABS, 0, 0, _ARCH), (_JEQ, 0, "KILL", AUDIT_ARCH_X86_64),
        (_LD_ABS, 0, 0, _NR), (_JGE, "EPERM", 0, X32_BIT),
        *[(_JEQ, "EPERM", 0, nr) for nr in denied],
        (_JEQ, "ENOSYS", 0, _CLONE3), (_JEQ, "CLONE", 0, _CLONE),
        (_JEQ, "SELF", 0, _KILL), (_JEQ, "SELF", 0, _TGKILL),
        (_RET, 0, 0, _ALLOW),
    ]
    labels = {"CLONE": len(body)}
    body += [(_LD_ABS, 0, 0, _ARG0), (_JSET, "EPERM", 0, CLONE_NAMESPACES),
             (_JSET, "ALLOW", "EPERM", CLONE_THREAD)]
    labels["SELF"] = len(body)
    body += [(_LD_ABS, 0, 0, _ARG0), (_JEQ, "ALLOW", "EPERM", own_pid)]
    for name, value in (("ALLOW", _ALLOW), ("EPERM", _ERRNO | errno.EPERM),
                        ("ENOSYS", _ERRNO | errno.ENOSYS), ("KILL", _KILL_PROCESS)):
        labels[name] = len(body)
        body.append((_RET, 0, 0, value))

    def offset(at: int, target: object) -> int:
        if isinstance(target, int):
            return target
        jump = labels[target] - at - 1
        assert 0 <= jump < 256, "seccomp jump out of range"
        return jump

    return [(code, offset(i, jt), offset(i, jf), k) for i, (code, jt, jf, k) in enumerate(body)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Load the filter into this process (and every thread it starts) for good.

    Raises:
        OSError: when the kernel refuses it.
    """
    program = build(os.getpid())
    raw = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    fprog = _Program(len(program), ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def active() -> bool:
    """True when this process runs under a seccomp filter (``Seccomp: 2``)."""
    try:
        with open("/proc/self/status") as f:
            return any(line.split() == ["Seccomp:", "2"] for line in f)
    except OSError:
        return False
