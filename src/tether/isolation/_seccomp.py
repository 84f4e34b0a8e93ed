"""A seccomp filter built by hand: classic BPF over ``struct seccomp_data``, no libseccomp.

:func:`build_filter` returns the program as bytes (an array of ``struct sock_filter``);
:func:`install` loads it with ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`` (the caller
has set ``no_new_privs`` or holds ``CAP_SYS_ADMIN``). The filter:

- kills the process on a foreign audit architecture (a 32-bit or x32 entry point would
  otherwise bypass every rule, since syscall numbers differ);
- answers ``EPERM`` for the syscalls in :data:`ALWAYS_DENIED` (io_uring, ptrace,
  process_vm_readv/writev, bpf, mount and friends, unshare, setns, reboot, kexec, module
  loading, perf_event_open, keyctl/add_key/request_key, open_by_handle_at, ...);
- answers ``EPERM`` for ``clone`` with any namespace flag, and ``ENOSYS`` for
  ``clone3`` (its flags sit behind a pointer a filter cannot read; glibc then falls
  back to ``clone``, which the filter can check);
- without ``exec``: ``EPERM`` for ``execve`` and ``execveat``;
- without ``network``: ``EPERM`` for ``socket`` with a domain other than ``AF_UNIX``.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

__all__ = ["ALWAYS_DENIED", "ARCHES", "build_filter", "install"]

# syscall numbers per architecture: (audit arch, {name: number})
_X86_64 = {
    "execve": 59, "execveat": 322, "socket": 41, "clone": 56, "clone3": 435,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "bpf": 321,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "unshare": 272, "setns": 308, "reboot": 169, "kexec_load": 246,
    "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "swapon": 167, "swapoff": 168,
    "userfaultfd": 323, "acct": 163, "quotactl": 179, "kcmp": 312, "pidfd_getfd": 438,
    "process_madvise": 440, "iopl": 172, "ioperm": 173,
}  # fmt: skip
_AARCH64 = {
    "execve": 221, "execveat": 281, "socket": 198, "clone": 220, "clone3": 435,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "bpf": 280,
    "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "unshare": 97, "setns": 268, "reboot": 142, "kexec_load": 104,
    "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106,
    "perf_event_open": 241, "keyctl": 219, "add_key": 217, "request_key": 218,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "swapon": 224, "swapoff": 225,
    "userfaultfd": 282, "acct": 89, "quotactl": 60, "kcmp": 272, "pidfd_getfd": 438,
    "process_madvise": 440,
}  # fmt: skip
ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, _X86_64),
    "aarch64": (0xC00000B7, _AARCH64),
}

ALWAYS_DENIED = (
    "io_uring_setup", "io_uring_enter", "io_uring_register", "ptrace", "process_vm_readv",
    "process_vm_writev", "bpf", "mount", "umount2", "pivot_root", "chroot", "open_tree",
    "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare",
    "setns", "reboot", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "perf_event_open", "keyctl", "add_key", "request_key",
    "open_by_handle_at", "name_to_handle_at", "swapon", "swapoff", "userfaultfd", "acct",
    "quotactl", "kcmp", "pidfd_getfd", "process_madvise", "iopl", "ioperm",
)  # fmt: skip

_NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x00000080  # CLONE_NEWTIME
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
_AF_UNIX = 1
_X32_BIT = 0x40000000

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000

_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0 = 16  # low 32 bits of args[0] (little-endian, both arches)

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _deny(nr: int, err: int) -> list[bytes]:
    return [_op(_JEQ_K, nr, 0, 1), _op(_RET_K, _RET_ERRNO | err)]


def build_filter(*, exec_allowed: bool, network: bool, arch: str | None = None) -> bytes:
    """The filter program for this machine's architecture (or ``arch``)."""
    name = arch or platform.machine()
    if name not in ARCHES:
        raise OSError(errno.ENOSYS, f"no seccomp syscall table for architecture {name}")
    audit_arch, table = ARCHES[name]
    ops = [
        _op(_LD_W_ABS, _OFFSET_ARCH),
        _op(_JEQ_K, audit_arch, 1, 0),
        _op(_RET_K, _RET_KILL_PROCESS),
        _op(_LD_W_ABS, _OFFSET_NR),
    ]
    if name == "x86_64":  # x32 syscalls share the audit arch: refuse them all
        ops += [_op(_JGE_K, _X32_BIT, 0, 1), _op(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    denied = list(ALWAYS_DENIED) + ([] if exec_allowed else ["execve", "execveat"])
    for syscall in denied:
        if syscall in table:
            ops += _deny(table[syscall], errno.EPERM)
    ops += _deny(table["clone3"], errno.ENOSYS)
    ops += [  # clone: refuse namespace flags
        _op(_JEQ_K, table["clone"], 0, 4),
        _op(_LD_W_ABS, _OFFSET_ARG0),
        _op(_JSET_K, _NAMESPACE_FLAGS, 0, 1),
        _op(_RET_K, _RET_ERRNO | errno.EPERM),
        _op(_RET_K, _RET_ALLOW),
    ]
    if not network:  # socket: AF_UNIX only
        ops += [
            _op(_JEQ_K, table["socket"], 0, 4),
            _op(_LD_W_ABS, _OFFSET_ARG0),
            _op(_JEQ_K, _AF_UNIX, 0, 1),
            _op(_RET_K, _RET_ALLOW),
            _op(_RET_K, _RET_ERRNO | errno.EPERM),
        ]
    ops.append(_op(_RET_K, _RET_ALLOW))
    return b"".join(ops)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def install(program: bytes) -> None:
    """Load ``program`` into the calling thread (and every thread and child it starts)."""
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"loading the seccomp filter failed: {errno.errorcode.get(err, err)}")
