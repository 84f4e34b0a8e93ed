"""The wire protocol between the host and a worker process (docs/reference/protocol.md).

Transport: one Unix stream socket per worker (the host's end of a socket pair; the
worker's end is inherited as a file descriptor). Framing: each message is a 4-byte
big-endian length and that many bytes of body, at most :data:`MAX_FRAME`. The first two
frames are the handshake, always JSON: the worker's ``hello`` (the protocol versions and
codecs it speaks), the host's ``welcome`` (the version and codec chosen) or ``refuse``.
Every later frame is an array in the chosen codec (msgpack by default, JSON for
workers that prefer it):

- ``[0, id, target, args, kwargs]`` a request (``id`` 0: a notice, never answered);
- ``[1, id, value]`` its result;
- ``[2, id, error]`` its failure (``{type, message, traceback, file, line}``);
- ``[3, id]`` cancel request ``id`` (the receiver answers it with a failure of type
  ``CancelledError`` once it stopped, or with its result if it had finished);
- ``[4, sequence]`` a heartbeat.

Either side sends requests. :class:`Channel` is one end: whoever holds its read role
takes frames off the socket and hands results to their waiters and requests to the
side's ``on_request``. A synchronous caller takes the role itself when it is free and
reads until its own answer arrives (no hop through another thread: one write and one
read per call, as a bare socket round trip); the reader thread holds it otherwise,
and stays parked, off the socket, while callers keep coming. A request made by the
role's holder (a synchronous handler that calls back into the other side) reads the
socket in place until its own answer arrives, serving what comes meanwhile: calls
nest instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import struct
import threading
import time
import traceback
import weakref
from _thread import allocate_lock as _allocate_lock
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import Any, Final

import msgspec

__all__ = [
    "CANCEL",
    "CODECS",
    "HEARTBEAT",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "REQUEST",
    "Channel",
    "ChannelClosedError",
    "Codec",
    "Request",
    "codec_named",
    "describe_exception",
    "read_frame",
    "write_frame",
]

PROTOCOL_VERSION: Final = 1
MAX_FRAME: Final = 64 * 1024 * 1024
REQUEST, RESULT, FAILURE, CANCEL, HEARTBEAT = 0, 1, 2, 3, 4
_HEADER = struct.Struct(">I")


class Codec:
    """Turns messages into bytes and back: ``msgpack`` (msgspec) or ``json``."""

    __slots__ = ("decode", "encode", "name")

    def __init__(
        self, name: str, encode: Callable[[object], bytes], decode: Callable[[bytes], Any]
    ) -> None:
        self.name = name
        self.encode = encode
        self.decode = decode


def _json_default(value: object) -> object:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be sent to a worker")


def _json_encode(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=_json_default).encode()


_DURATION = 1  # msgpack extension code: a timedelta, as a float of seconds
_SECONDS = struct.Struct(">d")


def _msgpack_codec() -> Codec:
    def enc_hook(value: object) -> object:
        if isinstance(value, timedelta):
            return msgspec.msgpack.Ext(_DURATION, _SECONDS.pack(value.total_seconds()))
        if isinstance(value, set | frozenset):
            return list(value)
        if isinstance(value, PurePath):
            return str(value)
        raise TypeError(f"{type(value).__name__} cannot be sent to a worker")

    def ext_hook(code: int, data: memoryview) -> object:
        if code == _DURATION:
            return timedelta(seconds=_SECONDS.unpack(data)[0])
        raise ValueError(f"unknown msgpack extension {code}")

    encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
    decoder = msgspec.msgpack.Decoder(ext_hook=ext_hook)
    return Codec("msgpack", encoder.encode, decoder.decode)


CODECS: Final = ("msgpack", "json")


def codec_named(name: str) -> Codec:
    if name == "msgpack":
        return _msgpack_codec()
    if name == "json":
        return Codec("json", _json_encode, json.loads)
    raise ValueError(f"unknown codec {name!r}: one of {', '.join(CODECS)}")


# --------------------------------------------------------------------------- frames


class ChannelClosedError(ConnectionError):
    """The other end went away (or broke the framing): ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def write_frame(sock: socket.socket, body: bytes) -> None:
    sock.sendall(_HEADER.pack(len(body)) + body)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ChannelClosedError("the other end closed the socket")
        chunks += chunk
    return bytes(chunks)


def read_frame(sock: socket.socket) -> bytes:
    """One frame's body, blocking (the handshake's; the channel reads in bulk)."""
    (size,) = _HEADER.unpack(_read_exactly(sock, _HEADER.size))
    if size > MAX_FRAME:
        raise ChannelClosedError(f"a frame of {size} bytes is over the limit of {MAX_FRAME}")
    return _read_exactly(sock, size)


# --------------------------------------------------------------------------- errors


def describe_exception(exc: BaseException, *, directory: str | None = None) -> dict[str, object]:
    """An exception as the protocol carries it: its class, message, trace and the last
    frame inside ``directory`` (the plugin's own code), when there is one."""
    frames = traceback.extract_tb(exc.__traceback__)
    file = line = None
    for frame in reversed(frames):
        if directory is None or frame.filename.startswith(directory):
            file, line = frame.filename, frame.lineno
            break
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    # a KeyError's str() is the repr of its key: send the text itself, or every hop
    # between the host and a worker would quote it once more
    only = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else None
    described: dict[str, object] = {
        "type": name,
        "message": only if isinstance(only, str) else str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "file": file,
        "line": line,
    }
    for key in ("hint", "path"):  # a tether error's "what to do" and where
        value = getattr(exc, key, None)
        if value is not None:
            described[key] = str(value)
    return described


# --------------------------------------------------------------------------- the channel


class Request:
    """A request from the other side: answer it with :meth:`Channel.answer` /
    :meth:`Channel.fail` (unless ``id`` is 0, a notice)."""

    __slots__ = ("args", "id", "kwargs", "target")

    def __init__(
        self, ident: int, target: str, args: Sequence[object], kwargs: Mapping[str, object]
    ) -> None:
        self.id = ident
        self.target = target
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"<Request {self.id} {self.target}>"


class _Waiter:
    """A synchronous caller waiting for its answer. A caller that reads the socket itself
    only polls :attr:`done`; one that waits for another reader blocks on a lock made
    on the first :meth:`wait` and released by :meth:`settle`."""

    __slots__ = ("done", "error", "lock", "value")

    def __init__(self) -> None:
        self.lock: Any = None
        self.done = False
        self.value: object = None
        self.error: dict[str, object] | BaseException | None = None

    def settle(self, value: object, error: dict[str, object] | BaseException | None) -> None:
        self.value, self.error = value, error
        self.done = True
        lock = self.lock
        if lock is not None:
            lock.release()

    def wait(self, timeout: float) -> bool:
        """Block until settled or ``timeout`` seconds; whether it was settled."""
        if self.done:
            return True
        lock = self.lock
        if lock is None:
            lock = _allocate_lock()
            lock.acquire()
            self.lock = lock  # from here on, settle releases it
            if self.done:
                return True
        return bool(lock.acquire(timeout=max(timeout, 0.0))) or self.done


class _Inbox:
    """Answers due on one event loop, handed over in one callback per batch (one wake of
    the loop for the many answers of a read, not one each)."""

    __slots__ = ("items", "lock", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: list[tuple[_AsyncWaiter, object, dict[str, object] | BaseException | None]] = []
        self.lock = _allocate_lock()

    def put(
        self, waiter: _AsyncWaiter, value: object, error: dict[str, object] | BaseException | None
    ) -> None:
        with self.lock:
            self.items.append((waiter, value, error))
            first = len(self.items) == 1
        if first:
            try:
                self.loop.call_soon_threadsafe(self.deliver)
            except RuntimeError:  # that loop is closed: nobody waits
                with self.lock:
                    self.items.clear()

    def deliver(self) -> None:
        with self.lock:
            items, self.items = self.items, []
        for waiter, value, error in items:
            waiter.set(value, error)


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()


class _AsyncWaiter:
    """An ``await``-ing caller: its future is settled on its own loop."""

    __slots__ = ("future", "inbox")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        inbox = _inboxes.get(loop)
        if inbox is None:
            inbox = _inboxes[loop] = _Inbox(loop)
        self.inbox = inbox
        self.future: asyncio.Future[object] = loop.create_future()

    def settle(self, value: object, error: dict[str, object] | BaseException | None) -> None:
        self.inbox.put(self, value, error)

    def set(self, value: object, error: dict[str, object] | BaseException | None) -> None:
        if self.future.done():
            return
        if error is None:
            self.future.set_result(value)
        else:
            self.future.set_exception(_CarriedError(error))


class _CarriedError(Exception):
    """Carries a failure (the protocol's dict, or a local exception) to the caller's side,
    which turns it into an exception of its own (``Channel.raise_failure``)."""

    def __init__(self, error: dict[str, object] | BaseException) -> None:
        super().__init__(error)
        self.error = error


class Channel:
    """One end of a worker's socket, after the handshake.

    ``on_request(request)`` is called on the reader thread for every request and must
    not block for long (run the work elsewhere, or inline only when it is quick);
    ``on_cancel(id)`` for each cancel; ``on_closed(reason)`` once, when the socket ends.
    ``to_error(failure)`` turns a failure dict into the exception a caller sees.
    """

    def __init__(
        self,
        sock: socket.socket,
        codec: Codec,
        *,
        name: str,
        on_request: Callable[[Request], None],
        on_cancel: Callable[[int], None] = lambda _id: None,
        on_closed: Callable[[str], None] = lambda _reason: None,
        to_error: Callable[[dict[str, object]], BaseException],
    ) -> None:
        self.sock = sock
        self.codec = codec
        self.name = name
        self.on_request = on_request
        self.on_cancel = on_cancel
        self.on_closed = on_closed
        self.to_error = to_error
        self.closed: str | None = None
        self.last_heartbeat = 0
        self.heard_at = _now()
        self.pending_cancels: set[int] = set()  # cancelled, not answered yet
        self._ids = itertools.count(1)
        self._waiters: dict[int, _Waiter | _AsyncWaiter] = {}
        self._write_lock = threading.Lock()
        self._buffer = bytearray()
        self._chunk = memoryview(bytearray(65536))  # reused: no allocation per read
        self._reader: threading.Thread | None = None
        self._encode = codec.encode
        self._decode = codec.decode
        # The read role: whoever holds it reads the socket and dispatches every frame
        # (the reader thread, or a synchronous caller reading its own answer).
        self._role = _allocate_lock()
        self._holder: int | None = None  # the thread holding the role
        self._wanted = False  # a caller waits for the role: the reader makes way
        self._parked = False  # the reader thread stays out of the callers' way
        self._unpark = threading.Event()
        self._last_call = 0.0  # when a caller last held the role
        # msgspec decodes a memoryview of the read buffer in place; json wants bytes
        self._decode_view: Callable[[memoryview], Any] = (
            codec.decode if codec.name == "msgpack" else lambda view: codec.decode(bytes(view))  # type: ignore[assignment]
        )
        with contextlib.suppress(OSError):  # a blocked read returns now and then
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _READ_SLICE)

    # ------------------------------------------------------------------ sending

    def _send(self, message: object) -> None:
        body = self._encode(message)
        if len(body) > MAX_FRAME:
            raise ValueError(f"a message of {len(body)} bytes is over the limit of {MAX_FRAME}")
        frame = _HEADER.pack(len(body)) + body
        with self._write_lock:
            if self.closed is not None:
                raise ChannelClosedError(self.closed)
            try:
                self.sock.sendall(frame)
            except OSError as exc:
                raise ChannelClosedError(f"writing to the socket failed: {exc}") from exc

    def _register(self, waiter: _Waiter | _AsyncWaiter) -> int:
        ident = next(self._ids)
        self._waiters[ident] = waiter
        if self.closed is not None:
            del self._waiters[ident]
            raise ChannelClosedError(self.closed)
        return ident

    def call(
        self,
        target: str,
        args: Sequence[object] = (),
        kwargs: Mapping[str, object] | None = None,
        *,
        timeout: float | None = None,
    ) -> object:
        """Send a request and block until its answer (``TimeoutError`` past ``timeout``:
        the request is cancelled).

        The caller reads the socket itself when nobody else does (no hop through the
        reader thread), dispatching whatever else arrives meanwhile."""
        waiter = _Waiter()
        ident = self._register(waiter)
        if type(args) is not tuple and type(args) is not list:
            args = list(args)
        if type(kwargs) is not dict:
            kwargs = dict(kwargs or {})
        try:  # the codecs write a tuple as an array: no copies
            self._send([REQUEST, ident, target, args, kwargs])
        except BaseException:
            self._waiters.pop(ident, None)
            raise
        deadline = None if timeout is None else _now() + timeout
        self._await(waiter, deadline)
        if not waiter.done:
            self._cancel(ident)
            raise TimeoutError(f"{target} did not answer within {timeout}s")
        if waiter.error is not None:
            raise self._as_exception(waiter.error)
        return waiter.value

    def _await(self, waiter: _Waiter, deadline: float | None) -> None:
        """Until ``waiter`` is settled or ``deadline`` passed: read the socket when the
        read role is free (or already ours: a nested call), else wait for the reader."""
        me = get_ident()
        if self._holder == me:
            self._pump(until=waiter, deadline=deadline)
            return
        role = self._role
        while not waiter.done:
            if role.acquire(blocking=False):
                self._holder = me
                try:
                    self._pump_as_caller(waiter, deadline)
                finally:
                    self._holder = None
                    self._last_call = _now()
                    role.release()
                    if self._parked and self._waiters:  # answers for others: read them
                        self._unpark.set()
                return
            self._wanted = True
            self._last_call = _now()
            left = _HANDOFF if deadline is None else min(_HANDOFF, deadline - _now())
            if left <= 0:
                return
            waiter.wait(left)

    def _pump_as_caller(self, waiter: _Waiter, deadline: float | None) -> None:
        try:
            self._pump(until=waiter, deadline=deadline)
        except ChannelClosedError as exc:
            self._close(exc.reason)
        except Exception as exc:  # a frame that does not decode: the peer is broken
            self._close(f"a message could not be read: {exc}")

    async def acall(
        self,
        target: str,
        args: Sequence[object] = (),
        kwargs: Mapping[str, object] | None = None,
    ) -> object:
        """Send a request and await its answer; cancelling the await cancels the request."""
        waiter = _AsyncWaiter(asyncio.get_running_loop())
        ident = self._register(waiter)
        try:
            self._send([REQUEST, ident, target, list(args), dict(kwargs or {})])
            if self._parked:
                self._unpark.set()
            return await waiter.future
        except _CarriedError as failure:
            raise self._as_exception(failure.error) from None
        except asyncio.CancelledError:
            self._cancel(ident)
            raise
        finally:
            self._waiters.pop(ident, None)

    def _cancel(self, ident: int) -> None:
        if self._waiters.pop(ident, None) is not None:
            self.pending_cancels.add(ident)
            with contextlib.suppress(ChannelClosedError):
                self._send([CANCEL, ident])

    def notify(
        self, target: str, args: Sequence[object] = (), kwargs: Mapping[str, object] | None = None
    ) -> None:
        """A request nobody answers (id 0)."""
        self._send([REQUEST, 0, target, list(args), dict(kwargs or {})])

    def answer(self, ident: int, value: object) -> None:
        if ident:
            try:
                self._send([RESULT, ident, value])
            except (TypeError, ValueError, msgspec.EncodeError) as exc:
                self.fail(ident, exc)

    def fail(self, ident: int, error: BaseException | dict[str, object]) -> None:
        if ident:
            described = error if isinstance(error, dict) else describe_exception(error)
            self._send([FAILURE, ident, described])

    def heartbeat(self, sequence: int) -> None:
        self._send([HEARTBEAT, sequence])

    def _as_exception(self, error: dict[str, object] | BaseException) -> BaseException:
        return error if isinstance(error, BaseException) else self.to_error(error)

    # ------------------------------------------------------------------ receiving

    def start(self) -> None:
        """Start the reader thread (once)."""
        self._reader = threading.Thread(
            target=self.run, name=f"tether-channel-{self.name}", daemon=True
        )
        self._reader.start()

    def run(self) -> None:
        """Read until the socket ends (the reader thread's body; a worker's main thread).

        While synchronous callers come and go (each reading its own answer), the reader
        stays parked, off the socket, until none came for ``_LINGER`` or an answer
        nobody reads is due."""
        self._reader = threading.current_thread()
        me = get_ident()
        try:
            while self.closed is None:
                self._park()
                with self._role:
                    self._holder = me
                    try:
                        self._pump(until=None, deadline=None)
                    finally:
                        self._holder = None
        except ChannelClosedError as exc:
            self._close(exc.reason)
        except Exception as exc:  # a frame that does not decode: the peer is broken
            self._close(f"a message could not be read: {exc}")
        else:
            self._close(self.closed or "the channel was closed")

    def _park(self) -> None:
        self._parked = True
        try:
            while self.closed is None:
                if self._role.locked():  # a caller reads (and will wake us if need be)
                    left = _LINGER
                elif self._waiters:
                    return  # answers are due and nobody reads
                else:
                    left = self._last_call + _LINGER - _now()
                    if left <= 0:
                        return
                self._unpark.wait(left)
                self._unpark.clear()
        finally:
            self._parked = False

    def _pump(self, *, until: _Waiter | None, deadline: float | None) -> None:  # noqa: C901, PLR0912 - the hot loop, kept in one piece
        """Read frames and dispatch them until ``until`` is settled or ``deadline``
        passed; without ``until``, until a caller wants the socket and no synchronous
        caller waits for an answer (the reader thread's turn)."""
        buffer, chunk, decode = self._buffer, self._chunk, self._decode
        recv_into, decode_view = self.sock.recv_into, self._decode_view
        header = _HEADER.size
        while True:
            while len(buffer) >= header:
                (size,) = _HEADER.unpack_from(buffer)
                if size > MAX_FRAME:
                    raise ChannelClosedError(
                        f"a frame of {size} bytes is over the limit of {MAX_FRAME}"
                    )
                if len(buffer) < header + size:
                    break
                body = bytes(buffer[header : header + size])
                del buffer[: header + size]
                self._dispatch(decode(body))
                if until is not None and until.done:
                    return
            if until is None:
                if self._wanted and not self._has_sync_waiters():
                    self._wanted = False
                    return
                if self.closed is not None:
                    return
            elif until.done or (deadline is not None and _now() >= deadline):
                return
            try:
                size = recv_into(chunk)
            except BlockingIOError:  # the read slice passed: look at the clock, read on
                continue
            except OSError as exc:
                raise ChannelClosedError(f"reading the socket failed: {exc}") from exc
            if not size:
                raise ChannelClosedError("the other end closed the socket")
            if not buffer and size >= header:
                (length,) = _HEADER.unpack_from(chunk)
                if header + length == size:  # exactly one frame: no copy into the buffer
                    self._dispatch(decode_view(chunk[header:size]))
                    continue
            buffer += chunk[:size]

    def _has_sync_waiters(self) -> bool:
        return any(type(waiter) is _Waiter for waiter in list(self._waiters.values()))

    def _dispatch(self, message: Any) -> None:  # noqa: ANN401 - whatever the codec decoded
        kind = message[0]
        if kind in (RESULT, FAILURE):
            if self.pending_cancels:
                self.pending_cancels.discard(message[1])
            waiter = self._waiters.pop(message[1], None)
            if waiter is not None:
                if kind == RESULT:
                    waiter.settle(message[2], None)
                else:
                    waiter.settle(None, message[2])
        elif kind == REQUEST:
            _, ident, target, args, kwargs = message
            self.on_request(Request(ident, target, args, kwargs))
        elif kind == CANCEL:
            self.on_cancel(message[1])
        elif kind == HEARTBEAT:
            self.last_heartbeat = message[1]
            self.heard_at = _now()
        else:
            raise ChannelClosedError(f"a message of unknown kind {kind!r}")

    def _close(self, reason: str) -> None:
        with self._write_lock:
            if self.closed is not None:
                return
            self.closed = reason
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.settle(None, ChannelClosedError(reason))
        with contextlib.suppress(OSError):
            self.sock.close()
        self.on_closed(reason)

    def close(self, reason: str = "the channel was closed") -> None:
        """Close the socket; every waiter fails with :class:`ChannelClosedError`."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._close(reason)


_now = time.monotonic
get_ident = threading.get_ident
_HANDOFF = 0.05  # a caller waiting for the reader retries the read role this often
_LINGER = 0.002  # the reader stays off the socket this long after a caller read it
_READ_SLICE = struct.pack("ll", 0, 50_000)  # SO_RCVTIMEO: a blocked read returns each 50 ms
