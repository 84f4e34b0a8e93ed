"""What the kernel enforces around a process plugin's worker.

The lead's worker code calls three functions; everything takes a :class:`Policy` as
plain data (the manifest and config models build it)::

    features = probe()                       # cached: what this kernel/host offers
    confinement = prepare(policy, name=...)  # HOST, before spawning the worker
    confinement.add(worker_pid)              # ... right after spawning it
    applied = apply(policy)                  # WORKER, first thing, before plugin code
    ...
    confinement.usage(); confinement.kill_all(); confinement.close()

:func:`prepare` (host side) makes the worker's cgroups (v1 or v2, whichever is
writable; memory and pids limits), hands the write paths (the data directory) to
``policy.uid``, and returns a :class:`~tether.isolation._cgroups.Confinement`.
:func:`pick_uid` gives a free unprivileged uid for ``Policy.uid``.

:func:`apply` (worker side, before any plugin import and before any thread starts: it
raises otherwise, since seccomp and Landlock confine only the calling thread), in order:

1. empties the environment but for ``LANG``, ``LC_ALL``, ``TZ``, ``PATH`` and the names
   in ``policy.environment`` (``HOME`` and ``TMPDIR`` become the first write path);
2. ``PR_SET_PDEATHSIG`` (SIGKILL when the host dies), then new mount, IPC and PID
   namespaces and, without ``network``, an empty network namespace;
3. forks: the child is PID 1 of the new PID namespace and becomes the worker; the
   parent stays behind as a root stub that only waits and exits as the worker did. When
   the worker dies, the kernel kills everything else in its namespace: no grandchild
   outlives it. (``os.getpid()`` is 1 in the worker; the host sees the stub's pid.)
   A SIGTERM handler is installed in the worker when it has none (PID 1 ignores
   signals it does not handle): it exits with status 143;
4. in the mount namespace, ``/tmp``, ``/var/tmp``, ``/run`` and ``/dev/shm`` are covered
   with an empty read-only tmpfs (granted paths beneath them bound back in: Landlock
   does not govern ``connect()`` to a Unix socket by path, and servers keep theirs
   there), and so are directories above the granted paths that the uid could not
   traverse (``/root`` at mode 0700, say, holding the interpreter);
5. rlimits: ``RLIMIT_CPU`` (SIGXCPU at the limit, SIGKILL a second later),
   ``RLIMIT_NOFILE``, ``RLIMIT_AS`` when no cgroup limits the worker's memory,
   ``RLIMIT_NPROC`` (counted against the uid, so enforced after the drop), no core
   dumps;
6. drops every capability from the bounding set, then to ``policy.uid`` (gid the same,
   no supplementary groups): no capabilities left;
7. ``no_new_privs``; Landlock (read: the policy's read paths and the interpreter's
   paths, see :func:`interpreter_paths`; read/write: the write paths; execute: nothing,
   or the read paths with ``exec``; TCP denied without ``network``; signals scoped to
   the sandbox);
8. seccomp (:mod:`._seccomp`): execve without ``exec``, non-AF_UNIX sockets without
   ``network``, and the always-denied list.

Missing kernel support raises :class:`SandboxError` naming the plugin and what is
missing, unless ``policy.best_effort`` (then each missing piece is logged as a warning
on ``tether.isolation`` and listed in :attr:`Applied.missing`).

``python -m tether.isolation._launch POLICY_JSON -- PROGRAM ARGS...`` applies the same
policy and execs a program (a Node.js worker): see :mod:`._launch`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import pwd
import resource
import signal
import stat
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tether.errors import IsolationError
from tether.isolation import _landlock, _seccomp
from tether.isolation._cgroups import Confinement, Usage
from tether.isolation._probe import (
    KernelFeatures,
    cgroup_mounts,
    own_cgroup,
    probe,
    probe_self,
)

__all__ = [
    "Applied",
    "Assessment",
    "Confinement",
    "KernelFeatures",
    "Limits",
    "Policy",
    "SandboxError",
    "Usage",
    "apply",
    "assess",
    "interpreter_paths",
    "pick_uid",
    "prepare",
    "probe",
]

log = logging.getLogger("tether.isolation")

_KEPT_VARIABLES = ("LANG", "LC_ALL", "TZ", "PATH")
_DEVICES_READ = ("/dev/urandom", "/dev/random", "/dev/zero")
_DEVICES_WRITE = ("/dev/null",)
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/ssl/openssl.cnf")
_UID_RANGE = range(200_000, 260_000)
_SHARED_DIRECTORIES = ("/tmp", "/var/tmp", "/run", "/dev/shm")  # noqa: S108 - hidden, not used
_SIGTERM_STATUS = 128 + signal.SIGTERM

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_REMOUNT = 32
_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits; ``None`` is no limit."""

    memory: int | None = None  # bytes
    cpu_time: float | None = None  # seconds of CPU
    open_files: int | None = None
    processes: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """What one worker may do. Paths are granted with everything beneath them."""

    plugin: str
    network: bool = False
    exec: bool = False
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    executable: tuple[str, ...] = ()  # the launcher's runtime binary (node)
    limits: Limits = field(default_factory=Limits)
    uid: int | None = None
    best_effort: bool = False
    environment: tuple[str, ...] = ()  # variable names kept from the host's environment

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        limits = Limits(**data.pop("limits", {}))
        for key in ("read", "write", "executable", "environment"):
            data[key] = tuple(data.get(key, ()))
        return cls(limits=limits, **data)


@dataclass(frozen=True, slots=True)
class Applied:
    """What :func:`apply` put in place (``enforced``) and could not (``missing``)."""

    plugin: str
    enforced: tuple[str, ...]
    missing: tuple[str, ...]
    landlock_abi: int
    pid_namespace: bool
    read: tuple[str, ...]
    write: tuple[str, ...]


class SandboxError(IsolationError):
    """The kernel cannot enforce what a process plugin's policy asks for (and the config
    did not opt into best effort), or confining the worker failed."""

    def __init__(self, plugin: str, missing: list[str] | tuple[str, ...]) -> None:
        self.missing = tuple(missing)
        super().__init__(
            f"plugin '{plugin}' cannot be isolated as asked: {'; '.join(self.missing)}",
            plugin=plugin,
            hint="run `tether doctor` to see what this host offers; or allow best-effort "
            "isolation for this plugin in the config (what is missing is then logged)",
        )


# --------------------------------------------------------------------------- host side


def pick_uid() -> int:
    """An unprivileged uid no account, running process or other worker of ours uses."""
    used = set(_given_uids)
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    used.add(entry.stat().st_uid)
    for uid in _UID_RANGE:
        if uid in used:
            continue
        try:
            pwd.getpwuid(uid)
        except KeyError:
            _given_uids.add(uid)
            return uid
    raise SandboxError("?", ["no free uid in 200000-259999 for a worker"])


_given_uids: set[int] = set()


def prepare(policy: Policy, *, name: str) -> Confinement:
    """The host's side, before the worker starts: its cgroups with the memory and process
    limits, and its write paths owned by ``policy.uid``. ``name`` names the cgroups."""
    limits = policy.limits
    confinement = Confinement(name, memory=limits.memory, processes=limits.processes)
    if policy.uid is not None:
        for path in policy.write:
            _give(Path(path), policy.uid)
    missing = []
    if limits.memory is not None and not confinement.memory_limited:
        missing.append("no writable memory cgroup (the worker falls back to RLIMIT_AS)")
    if limits.processes is not None and not confinement.processes_limited:
        missing.append("no writable pids cgroup (the worker falls back to RLIMIT_NPROC)")
    if not confinement.groups:
        missing.append("no writable cgroup: orphans are found by process group only")
    for item in missing:
        log.info("plugin '%s': %s", policy.plugin, item)
    return confinement


def _give(path: Path, uid: int) -> None:
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for item in (*dirs, *files):
                os.chown(os.path.join(root, item), uid, uid, follow_symlinks=False)  # noqa: PTH118


# --------------------------------------------------------------------------- worker side


def interpreter_paths() -> list[str]:
    """What this Python needs to read to go on importing: its ``sys.path`` entries, its
    executable, the directories of the shared libraries it has loaded (which hold the
    ones extension modules load later), ``/etc/ld.so.cache``, ``/etc/localtime`` and
    ``/etc/ssl/openssl.cnf``."""
    paths = {os.path.realpath(sys.executable)}
    for entry in sys.path:
        if entry and os.path.exists(entry):  # noqa: PTH110
            paths.add(os.path.realpath(entry))
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/maps").read_text().splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):  # noqa: PLR2004 - already canonical
                paths.add(os.path.dirname(parts[5]))  # noqa: PTH120
    paths.update(p for p in _SYSTEM_FILES if os.path.exists(p))  # noqa: PTH110
    return sorted(_outermost(paths))


def _outermost(paths: set[str]) -> set[str]:
    ordered = sorted(paths)
    kept: list[str] = []
    for path in ordered:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return set(kept)


class _Steps:
    """One :func:`apply`: what was enforced, what is missing."""

    def __init__(self, policy: Policy, features: KernelFeatures) -> None:
        self.policy = policy
        self.features = features
        self.enforced: list[str] = []
        self.missing: list[str] = []
        self.pid_namespace = False
        self.mount_namespace = False
        self._logged = 0

    def need(self, what: str, available: bool) -> bool:
        if not available:
            self.missing.append(what)
        return available

    def check(self) -> None:
        if self.missing and not self.policy.best_effort:
            raise SandboxError(self.policy.plugin, self.missing)
        for item in self.missing[self._logged :]:
            log.warning("plugin '%s' runs with best-effort isolation: %s", self.policy.plugin, item)
        self._logged = len(self.missing)


def apply(policy: Policy) -> Applied:
    """Confine the calling process (the worker) by ``policy``; see the module docstring.
    A step the kernel refuses midway raises :class:`SandboxError` (the worker must not
    go on: it may be half confined)."""
    try:
        return _apply(policy, exec_by_landlock=False, read_extra=interpreter_paths())
    except OSError as exc:
        raise SandboxError(policy.plugin, [f"confining the worker failed: {exc}"]) from exc


def _apply(
    policy: Policy, *, exec_by_landlock: bool, read_extra: list[str], fork: bool = True
) -> Applied:
    threads = _thread_count()
    if threads > 1:  # seccomp and Landlock confine the calling thread only
        why = f"apply() ran with {threads} threads, and would confine only the calling one"
        raise SandboxError(policy.plugin, [f"{why}: call it before any thread starts"])
    features = probe_self()
    steps = _Steps(policy, features)
    _precheck(steps, exec_by_landlock=exec_by_landlock)
    steps.check()
    _scrub_environment(policy)
    read = tuple(sorted(_outermost({os.path.realpath(p) for p in (*policy.read, *read_extra)})))
    write = tuple(os.path.realpath(p) for p in policy.write)
    _enter_namespaces(steps, fork=fork)
    granted = [*read, *write, *policy.executable]
    if steps.mount_namespace:
        _hide_shared_directories(granted)
        steps.enforced.append("shared directories hidden: " + ", ".join(_SHARED_DIRECTORIES))
    if policy.uid is not None and steps.features.uid_drop and steps.mount_namespace:
        _open_ancestors(granted, policy.uid)
    _set_rlimits(steps)
    ruleset = _landlock_ruleset(steps, read, write, exec_by_landlock=exec_by_landlock)
    _drop_privileges(steps)
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
        steps.enforced.append("no_new_privs")
    if ruleset is not None:
        ruleset.restrict()
        steps.enforced.append(f"landlock (ABI {features.landlock_abi})")
    if features.seccomp:
        exec_allowed = policy.exec or exec_by_landlock
        _seccomp.install(_seccomp.build_filter(exec_allowed=exec_allowed, network=policy.network))
        steps.enforced.append("seccomp")
    return Applied(
        plugin=policy.plugin,
        enforced=tuple(steps.enforced),
        missing=tuple(steps.missing),
        landlock_abi=features.landlock_abi,
        pid_namespace=steps.pid_namespace,
        read=read,
        write=write,
    )


def _thread_count() -> int:
    try:
        return sum(1 for _ in Path("/proc/self/task").iterdir())
    except OSError:
        return threading.active_count()


def _precheck(steps: _Steps, *, exec_by_landlock: bool) -> None:
    policy, features = steps.policy, steps.features
    steps.need(f"seccomp filters (architecture {features.arch})", features.seccomp)
    steps.need("Landlock (the kernel has no Landlock ABI)", features.landlock)
    if exec_by_landlock and policy.exec is False:
        steps.need("Landlock's execute right", features.landlock)
    if not policy.network:
        steps.need("network namespaces", "network" in features.namespaces)
    if policy.uid is not None:
        steps.need("a uid drop (the host is neither root nor holds CAP_SETUID)", features.uid_drop)


def _scrub_environment(policy: Policy) -> None:
    kept = {k: os.environ[k] for k in (*_KEPT_VARIABLES, *policy.environment) if k in os.environ}
    os.environ.clear()
    os.environ.update(kept)
    if policy.write:
        os.environ.setdefault("HOME", policy.write[0])
        os.environ.setdefault("TMPDIR", policy.write[0])


def _call(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _die_with_parent() -> None:
    parent = os.getppid()
    _call(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
    if os.getppid() != parent:  # it died before the prctl took effect
        os._exit(_SIGTERM_STATUS)


def _enter_namespaces(steps: _Steps, *, fork: bool) -> None:
    _die_with_parent()
    steps.enforced.append("dies with the host (PR_SET_PDEATHSIG)")
    names = steps.features.namespaces
    flags = 0
    if "mount" in names:
        flags |= _CLONE_NEWNS | _CLONE_NEWIPC
    if not steps.policy.network and "network" in names:
        flags |= _CLONE_NEWNET
    pid_ns = fork and "pid" in names and threading.active_count() == 1
    if pid_ns:
        flags |= _CLONE_NEWPID
    flags = _unshare(steps, flags)
    pid_ns = pid_ns and bool(flags & _CLONE_NEWPID)
    if flags & _CLONE_NEWNET:
        steps.enforced.append("empty network namespace")
    if flags & _CLONE_NEWNS:
        _call(_libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate")
        steps.enforced.append("mount namespace")
        steps.mount_namespace = True
    if pid_ns:
        _become_pid_one()
        steps.pid_namespace = True
        steps.enforced.append("PID namespace (no process outlives the worker)")
    elif not fork:
        steps.missing.append("a PID namespace: children may outlive the worker")


def _unshare(steps: _Steps, flags: int) -> int:
    """Enter the namespaces in ``flags``; those the kernel refuses are missing (an error
    unless best effort). Returns the flags that took."""
    if not flags or _libc.unshare(flags) == 0:
        return flags
    took = 0
    for name, flag in (("mount", _CLONE_NEWNS | _CLONE_NEWIPC), ("network", _CLONE_NEWNET),
                       ("PID", _CLONE_NEWPID)):  # fmt: skip
        if flags & flag:
            if _libc.unshare(flag) == 0:
                took |= flag
            else:
                err = os.strerror(ctypes.get_errno())
                steps.missing.append(f"{name} namespaces (unshare: {err})")
    steps.check()
    return took


def _become_pid_one() -> None:
    """Fork into the new PID namespace; the parent waits and exits as the child did."""
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        _die_with_parent()
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return
    _stub_wait(child)


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    os._exit(_SIGTERM_STATUS)


def _stub_wait(child: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    os.closerange(3, _max_fd())
    while True:
        try:
            _, status = os.waitpid(child, 0)
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
                signal.signal(number, signal.SIG_DFL)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), number)
            os._exit(128 + number)
        if os.WIFEXITED(status):
            os._exit(os.WEXITSTATUS(status))


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(soft, 1 << 16)


def _traversable(path: str, uid: int) -> bool:
    info = Path(path).stat()
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == uid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _open_ancestors(paths: list[str], uid: int) -> None:
    """Cover each directory ``uid`` cannot traverse above a granted path with a tmpfs that
    holds only the granted children (bound back in), in this mount namespace."""
    needed: dict[str, set[str]] = {}  # blocked directory -> children to bring back
    for path in paths:
        parts = Path(path).parts
        for depth in range(1, len(parts) - 1):
            ancestor = os.path.join(*parts[: depth + 1])  # noqa: PTH118
            if os.path.isdir(ancestor) and not _traversable(ancestor, uid):  # noqa: PTH112
                needed.setdefault(ancestor, set()).add(parts[depth + 1])
                break
    for blocked, children in needed.items():
        _cover(blocked, children)


def _hide_shared_directories(granted: list[str]) -> None:
    """Cover ``/tmp``, ``/var/tmp``, ``/run`` and ``/dev/shm`` with an empty tmpfs (but for
    granted paths beneath them, bound back in): Landlock does not govern ``connect()`` to
    a Unix socket by path, and these are where servers put theirs (PostgreSQL, D-Bus)."""
    for shared in _SHARED_DIRECTORIES:
        if not os.path.isdir(shared) or os.path.islink(shared):  # noqa: PTH112, PTH114
            continue
        prefix = shared + "/"
        if any(shared.startswith(p.rstrip("/") + "/") or p == shared for p in granted):
            continue  # the directory itself (or one above it) is granted
        children = {p[len(prefix) :].split("/")[0] for p in granted if p.startswith(prefix)}
        _cover(shared, children)


def _cover(blocked: str, children: set[str]) -> None:
    """A read-only tmpfs on ``blocked`` holding only ``children``, bound back in."""
    kept = {}
    for child in children:
        with contextlib.suppress(FileNotFoundError):
            kept[child] = os.open(os.path.join(blocked, child), os.O_PATH)  # noqa: PTH118
    try:
        _call(
            _libc.mount(b"tether", blocked.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                        b"mode=0755,size=64k"),
            f"mount tmpfs on {blocked}",
        )  # fmt: skip
        for child, fd in kept.items():
            target = os.path.join(blocked, child)  # noqa: PTH118
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.mkdir(target)  # noqa: PTH102
            else:
                Path(target).touch()
            source = f"/proc/self/fd/{fd}".encode()
            _call(
                _libc.mount(source, target.encode(), None, _MS_BIND | _MS_REC, None),
                f"bind {target}",
            )
        _call(
            _libc.mount(None, blocked.encode(), None,
                        _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None),
            f"remount {blocked} read-only",
        )  # fmt: skip
    finally:
        for fd in kept.values():
            os.close(fd)


def _memory_in_cgroup(limit: int) -> bool:
    """Whether a cgroup already holds this process's memory to ``limit`` or less."""
    for mount in cgroup_mounts():
        if "memory" not in mount.controllers:
            continue
        group = Path(mount.path) / own_cgroup(mount).lstrip("/")
        for file in ("memory.limit_in_bytes", "memory.max"):
            with contextlib.suppress(OSError, ValueError):
                if int((group / file).read_text().split()[0]) <= limit:
                    return True
    return False


def _set_rlimits(steps: _Steps) -> None:
    limits = steps.policy.limits
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.cpu_time is not None:
        seconds = max(1, int(-(-limits.cpu_time // 1)))
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
        steps.enforced.append("cpu_time (RLIMIT_CPU)")
    if limits.open_files is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        steps.enforced.append("open_files (RLIMIT_NOFILE)")
    if limits.memory is not None:
        if _memory_in_cgroup(limits.memory):
            steps.enforced.append("memory (cgroup)")
        else:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
            steps.enforced.append("memory (RLIMIT_AS)")


def _landlock_ruleset(
    steps: _Steps, read: tuple[str, ...], write: tuple[str, ...], *, exec_by_landlock: bool
) -> _landlock.Ruleset | None:
    abi = steps.features.landlock_abi
    if abi == 0:
        return None
    policy = steps.policy
    ruleset = _landlock.Ruleset(abi, deny_tcp=not policy.network)
    read_rights = _landlock.READ | (_landlock.EXECUTE if policy.exec else 0)
    for path in read:
        ruleset.allow(path, read_rights)
    for path in _DEVICES_READ:
        ruleset.allow(path, _landlock.READ)
    for path in _DEVICES_WRITE:
        ruleset.allow(path, _landlock.READ | _landlock.WRITE)
    for path in write:
        ruleset.allow(path, read_rights | _landlock.WRITE)
    if exec_by_landlock:
        for path in policy.executable:
            for file in (path, *_elf_interpreter(path)):
                ruleset.allow(file, _landlock.EXECUTE)
    return ruleset


def _elf_interpreter(path: str) -> list[str]:
    """The dynamic loader an ELF executable names (PT_INTERP), which the kernel opens
    for execution too."""
    import struct

    try:
        with open(path, "rb") as file:  # noqa: PTH123
            header = file.read(64)
            if header[:5] != b"\x7fELF\x02":
                return []
            (phoff,) = struct.unpack_from("<Q", header, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
            for index in range(phnum):
                file.seek(phoff + index * phentsize)
                entry = file.read(phentsize)
                (kind,) = struct.unpack_from("<I", entry, 0)
                if kind == 3:  # PT_INTERP  # noqa: PLR2004
                    (offset,) = struct.unpack_from("<Q", entry, 8)
                    (size,) = struct.unpack_from("<Q", entry, 0x20)
                    file.seek(offset)
                    name = file.read(size).rstrip(b"\0").decode()
                    return [name, os.path.realpath(name)]
    except OSError:
        return []
    return []


def _drop_privileges(steps: _Steps) -> None:
    uid = steps.policy.uid
    if uid is None or not steps.features.uid_drop:
        return
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    # a change of credentials clears the parent-death signal: set it again
    _call(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
    processes = steps.policy.limits.processes
    if processes is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        steps.enforced.append("processes (RLIMIT_NPROC)")
    steps.enforced.append(f"uid {uid}, no capabilities")


@dataclass(frozen=True, slots=True)
class Assessment:
    """What this host means for ``isolation: process`` plugins (``tether doctor``)."""

    verdict: str  # "enforced" or "refused" (best-effort where the config allows it)
    missing: tuple[str, ...]
    limits: dict[str, str]  # limit -> what enforces it here


def assess(features: KernelFeatures | None = None) -> Assessment:
    """``enforced``: every permission and limit holds; ``refused``: something a process
    plugin needs is missing, so such plugins are refused unless the config allows
    best-effort isolation (``best-effort`` is then what they get)."""
    features = features or probe()
    steps = _Steps(Policy("any", uid=_UID_RANGE.start), features)
    _precheck(steps, exec_by_landlock=False)
    if "pid" not in features.namespaces:
        steps.missing.append("PID namespaces (children are killed by cgroup or process group)")
    controllers = features.cgroup_controllers
    version = "v2" if features.cgroup_v2 else "v1"
    limits = {
        "memory": f"cgroup {version} memory" if "memory" in controllers else "RLIMIT_AS",
        "cpu_time": "RLIMIT_CPU (SIGXCPU, then SIGKILL a second later)",
        "open_files": "RLIMIT_NOFILE",
        "processes": f"cgroup {version} pids + RLIMIT_NPROC"
        if "pids" in controllers
        else "RLIMIT_NPROC (after the uid drop)",
    }
    verdict = "enforced" if not steps.missing else "refused"
    return Assessment(verdict, tuple(steps.missing), limits)
