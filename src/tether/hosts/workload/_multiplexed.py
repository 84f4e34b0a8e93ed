"""The multiplexed engine: one thread drives all of a process's connections.

For a workload that declares its statements (``get_statements()``) and hands out
the parameters of its transactions (``statement_parameters(op, count)``), the
engine sends the statements itself instead of calling ``execute_operation`` per
transaction. One thread per process waits in one ``epoll`` for every connection's
socket; when a connection's answer is complete it records the latency and sends the
connection's next transaction at once. libpq opens each connection (authentication,
TLS refused: see below) and prepares the statements; the engine then speaks the
extended-query protocol on libpq's socket (:mod:`._wire`), only ever between two
ReadyForQuery messages, so the connection is idle when libpq closes it.

Why: on a small machine the server and the clients share the cores, and client
CPU per transaction decides throughput. One client thread per connection costs a
GIL hand-off per statement; a call into the plugin per transaction and libpq's
result objects cost more Python than the transaction's own bytes.

The plugin still decides everything through its handle (the seam): which
statements (``get_statements``, read again when another version goes live) and
every parameter (``statement_parameters``, asked for :data:`BATCH` transactions of
one operation at a time, the batch dropped when another version goes live). What
the engine keeps of the per-client engine: the operation mix by weight, drawn per
connection with its own seeded generator, and :meth:`Engine.set_weights`; the
paced schedule (``--rate``), the transaction budget, the warmup, ticks, latencies
per operation, and errors per distinct (class, message): a statement the server
refuses counts as the psycopg class of its SQLSTATE (``UniqueViolation``...), with
the message psycopg would give; its transaction is rolled back if one is open, and
the rest of the transaction is not sent.

A transaction, as ``statement_parameters`` gives it, is a sequence of round trips;
a round trip, a sequence of ``(statement name, parameters)`` sent together and
followed by one Sync. ``[[("read", (7,))]]`` is one statement; seven statements in
one round trip are a pipelined transaction; seven round trips of one statement
each wait for every result, as ``pgbench`` does.

TLS connections are not spoken to directly (the bytes on the socket are
encrypted): :func:`is_direct` says whether a connection can be, and the bench
falls back to the per-client engine when it cannot.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import select
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from tether import error_text
from tether.hosts.workload._engine import Engine, Executable, Plan, Tick, in_thread
from tether.hosts.workload._errors import BenchError
from tether.hosts.workload._pacing import intended_start_ns
from tether.hosts.workload._weights import make_chooser
from tether.hosts.workload._wire import (
    COMPLETE,
    ERROR,
    HEADER,
    IDLE,
    READY,
    ROLLBACK,
    SYNC,
    Statement,
    error_of,
)

__all__ = ["BATCH", "MultiplexedEngine", "is_direct"]

BATCH = 64
"""Transactions of one operation asked of ``statement_parameters`` at a time."""

_NS = 1_000_000_000
_READ = 16_384
_generations = itertools.count(1)  # prepared statements' names, unique in the process
_SHORT = 1024
"""An answer this short that ends as the connection's last complete one did (its
CommandComplete and ReadyForQuery, :attr:`_Link.tail`) is complete and error-free: the
server writes such an answer in one piece, and after an error a round trip ends with
ErrorResponse, never CommandComplete. Longer answers, or answers in pieces, are read
message by message."""
_NO_TAIL = b"\0" * (_SHORT + 1)  # matches no answer of at most _SHORT bytes
_SEND_WAIT = 1.0  # seconds between two tries of a send the socket's buffer refused
_LOST = "server closed the connection unexpectedly"


def is_direct(connection: object) -> bool:
    """Whether the engine may speak on ``connection``'s socket itself (libpq, no TLS)."""
    pg = getattr(connection, "pgconn", None)
    return pg is not None and not pg.ssl_in_use


class _Link:
    """One connection as the engine drives it."""

    __slots__ = (
        "_send",
        "began",
        "buffer",
        "choose",
        "connection",
        "drawn_from",
        "error",
        "fd",
        "generation",
        "measured",
        "op",
        "recv",
        "rest",
        "rng",
        "rolling_back",
        "socket",
        "tail",
    )

    def __init__(
        self,
        connection: Any,  # noqa: ANN401 - a psycopg connection
        rng: random.Random,
        choose: Callable[[], str],
        drawn_from: object,
    ) -> None:
        self.connection = connection
        self.rng = rng
        self.fd: int = connection.pgconn.socket
        self.socket = socket.socket(fileno=os.dup(self.fd))
        self.socket.settimeout(0.0)  # libpq's socket is non-blocking already
        self.recv = self.socket.recv
        self._send = self.socket.send
        self.buffer = b""
        self.choose = choose
        self.drawn_from = drawn_from
        self.generation = -1
        self.op = ""
        self.began = 0
        self.measured = False
        self.rest: list[bytes] = []  # the transaction's round trips not sent yet
        self.error: tuple[str, str] | None = None  # the transaction's first error
        self.rolling_back = False
        self.tail = _NO_TAIL

    def send(self, data: bytes) -> None:
        """Send all of ``data``: at once, unless the socket's buffer is full (a large
        transaction), then waiting until it takes the rest."""
        try:
            sent = self._send(data)
        except BlockingIOError:
            sent = 0
        while sent < len(data):
            data = data[sent:]
            select.select([], [self.fd], [], _SEND_WAIT)
            try:
                sent = self._send(data)
            except BlockingIOError:
                sent = 0


class MultiplexedEngine(Engine):
    """An :class:`Engine` whose clients are connections one thread drives (see the module
    docstring). ``parameters`` is the plugin's ``statement_parameters`` operation,
    ``statements`` its ``get_statements`` one (both through its handle)."""

    def __init__(
        self,
        plan: Plan,
        *,
        parameters: Executable,
        statements: Executable,
        weights: dict[str, int],
        on_tick: Callable[[Tick], None] | None = None,
        workload: str = "workload",
    ) -> None:
        super().__init__(plan, operation=parameters, weights=weights, on_tick=on_tick)
        self.is_async = False
        self.workload = workload
        self._parameters = parameters
        self._statements_source = statements
        self._call: object = None  # the parameters' entry the buffers came from
        self._buffers: dict[str, list[Sequence[Sequence[tuple[str, Sequence[object]]]]]] = {}
        self._statements: dict[str, tuple[bytes, Statement]] = {}
        self._generation = 0
        self._links: list[_Link] = []
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._classes: dict[str, str] = {}
        self._budget = plan.transactions

    # ------------------------------------------------------------------ control

    def request_stop(self, reason: str = "interrupted") -> None:
        super().request_stop(reason)
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")

    def close(self) -> None:
        """Let go of the sockets (the connections stay open, libpq's again) and the pipe."""
        for link in self._links:
            link.socket.close()
        self._links = []
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def attach(self, connections: Sequence[object]) -> None:
        """Take ``connections`` (psycopg, libpq, no TLS) and prepare the statements on each."""
        for connection in connections:
            if not is_direct(connection):
                raise BenchError(
                    "the multiplexed engine speaks to the server on libpq's socket, "
                    "and this connection uses TLS",
                    hint="run with --engine per-client, or connect without TLS (sslmode=disable)",
                )
        self._load_statements()
        for index, connection in enumerate(connections):
            rng = self._rng(index)
            link = _Link(connection, rng, make_chooser(self.weights, rng), self.weights)
            self._links.append(link)
            self._prepare(link)

    def _load_statements(self) -> None:
        """Read the live version's statements; the links prepare them before their next one."""
        self._call = self._parameters.call
        self._buffers = {}
        declared = self._statements_source.call()
        statements = check_statements(self.workload, declared)
        generation = self._generation = next(_generations)
        self._statements = {
            name: (statement.head, statement)
            for name, statement in (
                (name, Statement(name, f"tether_{generation}_{index}".encode(), sql))
                for index, (name, sql) in enumerate(statements.items())
            )
        }

    def _prepare(self, link: _Link) -> None:
        pg = link.connection.pgconn
        for _, statement in self._statements.values():
            result = pg.prepare(statement.prepared, statement.sql.encode())
            if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
                message = (result.error_message or b"").decode("utf-8", "replace").strip()
                raise BenchError(
                    f"workload '{self.workload}': statement '{statement.name}' of "
                    f"get_statements() does not prepare: {message}",
                    hint="fix the statement's SQL (parameters are $1, $2...)",
                )
        link.generation = self._generation

    # ------------------------------------------------------------------ running

    async def _run_clients(self, connections: Sequence[object]) -> None:
        if not self._links:
            self.attach(connections)
        await in_thread(lambda _db, _index: self._multiplex(), None, 0)

    def _multiplex(self) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot loop, written out
        poller = select.epoll()
        poller.register(self._wake_read, select.EPOLLIN)
        by_fd: dict[int, _Link] = {}
        for link in self._links:
            poller.register(link.fd, select.EPOLLIN)
            by_fd[link.fd] = link
        idle = list(self._links)
        busy = 0
        now = time.monotonic_ns
        plan = self.plan
        rate, phase, start_ns, end_ns = plan.rate, plan.phase, self._start_ns, self._end_ns
        slots = self._slots
        next_slot = intended_start_ns(next(slots), start_ns=start_ns, rate=rate, phase=phase) \
            if rate is not None else 0  # fmt: skip
        latencies = self.collector.latencies
        unpack = HEADER.unpack_from
        poll = poller.poll
        try:
            while True:
                if not self.stopping and idle:
                    if rate is None:
                        began = now()
                        while idle and began < end_ns and not self.stopping:
                            if self._start(idle[-1], began):
                                idle.pop()
                                busy += 1
                            began = now()
                    else:
                        current = now()
                        while idle and next_slot <= current and next_slot < end_ns:
                            if self.stopping:
                                break
                            if self._start(idle[-1], next_slot):
                                idle.pop()
                                busy += 1
                            next_slot = intended_start_ns(
                                next(slots), start_ns=start_ns, rate=rate, phase=phase
                            )
                            current = now()
                if busy == 0:
                    finished = (
                        self.stopping
                        or ((now() if rate is None else next_slot) >= end_ns)
                        or not idle
                    )
                    if finished:
                        return
                timeout = -1.0
                if rate is not None and idle and not self.stopping:
                    timeout = max(0.0, (min(next_slot, end_ns) - now()) / _NS)
                elif rate is None and busy == 0 and not self.stopping:
                    timeout = max(0.0, (end_ns - now()) / _NS) if end_ns < (1 << 61) else -1.0
                events = poll(timeout)
                t = now()
                for fd, _ in events:
                    found = by_fd.get(fd)
                    if found is None:
                        with contextlib.suppress(OSError):
                            os.read(self._wake_read, 4096)
                        continue
                    link = found
                    try:
                        data = link.recv(_READ)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        data = b""
                        lost = error_text(exc)
                    else:
                        lost = _LOST
                    if not data:
                        poller.unregister(fd)
                        del by_fd[fd]
                        if link.error is None:
                            link.error = ("OperationalError", lost)
                        self._finish(link, t)
                        busy -= 1
                        continue
                    if link.buffer:
                        data = link.buffer + data
                    elif len(data) <= _SHORT and data.endswith(link.tail):
                        status = READY  # the same ending as last time: complete, no error
                    else:
                        status = 0
                    if status == 0:  # read it message by message
                        i = previous = 0
                        n = len(data)
                        while i + 5 <= n:
                            kind, length = unpack(data, i)
                            j = i + 1 + length
                            if j > n:
                                break
                            if kind == READY:
                                status = data[i + 5]
                                if link.error is None and data[previous] == COMPLETE:
                                    link.tail = data[previous:j]
                                i = j
                                break
                            if kind == ERROR and link.error is None:
                                link.error = self._server_error(data[i + 5 : j])
                            previous = i
                            i = j
                        link.buffer = data[i:] if i < n else b""
                        if not status:
                            continue  # the round trip's answer is not complete yet
                    if link.error is None:
                        if link.rest:
                            link.send(link.rest.pop())
                            continue
                        if link.measured:
                            latencies[link.op].append((t - link.began) // 1000)
                    elif not link.rolling_back and status != IDLE:  # a transaction is open
                        link.rolling_back = True
                        link.rest = []
                        link.send(ROLLBACK)
                        continue
                    else:
                        self._finish(link, t)
                    busy -= 1
                    if rate is None and t < end_ns and not self.stopping and self._start(link, t):
                        busy += 1
                        continue
                    idle.append(link)
        finally:
            poller.close()

    def _finish(self, link: _Link, at_ns: int) -> None:
        """Count the link's failed transaction (when measured) and clear its error."""
        error = link.error
        link.error = None
        link.rolling_back = False
        link.rest = []
        if error is not None and link.measured:
            self.collector.errors.append((link.op, error[0], error[1], at_ns))

    def _start(self, link: _Link, began: int) -> bool:  # noqa: C901, PLR0912 - the hot path
        """Send ``link``'s next transaction, intended to start at ``began``; False if none
        was sent (the budget is spent, or its parameters failed: counted as an error)."""
        measured = began >= self._measure_ns
        if measured and self._budget is not None and next(self._tickets) >= self._budget:
            self._exhausted()
            return False
        if self.weights is not link.drawn_from:  # set_weights: a new operation mix
            link.drawn_from = self.weights
            link.choose = make_chooser(self.weights, link.rng)
        op = link.choose()
        try:
            if self._parameters.call is not self._call:  # another version went live
                self._load_statements()
            if link.generation != self._generation:
                self._prepare(link)
            buffer = self._buffers.get(op)
            if not buffer:
                buffer = self._refill(op)
            transaction = buffer.pop()
        except Exception as exc:  # the plugin's own error, as execute_operation's would be
            if measured:
                self.collector.errors.append((op, type(exc).__name__, error_text(exc), began))
            return False
        try:
            if len(transaction) == 1 and len(round_trip := transaction[0]) == 1:  # one statement
                name, params = round_trip[0]
                head, statement = self._statements[name]
                if len(params) == 1 and type(value := params[0]) is bytes:
                    first = statement.alone(value)
                else:
                    first = statement.encode(head, params) + SYNC
                link.rest = []
            else:
                link.rest = self._encode(op, transaction)
                first = link.rest.pop()
        except Exception as exc:  # a transaction of the wrong shape: said in its terms
            if measured:
                error = self._explained(op, exc)
                self.collector.errors.append((op, type(error).__name__, error_text(error), began))
            return False
        link.op = op
        link.began = began
        link.measured = measured
        link.send(first)
        return True

    def _refill(self, op: str) -> list[Any]:
        """A batch of ``op``'s transactions from the plugin, in the order it gave them."""
        given = self._parameters.call(op, BATCH)
        buffer = self._buffers[op] = check_batch(self.workload, op, given)
        return buffer

    def _encode(
        self, op: str, transaction: Sequence[Sequence[tuple[str, Sequence[object]]]]
    ) -> list[bytes]:
        """The transaction's round trips as bytes, the first last (the engine pops them)."""
        statements = self._statements
        encoded = []
        for round_trip in transaction:
            parts = []
            for name, params in round_trip:
                head, statement = statements[name]
                parts.append(statement.encode(head, params))
            parts.append(SYNC)
            encoded.append(b"".join(parts))
        if not encoded or len(encoded[0]) == len(SYNC):
            raise BenchError(
                f"workload '{self.workload}': statement_parameters({op!r}) gave an empty "
                "transaction or round trip",
                hint="give each round trip at least one (statement, parameters) pair",
            )
        encoded.reverse()
        return encoded

    def _explained(self, op: str, exc: Exception) -> Exception:
        """``exc`` from the parameters of ``op``, said in the workload's terms."""
        if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
            return BenchError(
                f"workload '{self.workload}': statement_parameters({op!r}) names "
                f"statement {exc.args[0]!r}, which get_statements() does not declare "
                f"(it declares {', '.join(sorted(self._statements))})",
                hint="name a statement of get_statements() in each (statement, parameters)",
            )
        if not isinstance(exc, BenchError):
            return BenchError(
                f"workload '{self.workload}': statement_parameters({op!r}) gave a "
                f"transaction that is not a sequence of round trips of (statement, "
                f"parameters) pairs: {type(exc).__name__}: {exc}",
                hint='return e.g. [[("read", (7,))]] per transaction (see docs/workloads.md)',
            )
        return exc

    def _server_error(self, body: bytes) -> tuple[str, str]:
        error = error_of(body)
        name = self._classes.get(error.sqlstate)
        if name is None:
            try:
                name = pg_errors.lookup(error.sqlstate).__name__
            except KeyError:
                name = "DatabaseError"
            self._classes[error.sqlstate] = name
        return name, error.message


def check_statements(workload: str, declared: object) -> dict[str, str]:
    """``get_statements()``'s answer, checked: a non-empty mapping of names to SQL."""
    if (
        not isinstance(declared, Mapping)
        or not declared
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in declared.items())
    ):
        raise BenchError(
            f"workload '{workload}': get_statements() must return a non-empty dict of "
            f"statement names to SQL, got {type(declared).__name__}",
            hint='return e.g. {"read": "SELECT body FROM notes WHERE id = $1"}',
        )
    return dict(declared)


def check_batch(workload: str, op: str, given: object) -> list[Any]:
    """``statement_parameters(op, n)``'s answer as a list the engine pops from."""
    if not isinstance(given, list | tuple) or not given:
        raise BenchError(
            f"workload '{workload}': statement_parameters({op!r}, n) must return a "
            f"non-empty list of transactions, got {type(given).__name__}",
            hint="return up to n transactions, each a list of round trips (docs/workloads.md)",
        )
    batch = list(given)
    batch.reverse()  # popped from the end: the plugin's order
    return batch
