"""A worker process, from the host's side: start it, shake hands, call it, end it.

:func:`start_worker` starts ``python -I`` running :mod:`tether.isolation._worker` in a
process group (a session) of its own, with one end of a Unix socket pair inherited as
the channel, its stdout and stderr on pipes the host logs line by line (logger
``tether.worker.<plugin>``), its environment emptied but for what it needs, and waits
for the handshake within the start limit. :meth:`WorkerProcess.terminate` ends it:
SIGTERM to its process group, SIGKILL after a grace; nothing of it is left running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from tether.errors import PluginCrashedError, WorkerProtocolError
from tether.isolation._protocol import (
    CODECS,
    PROTOCOL_VERSION,
    Channel,
    ChannelClosedError,
    Request,
    codec_named,
    write_frame,
)
from tether.isolation._worker import FD_VARIABLE, rebuild_error
from tether.isolation._zygote import ForkedProcess, zygote

__all__ = ["WorkerProcess", "describe_exit", "start_worker"]

log = logging.getLogger("tether.isolation")

_BOOT = "import sys; sys.path[:0] = sys.argv[1:]; from tether.isolation._worker import main; main()"
# In a plugin's own environment: its site-packages first, the host's paths after them.
_BOOT_BESIDE = (
    "import site, sys; [site.addsitedir(p) for p in sys.argv[1:]]; "
    "from tether.isolation._worker import main; main()"
)
_KEPT_VARIABLES = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR")
TERMINATE_GRACE = 2.0
HEARTBEAT = 1.0
_MAX_HELLO = 65536
_HEARTBEAT_LAPSE = 10  # heartbeats missed before the worker counts as hung


def describe_exit(code: int | None) -> str:
    """``exit code 3``, ``signal SIGSEGV``, ``still running``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _tether_path() -> str:
    """The directory holding the ``tether`` package (for the worker's ``sys.path``)."""
    return str(Path(__file__).resolve().parents[2])


def _host_paths() -> list[str]:
    """Where the host imports tether and its dependencies from: tether's own directory,
    then the host's ``sys.path`` but for the standard library (which every interpreter
    of the same installation has)."""
    stdlib = {Path(sysconfig.get_path(k)) for k in ("stdlib", "platstdlib")}
    base = Path(sys.base_prefix)
    paths = [_tether_path()]
    for entry in sys.path:
        if not entry or entry in paths:
            continue
        path = Path(entry)
        in_stdlib = path in stdlib or any(s in path.parents for s in stdlib)
        if not {"site-packages", "dist-packages"} & set(path.parts) and (
            in_stdlib or (path.suffix == ".zip" and base in path.parents)
        ):
            continue  # the standard library, lib-dynload, python3XX.zip
        paths.append(entry)
    return paths


class WorkerProcess:
    """One running worker: its process, its channel, and why it ended, once it did."""

    def __init__(
        self, plugin: str, process: subprocess.Popen[bytes] | ForkedProcess, channel: Channel
    ) -> None:
        self.plugin = plugin
        self.process = process
        self.channel = channel
        self.pid = process.pid
        self.ended: str | None = None  # how it ended, once it did
        self.stopping = False
        self.started_at = time.monotonic()
        self.on_crash: list[Callable[[WorkerProcess, str], None]] = []
        self._cancelled: dict[int, float] = {}

    # ------------------------------------------------------------------ calls

    def _crashed(self, during: str | None = None) -> PluginCrashedError:
        return PluginCrashedError(self.plugin, self.exit_description(), during=during)

    def exit_description(self, wait: float = 0.5) -> str:
        """How the worker ended (``exit code 3``, ``signal SIGSEGV``), waiting up to
        ``wait`` seconds for it to end; it is not reaped (see :meth:`terminate`)."""
        if self.process.returncode is not None:
            return describe_exit(self.process.returncode)
        if isinstance(self.process, ForkedProcess):  # the zygote reaps it and says how
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
            return describe_exit(self.process.returncode)
        self._exited_within(wait)
        try:
            found = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            return describe_exit(self.process.returncode)
        if found is None:
            return describe_exit(None)
        if found.si_code == os.CLD_EXITED:
            return describe_exit(found.si_status)
        return describe_exit(-found.si_status)

    def call(
        self,
        target: str,
        args: Sequence[object] = (),
        kwargs: Mapping[str, object] | None = None,
        *,
        timeout: float | None = None,
    ) -> object:
        """A blocking call into the worker; past ``timeout`` the worker is killed."""
        try:
            return self.channel.call(target, args, kwargs, timeout=timeout)
        except ChannelClosedError:
            raise self._crashed(target) from None
        except TimeoutError:
            self.kill(f"{target} ran past its time limit of {timeout}s")
            raise

    async def acall(
        self, target: str, args: Sequence[object] = (), kwargs: Mapping[str, object] | None = None
    ) -> object:
        """An awaited call; cancelling it cancels it in the worker, and a worker that does
        not answer the cancel within the grace is killed."""
        import asyncio

        try:
            return await self.channel.acall(target, args, kwargs)
        except ChannelClosedError:
            raise self._crashed(target) from None
        except asyncio.CancelledError:
            self._watch_cancel(target)
            raise

    def watch_heartbeats(self) -> None:
        """Kill the worker when its heartbeats stop (it hangs: a deadlock, a C call that
        holds the GIL) while it is alive (a thread of its own, until the channel closes)."""
        lapse = HEARTBEAT * _HEARTBEAT_LAPSE

        def watch() -> None:
            while self.channel.closed is None:
                time.sleep(HEARTBEAT)
                silent = time.monotonic() - self.channel.heard_at
                if silent > lapse and self.channel.closed is None:
                    self.kill(f"it sent no heartbeat for {silent:.0f}s (it hangs)")
                    return

        threading.Thread(target=watch, name=f"tether-heartbeats-{self.plugin}",
                         daemon=True).start()  # fmt: skip

    def _watch_cancel(self, target: str) -> None:
        watched = set(self.channel.pending_cancels)  # this cancel's, and any before it

        def check() -> None:
            late = watched & self.channel.pending_cancels
            if self.ended is None and self.channel.closed is None and late:
                self.kill(f"{target} did not stop within {TERMINATE_GRACE}s of being cancelled")

        timer = threading.Timer(TERMINATE_GRACE, check)
        timer.daemon = True
        timer.start()

    # ------------------------------------------------------------------ ending

    def kill(self, reason: str) -> None:
        """End the worker now (SIGKILL to its process group), saying why in the log."""
        if self.ended is None:
            log.warning("plugin %s: killing its worker (pid %d): %s", self.plugin, self.pid, reason)
        if self.process.returncode is None:  # reaped: its group id may belong to others now
            self._signal_group(signal.SIGKILL)
        self.channel.close(f"the worker was killed: {reason}")

    def terminate(self, grace: float = TERMINATE_GRACE) -> str:
        """Ask the worker to end (the channel closes: it releases and exits), SIGTERM its
        group if it is still there, SIGKILL after ``grace``; how it ended."""
        self.stopping = True
        self.channel.close("the host stopped the worker")
        if not self._exited_within(grace / 2):
            self._signal_group(signal.SIGTERM)
            if not self._exited_within(grace / 2):
                self._signal_group(signal.SIGKILL)
        # While the leader is not reaped its group id cannot be reused: end whatever it
        # left behind in its group, then reap it.
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        return describe_exit(self.process.returncode)

    def _exited_within(self, seconds: float) -> bool:
        """Whether the worker exited within ``seconds``, without reaping it."""
        if isinstance(self.process, ForkedProcess):  # not our child: the zygote reports it
            try:
                self.process.wait(seconds)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + seconds
        while True:
            if self.process.returncode is not None:
                return True
            try:
                found = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:  # reaped already (by Popen)
                return True
            if found is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def usage(self) -> dict[str, float]:
        """Resident memory (bytes) and CPU time (seconds) of the worker process, read from
        ``/proc`` (empty where there is none, or once it is gone)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return {}
        rss = next((int(line.split()[1]) * 1024 for line in status.splitlines()
                    if line.startswith("VmRSS:")), 0)  # fmt: skip
        fields = stat.rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        return {"rss_bytes": float(rss), "cpu_seconds": cpu}

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process.returncode is not None:  # reaped: the group id may be reused
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _on_closed(self, reason: str) -> None:
        description = self.exit_description(wait=1.0 if not self.stopping else 0.0)
        self.ended = description if description != describe_exit(None) else reason
        if self.stopping:
            return
        self._signal_group(signal.SIGKILL)  # what it left in its group, before reaping it
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5.0)
        log.error(
            "plugin %s: its worker (pid %d) ended: %s (%s)",
            self.plugin,
            self.pid,
            description,
            reason,
        )
        for listener in list(self.on_crash):
            listener(self, description)


def _log_lines(stream: IO[bytes], logger: logging.Logger, level: int) -> None:
    for raw in iter(stream.readline, b""):
        logger.log(level, "%s", raw.decode(errors="replace").rstrip())
    stream.close()


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    kept = {k: os.environ[k] for k in _KEPT_VARIABLES if k in os.environ}
    return {**kept, **extra, "PYTHONUNBUFFERED": "1"}


def _read_by(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ChannelClosedError("the worker closed the socket")
        chunks += chunk
    return bytes(chunks)


def _hello_frame(sock: socket.socket, limit: float) -> bytes:
    """The first frame, all of it within ``limit`` seconds (not per read: a worker that
    trickles a byte at a time does not keep the host waiting)."""
    deadline = time.monotonic() + limit
    try:
        (size,) = struct.unpack(">I", _read_by(sock, 4, deadline))
        if size > _MAX_HELLO:
            raise ChannelClosedError(f"a hello of {size} bytes is over the limit of {_MAX_HELLO}")
        return _read_by(sock, size, deadline)
    finally:
        sock.settimeout(None)


def _handshake(sock: socket.socket, plugin: str, limit: float) -> str:
    try:
        frame = _hello_frame(sock, limit)
    except TimeoutError:
        raise WorkerProtocolError(plugin, f"it sent no hello within {limit:g}s") from None
    except (OSError, ChannelClosedError) as exc:
        raise WorkerProtocolError(plugin, f"it sent no hello: {exc}") from None
    try:
        hello = json.loads(frame)
    except ValueError:
        shown = frame[:40].decode("utf-8", "replace")
        raise WorkerProtocolError(plugin, f"its hello is not JSON: {shown!r}") from None
    protocols = hello.get("protocols") if isinstance(hello, dict) else None
    if not isinstance(protocols, list) or PROTOCOL_VERSION not in protocols:
        write_frame(
            sock,
            json.dumps(
                {"type": "refuse", "reason": f"this host speaks protocol {PROTOCOL_VERSION}"}
            ).encode(),
        )
        raise WorkerProtocolError(
            plugin, f"it speaks protocols {protocols!r}, this host {PROTOCOL_VERSION}"
        )
    offered = hello.get("codecs") or ["json"]
    if not isinstance(offered, list):
        raise WorkerProtocolError(plugin, f"its hello's codecs are not a list: {offered!r}")
    codec = next((c for c in CODECS if c in offered), None)
    if codec is None:
        raise WorkerProtocolError(plugin, f"it offers codecs {offered!r}, this host {list(CODECS)}")
    welcome = {
        "type": "welcome",
        "protocol": PROTOCOL_VERSION,
        "codec": codec,
        "heartbeat": HEARTBEAT,
    }
    write_frame(sock, json.dumps(welcome).encode())
    return codec


def _fork_worker(
    channel: socket.socket, env: Mapping[str, str], cwd: str | None
) -> tuple[ForkedProcess, int, int] | None:
    """A Python worker forked by the zygote (milliseconds, not the hundreds an
    interpreter takes to start and import), or ``None``: start it the slow way."""
    warm = zygote(_tether_path(), _environment({}))
    if warm is None:
        return None
    try:
        return warm.spawn(channel, {k: v for k, v in env.items() if k != FD_VARIABLE}, cwd)
    except OSError as exc:
        log.warning("the worker zygote could not fork a worker (%s): starting it directly", exc)
        return None


def start_worker(
    plugin: str,
    *,
    on_request: Callable[[Request], None],
    limit: float,
    command: Sequence[str] | None = None,
    environment: Mapping[str, str] | None = None,
    cwd: str | None = None,
    python: str | None = None,
) -> WorkerProcess:
    """Start a worker for ``plugin`` and shake hands within ``limit`` seconds.

    ``command`` runs another program instead of the Python worker (one that speaks the
    protocol on the inherited descriptor named by ``TETHER_WORKER_FD``); ``python`` is
    the interpreter of the Python worker (a plugin's own virtual environment's)."""
    host_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    own_interpreter = python is not None and python != sys.executable
    if command:
        argv = list(command)
    elif own_interpreter:
        assert python is not None
        argv = [python, "-I", "-c", _BOOT_BESIDE, *_host_paths()]
    else:
        argv = [sys.executable, "-I", "-c", _BOOT, _tether_path()]
    env = _environment({**(environment or {}), FD_VARIABLE: str(worker_end.fileno())})
    process: subprocess.Popen[bytes] | ForkedProcess
    streams: tuple[IO[bytes], IO[bytes]]
    try:
        # the zygote is the host's interpreter: a worker of another program, or of the
        # plugin's own environment, starts directly
        forked = None if command or own_interpreter else _fork_worker(worker_end, env, cwd)
        if forked is not None:
            process, out, err = forked
            streams = (os.fdopen(out, "rb"), os.fdopen(err, "rb"))
        else:
            popen = subprocess.Popen(  # noqa: S603 - our own interpreter, or the plugin's runtime
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(worker_end.fileno(),),
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
            assert popen.stdout is not None
            assert popen.stderr is not None
            process, streams = popen, (popen.stdout, popen.stderr)
    finally:
        worker_end.close()
    logger = logging.getLogger(f"tether.worker.{plugin}")
    for stream, level in zip(streams, (logging.INFO, logging.WARNING), strict=True):
        threading.Thread(
            target=_log_lines,
            args=(stream, logger, level),
            daemon=True,
            name=f"tether-worker-output-{plugin}",
        ).start()
    try:
        codec = _handshake(host_end, plugin, limit)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        host_end.close()
        raise

    def to_error(error: dict[str, object]) -> BaseException:
        return rebuild_error(error, plugin=plugin)

    channel = Channel(
        host_end, codec_named(codec), name=plugin, on_request=on_request, to_error=to_error
    )
    worker = WorkerProcess(plugin, process, channel)
    channel.on_closed = worker._on_closed  # noqa: SLF001 - its own listener
    channel.start()
    worker.watch_heartbeats()
    return worker
