"""A warm parent for Python workers: one process that imported what a worker needs
(asyncio, msgspec, pydantic, the loader) and forks a worker per plugin on request.

Starting ``python -I`` and importing all that costs hundreds of milliseconds; a fork of
a process that already did costs a few. The host starts one zygote the first time it
starts a Python worker (that first worker starts the slow way, meanwhile) and asks it
for the later ones: over a Unix socket pair, a ``spawn`` message (the worker's
environment and directory) carries three descriptors (the worker's end of its channel,
and the write ends of its stdout and stderr pipes) as ``SCM_RIGHTS``; the zygote forks,
the child starts a session of its own, takes the descriptors as its channel and its
stdout/stderr, and runs :func:`tether.isolation._worker.main` as a started worker
would; the zygote answers the child's pid. The zygote reaps its children and reports
each exit status (``{"exit": pid, "status": ...}``), which :class:`ForkedProcess`
turns into the ``wait``/``returncode`` of a ``subprocess.Popen``.

The zygote imports no plugin code, holds no host state and has no threads when it
forks. It ends when the host's end of its socket closes (the host went away), and kills
its workers' process groups as it goes. Anything that goes wrong with it makes the host
start workers the slow way again (logged), never fail a load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = ["ForkedProcess", "Zygote", "serve", "zygote"]

log = logging.getLogger("tether.isolation")

_HEADER = struct.Struct(">I")
_PRELOAD: Final = (
    "asyncio",
    "msgspec",
    "tether.errors",
    "tether.types",
    "tether._loader",
    "tether._manifest",
    "tether.isolation._worker",
    "tether.isolation._http",
)
_BOOT = (
    "import sys; sys.path[:0] = sys.argv[1:]; from tether.isolation._zygote import serve; serve()"
)
_FD_VARIABLE = "TETHER_ZYGOTE_FD"


# --------------------------------------------------------------------------- the zygote


def _send(sock: socket.socket, message: Mapping[str, object]) -> None:
    body = json.dumps(message).encode()
    sock.sendall(_HEADER.pack(len(body)) + body)


def serve() -> None:
    """The zygote's entry point (the host starts it; nobody else should)."""
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
    control = socket.socket(fileno=int(os.environ.pop(_FD_VARIABLE)))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: set[int] = set()
    _send(control, {"ready": os.getpid()})
    pending = [b""]
    try:
        while True:
            readable, _, _ = select.select([control.fileno(), wake_r], [], [])
            if wake_r in readable:
                os.read(wake_r, 512)
                _reap(control, children)
            if control.fileno() in readable and not _take(
                control, pending, children, (wake_r, wake_w)
            ):
                return
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


def _take(
    control: socket.socket, pending: list[bytes], children: set[int], wake: tuple[int, int]
) -> bool:
    """Read the host's spawn requests and fork for each; False once the host is gone."""
    data, fds, _flags, _address = socket.recv_fds(control, 65536, 8)
    if not data:
        return False
    buffer = pending[0] + data
    while len(buffer) >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer)
        if len(buffer) < _HEADER.size + size:
            break
        message = json.loads(buffer[_HEADER.size : _HEADER.size + size])
        buffer = buffer[_HEADER.size + size :]
        taken, fds = fds[:3], fds[3:]
        pid = _fork(message, taken, control, wake)
        for fd in taken:
            os.close(fd)
        children.add(pid)
        _send(control, {"spawned": pid, "ref": message.get("ref")})
    pending[0] = buffer
    for fd in fds:  # descriptors without a message: not ours to keep
        os.close(fd)
    return True


def _reap(control: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(control, {"exit": pid, "status": os.waitstatus_to_exitcode(status)})


def _fork(
    message: Mapping[str, object],
    fds: list[int],
    control: socket.socket,
    wake: tuple[int, int],
) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: become a started worker
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        for fd in wake:
            os.close(fd)
        os.setsid()
        channel, stdout, stderr = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        for fd in (devnull, stdout, stderr):
            os.close(fd)
        cwd = message.get("cwd")
        if isinstance(cwd, str):
            os.chdir(cwd)
        environment = message.get("env")
        os.environ.clear()
        if isinstance(environment, dict):
            os.environ.update({str(k): str(v) for k, v in environment.items()})
        from tether.isolation._worker import FD_VARIABLE, main

        os.environ[FD_VARIABLE] = str(channel)
        main()
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
    os._exit(70)


# --------------------------------------------------------------------------- the host's side


class ForkedProcess:
    """A worker the zygote forked, with the parts of ``subprocess.Popen`` the host uses
    (``pid``, ``returncode``, ``poll``, ``wait``): the zygote reports its exit."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.orphaned = False  # its zygote ended: nobody will report its exit
        self._ended = threading.Event()

    def _exited(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    def poll(self) -> int | None:
        if self.returncode is None and self.orphaned and not _exists(self.pid):
            # reaped by init, its status unknown: counted as killed
            self._exited(-signal.SIGKILL)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.orphaned:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.poll() is None:
                if deadline is not None and time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
                time.sleep(0.02)
        elif not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode


def _exists(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaps yet does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


class Zygote:
    """The host's handle on its zygote process."""

    def __init__(self, tether_path: str, environment: Mapping[str, str]) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**environment, _FD_VARIABLE: str(theirs.fileno())}
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter
                [sys.executable, "-I", "-c", _BOOT, tether_path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=env,
                start_new_session=True,
            )
        finally:
            theirs.close()
        self.sock = mine
        self.ready = threading.Event()
        self.dead: str | None = None
        self._lock = threading.Lock()  # one spawn at a time
        self._spawned: dict[int, threading.Event] = {}
        self._answers: dict[int, int] = {}
        self._processes: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._refs = 0
        threading.Thread(target=self._read, name="tether-zygote", daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                buffer += data
                while len(buffer) >= _HEADER.size:
                    (size,) = _HEADER.unpack_from(buffer)
                    if len(buffer) < _HEADER.size + size:
                        break
                    self._on_message(json.loads(buffer[_HEADER.size : _HEADER.size + size]))
                    buffer = buffer[_HEADER.size + size :]
        except (OSError, ValueError) as exc:
            self.dead = f"its socket failed: {exc}"
        self.dead = self.dead or "it ended"
        self.ready.set()
        for event in list(self._spawned.values()):
            event.set()
        for process in list(self._processes.values()):  # nobody reports them now
            process.orphaned = True

    def _on_message(self, message: dict[str, object]) -> None:
        if "ready" in message:
            self.ready.set()
        elif "spawned" in message:
            ref = int(message["ref"])  # type: ignore[call-overload]
            self._answers[ref] = int(message["spawned"])  # type: ignore[call-overload]
            event = self._spawned.pop(ref, None)
            if event is not None:
                event.set()
        elif "exit" in message:
            pid, code = int(message["exit"]), int(message["status"])  # type: ignore[call-overload]
            process = self._processes.pop(pid, None)
            if process is None:
                self._early_exits[pid] = code
            else:
                process._exited(code)  # noqa: SLF001 - its own report

    def spawn(
        self, channel: socket.socket, environment: Mapping[str, str], cwd: str | None
    ) -> tuple[ForkedProcess, int, int]:
        """Fork a worker on ``channel``: its process and the read ends of its stdout and
        stderr. Raises ``OSError`` when the zygote cannot."""
        if self.dead is not None:
            raise OSError(f"the zygote is gone: {self.dead}")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        with self._lock:
            self._refs += 1
            ref = self._refs
            event = threading.Event()
            self._spawned[ref] = event
            body = json.dumps({"ref": ref, "env": dict(environment), "cwd": cwd}).encode()
            try:
                socket.send_fds(
                    self.sock,
                    [_HEADER.pack(len(body)) + body],
                    [channel.fileno(), out_w, err_w],
                )
            except OSError:
                for fd in (out_r, err_r):
                    os.close(fd)
                raise
            finally:
                os.close(out_w)
                os.close(err_w)
        if not event.wait(5.0) or ref not in self._answers:
            for fd in (out_r, err_r):
                os.close(fd)
            raise OSError(f"the zygote did not fork a worker ({self.dead or 'no answer'})")
        pid = self._answers.pop(ref)
        process = ForkedProcess(pid)
        self._processes[pid] = process
        early = self._early_exits.pop(pid, None)
        if early is not None:
            self._processes.pop(pid, None)
            process._exited(early)  # noqa: SLF001 - its own report
        return process, out_r, err_r

    def close(self) -> None:
        """Let go of the zygote (it ends when its socket closes) and reap it when it has."""
        with contextlib.suppress(OSError):
            self.sock.close()
        self.process.poll()


_current: Zygote | None = None
_current_pid = 0
_guard = threading.Lock()


def zygote(tether_path: str, environment: Mapping[str, str]) -> Zygote | None:
    """The running zygote, ready to fork; ``None`` (and one is started, for next time)
    when there is none yet, or it died (a host that forked gets a zygote of its own)."""
    global _current, _current_pid  # noqa: PLW0603 - one zygote per host process
    with _guard:
        current = _current
        if current is not None and _current_pid == os.getpid() and current.dead is None:
            return current if current.ready.is_set() else None
        if current is not None:
            if current.dead is not None:
                log.warning("the worker zygote ended (%s): starting another", current.dead)
            current.close()
        try:
            _current = Zygote(tether_path, environment)
        except OSError as exc:
            log.warning("could not start the worker zygote: %s", exc)
            _current = None
        _current_pid = os.getpid()
        return None
