"""The host's side of a worker's confinement: a cgroup per worker, and killing all of it.

:class:`Confinement` makes one group per hierarchy it can write (cgroup v1 memory, pids,
freezer and cpuacct, or cgroup v2), under the host's own group, named after the worker.
It writes the limits (``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` or
``memory.max``; ``pids.max``), takes the worker's pid (:meth:`add`; its children follow
it in), reports :meth:`usage`, and :meth:`kill_all` ends every process in it (frozen
first where a freezer exists, so nothing forks while it is being killed). Without a
writable cgroup it falls back to the process groups of the pids it was given.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tether.isolation._probe import CgroupMount, cgroup_mounts, own_cgroup

__all__ = ["Confinement", "Usage"]

_KILL_ROUNDS = 200
_NS_PER_S = 1e9


@dataclass(frozen=True, slots=True)
class Usage:
    """What a confined worker uses now: ``None`` where nothing measures it."""

    memory: int | None  # bytes charged to the group (RSS and page cache)
    memory_peak: int | None
    cpu: float | None  # seconds of CPU, user + system, every process in it
    processes: int


class Confinement:
    """A worker's cgroups; see the module docstring. Use :func:`tether.isolation._sandbox.
    prepare` to make one."""

    def __init__(self, name: str, *, memory: int | None, processes: int | None) -> None:
        self.name = name
        self.groups: dict[str, Path] = {}  # controller -> group directory
        self.version: int | None = None
        self._pids: set[int] = set()
        self.memory_limited = False
        self.processes_limited = False
        try:
            for mount in cgroup_mounts():
                self._make(mount)
            self._limit(memory, processes)
        except BaseException:
            self.close()
            raise

    def _make(self, mount: CgroupMount) -> None:
        wanted = [c for c in mount.controllers if c not in self.groups]
        if not wanted or (mount.version == 2 and "v2" in self.groups):  # noqa: PLR2004
            return
        parent = Path(mount.path) / own_cgroup(mount).lstrip("/") / "tether"
        group = parent / f"{self.name}-{os.getpid()}-{id(self):x}"
        for _ in range(3):  # another host may remove an empty parent meanwhile
            try:
                parent.mkdir(exist_ok=True)
                group.mkdir()
                break
            except FileNotFoundError:
                continue
            except OSError:
                return
        else:
            return
        if mount.version == 2:  # noqa: PLR2004
            for control in (parent.parent, parent):
                with contextlib.suppress(OSError):
                    (control / "cgroup.subtree_control").write_text("+memory +pids")
            self.groups["v2"] = group  # cgroup.kill, whatever its controllers
            for controller in wanted:
                if controller in ("memory", "pids", "cpu"):
                    self.groups.setdefault(controller, group)
        else:
            for controller in wanted:
                self.groups[controller] = group
        self.version = self.version or mount.version

    def _write(self, controller: str, file: str, value: object) -> bool:
        group = self.groups.get(controller)
        if group is None or not (group / file).exists():
            return False
        try:
            (group / file).write_text(str(value))
        except OSError:
            return False
        return True

    def _limit(self, memory: int | None, processes: int | None) -> None:
        if memory is not None:
            self.memory_limited = self._write(
                "memory", "memory.limit_in_bytes", memory
            ) or self._write("memory", "memory.max", memory)
            self._write("memory", "memory.memsw.limit_in_bytes", memory)  # no escape to swap
            self._write("memory", "memory.swap.max", 0)
        if processes is not None:
            self.processes_limited = self._write("pids", "pids.max", processes)

    @property
    def limited(self) -> tuple[str, ...]:
        """The limits the cgroups enforce (the worker adds rlimits for the rest)."""
        return tuple(
            name
            for name, on in (("memory", self.memory_limited), ("processes", self.processes_limited))
            if on
        )

    def add(self, pid: int) -> None:
        """Put process ``pid`` (the worker, just started) into every group."""
        self._pids.add(pid)
        for group in set(self.groups.values()):
            with contextlib.suppress(ProcessLookupError, OSError):
                (group / "cgroup.procs").write_text(str(pid))

    def pids(self) -> set[int]:
        """Every process in the confinement now (host pids)."""
        found: set[int] = set()
        for group in set(self.groups.values()):
            with contextlib.suppress(OSError):
                found |= {int(p) for p in (group / "cgroup.procs").read_text().split()}
        if not self.groups:
            found = {pid for pid in self._pids if _alive(pid)}
        return found

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILL every process in it and wait until none is left; True when none is."""
        if not self.groups:
            for pid in self._pids:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            return not self.pids()
        if self._write("v2", "cgroup.kill", 1):
            return self._wait_empty(timeout)
        frozen = self._write("freezer", "freezer.state", "FROZEN")
        deadline = time.monotonic() + timeout
        try:
            for _ in range(_KILL_ROUNDS):
                pids = self.pids()
                if not pids or time.monotonic() > deadline:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if frozen:  # a frozen process takes its SIGKILL when thawed
                    self._write("freezer", "freezer.state", "THAWED")
                    time.sleep(0.01)
                    self._write("freezer", "freezer.state", "FROZEN")
                else:
                    time.sleep(0.01)
        finally:
            if frozen:
                self._write("freezer", "freezer.state", "THAWED")
        return self._wait_empty(max(0.0, deadline - time.monotonic()))

    def _wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def usage(self) -> Usage:
        """Memory and CPU of everything in the confinement."""
        memory = self._read_int("memory", "memory.usage_in_bytes", "memory.current")
        peak = self._read_int("memory", "memory.max_usage_in_bytes", "memory.peak")
        cpu_ns = self._read_int("cpuacct", "cpuacct.usage")
        cpu = cpu_ns / _NS_PER_S if cpu_ns is not None else self._v2_cpu()
        return Usage(memory, peak, cpu, len(self.pids()))

    def _read_int(self, controller: str, *files: str) -> int | None:
        group = self.groups.get(controller)
        for file in files:
            if group is not None:
                with contextlib.suppress(OSError, ValueError):
                    return int((group / file).read_text().split()[0])
        return None

    def _v2_cpu(self) -> float | None:
        group = self.groups.get("v2")
        if group is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            for line in (group / "cpu.stat").read_text().splitlines():
                key, value = line.split()
                if key == "usage_usec":
                    return int(value) / 1e6
        return None

    def close(self) -> None:
        """Kill what is left and remove the groups."""
        if self.groups:
            self.kill_all()
        for group in set(self.groups.values()):
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
            with contextlib.suppress(OSError):  # the shared parent, when no other is left
                group.parent.rmdir()
        self.groups.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
