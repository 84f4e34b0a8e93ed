"""Landlock through raw syscalls: which paths a process may read, write and execute.

:func:`abi_version` asks the kernel which Landlock ABI it speaks (0: none).
:class:`Ruleset` handles every filesystem right the ABI knows (so anything not granted
is denied), TCP bind/connect when asked (ABI 4), and scopes signals and abstract Unix
sockets to the sandbox (ABI 6: the process cannot signal anything outside its domain).
Rules are added while the caller may still open the paths; :meth:`Ruleset.restrict`
applies them to the calling thread (needs ``no_new_privs``), irrevocably.
"""

from __future__ import annotations

import ctypes
import os
import stat

__all__ = [
    "EXECUTE",
    "READ",
    "WRITE",
    "Ruleset",
    "abi_version",
]

_SYS_CREATE_RULESET = 444  # the same number on x86_64 and aarch64
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# filesystem rights, by the ABI that introduced them
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_V1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV

READ = _FS_READ_FILE | _FS_READ_DIR
EXECUTE = _FS_EXECUTE | _FS_READ_FILE
WRITE = (_FS_V1 & ~_FS_EXECUTE) | _FS_REFER | _FS_TRUNCATE | _FS_IOCTL_DEV

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def _syscall(number: int, *args: object) -> int:
    result = int(_libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def abi_version() -> int:
    """The Landlock ABI this kernel offers; 0 when it has none (or it is disabled)."""
    try:
        return _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    except OSError:
        return 0


def _handled_fs(abi: int) -> int:
    rights = _FS_V1
    if abi >= 2:  # noqa: PLR2004 - ABI numbers
        rights |= _FS_REFER
    if abi >= 3:  # noqa: PLR2004
        rights |= _FS_TRUNCATE
    if abi >= 5:  # noqa: PLR2004
        rights |= _FS_IOCTL_DEV
    return rights


class Ruleset:
    """A Landlock ruleset being built: :meth:`allow` paths, then :meth:`restrict`."""

    def __init__(self, abi: int, *, deny_tcp: bool) -> None:
        self.abi = abi
        self.handled = _handled_fs(abi)
        attr = _RulesetAttr(self.handled, 0, 0)
        size = 8
        if abi >= 4:  # noqa: PLR2004
            attr.handled_access_net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if deny_tcp else 0
            size = 16
        if abi >= 6:  # noqa: PLR2004
            attr.scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL
            size = 24
        self.scoped = bool(attr.scoped)
        self.fd = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
        self.skipped: list[str] = []  # paths that did not exist

    def allow(self, path: str, rights: int) -> None:
        """Grant ``rights`` on ``path`` and beneath it (a file gets only file rights)."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            self.skipped.append(path)
            return
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                rights &= _FILE_RIGHTS
            rule = _PathBeneath(rights & self.handled, fd)
            _syscall(_SYS_ADD_RULE, self.fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
        finally:
            os.close(fd)

    def restrict(self) -> None:
        """Apply the ruleset to the calling thread and its future children."""
        try:
            _syscall(_SYS_RESTRICT_SELF, self.fd, 0)
        finally:
            os.close(self.fd)
