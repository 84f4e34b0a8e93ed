"""What this kernel and host offer for confining a worker, probed once and cached.

:func:`probe` returns :class:`KernelFeatures`: the Landlock ABI, seccomp filters, the
namespaces a child may enter (network, PID, mount), the cgroup controllers this process
can create groups in (v1 and v2, each), whether a uid drop is possible (root or
``CAP_SETUID``), and the rlimits. Namespaces are tried in a short-lived child process
(``unshare`` cannot be undone in the caller); the rest is asked of the kernel directly.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tether.isolation._landlock import abi_version
from tether.isolation._seccomp import ARCHES

__all__ = ["CgroupMount", "KernelFeatures", "cgroup_mounts", "own_cgroup", "probe", "probe_self"]

_PR_GET_SECCOMP = 21
_CAP_SETUID = 7
_NAMESPACES = {"network": 0x40000000, "pid": 0x20000000, "mount": 0x00020000}
_CONTROLLERS = ("memory", "pids", "cpuacct", "freezer")
_NAMESPACE_PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
for name, flag in zip(sys.argv[1::2], sys.argv[2::2]):
    if libc.unshare(int(flag)) == 0:
        print(name)
"""


@dataclass(frozen=True, slots=True)
class CgroupMount:
    """A mounted cgroup hierarchy: v1 with its controllers, or the v2 one."""

    version: int
    path: str
    controllers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KernelFeatures:
    """What confinement this host can give a worker."""

    arch: str
    seccomp: bool
    landlock_abi: int
    namespaces: tuple[str, ...]
    cgroup_v1: tuple[str, ...]  # controllers writable here
    cgroup_v2: tuple[str, ...]
    uid_drop: bool
    rlimits: tuple[str, ...]

    @property
    def landlock(self) -> bool:
        return self.landlock_abi > 0

    @property
    def cgroup_controllers(self) -> frozenset[str]:
        return frozenset(self.cgroup_v1) | frozenset(self.cgroup_v2)

    def to_dict(self) -> dict[str, object]:
        return {
            "arch": self.arch,
            "seccomp": self.seccomp,
            "landlock_abi": self.landlock_abi,
            "namespaces": list(self.namespaces),
            "cgroup_v1": list(self.cgroup_v1),
            "cgroup_v2": list(self.cgroup_v2),
            "uid_drop": self.uid_drop,
            "rlimits": list(self.rlimits),
        }


def _has_seccomp(arch: str) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return arch in ARCHES and libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) >= 0


def _can_setuid() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << _CAP_SETUID))
    return False


def _namespaces() -> tuple[str, ...]:
    args = [str(v) for item in _NAMESPACES.items() for v in item]
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
            [sys.executable, "-I", "-S", "-c", _NAMESPACE_PROBE, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(name for name in done.stdout.split() if name in _NAMESPACES)


def cgroup_mounts() -> list[CgroupMount]:
    """Every cgroup hierarchy mounted read-write, from /proc/self/mountinfo."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 6 or len(extra) < 3:  # noqa: PLR2004 - mountinfo's layout
            continue
        kind, options, mount_options = extra[0], extra[2].split(","), fields[5].split(",")
        if "rw" not in mount_options:
            continue
        if kind == "cgroup":
            controllers = tuple(c for c in options if c in _CONTROLLERS)
            if controllers:
                found.append(CgroupMount(1, fields[4], controllers))
        elif kind == "cgroup2":
            try:
                text = (Path(fields[4]) / "cgroup.controllers").read_text()
            except OSError:
                continue
            found.append(CgroupMount(2, fields[4], tuple(text.split())))
    return found


def own_cgroup(mount: CgroupMount, pid: int | str = "self") -> str:
    """The cgroup (path under ``mount``) that ``pid`` is in, for that hierarchy."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",")
        if (mount.version == 2 and controllers == "") or (  # noqa: PLR2004 - cgroup v2
            mount.version == 1 and set(names) & set(mount.controllers)
        ):
            return path
    return "/"


def _writable(mount: CgroupMount) -> bool:
    base = Path(mount.path) / own_cgroup(mount).lstrip("/")
    probe_dir = base / f"tether-probe-{os.getpid()}"
    try:
        probe_dir.mkdir()
        probe_dir.rmdir()
    except OSError:
        return False
    return True


def _cgroups() -> tuple[tuple[str, ...], tuple[str, ...]]:
    v1: list[str] = []
    v2: list[str] = []
    for mount in cgroup_mounts():
        if not _writable(mount):
            continue
        if mount.version == 1:
            v1 += mount.controllers
        else:
            v2 += [c for c in mount.controllers if c in ("memory", "pids", "cpu")]
    return tuple(sorted(set(v1))), tuple(sorted(set(v2)))


@functools.cache
def probe_self() -> KernelFeatures:
    """The quick probe a worker makes of itself: no child process, no cgroup. Namespaces
    are listed when the process may create them (root or ``CAP_SETUID``, taken as
    privileged); :func:`tether.isolation._sandbox.apply` finds out for sure by trying."""
    import resource

    arch = platform.machine()
    privileged = _can_setuid()
    return KernelFeatures(
        arch=arch,
        seccomp=_has_seccomp(arch),
        landlock_abi=abi_version(),
        namespaces=tuple(_NAMESPACES) if privileged else (),
        cgroup_v1=(),
        cgroup_v2=(),
        uid_drop=privileged,
        rlimits=tuple(
            n
            for n in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_NPROC")
            if hasattr(resource, n)
        ),
    )


@functools.cache
def probe() -> KernelFeatures:
    """What this host offers (asked once per process)."""
    import resource

    arch = platform.machine()
    v1, v2 = _cgroups()
    rlimits = tuple(
        name
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_NPROC")
        if hasattr(resource, name)
    )
    return KernelFeatures(
        arch=arch,
        seccomp=_has_seccomp(arch),
        landlock_abi=abi_version(),
        namespaces=_namespaces(),
        cgroup_v1=v1,
        cgroup_v2=v2,
        uid_drop=_can_setuid(),
        rlimits=rlimits,
    )
