"""TPC-B in libpq's pipeline mode, through psycopg's libpq binding (``psycopg.pq``).

psycopg's own pipeline (``with conn.pipeline():``) costs about 180 us of client CPU
per TPC-B transaction; talking to libpq directly costs about 45 us in a thread, and
about 25 us on the event loop. A client prepares the seven statements once, enters
pipeline mode, and for each transaction sends all of them and a Sync, then reads the
results: one round trip.

A statement on its own (select-only, and each statement of TPC-B when ``pipeline:
false``) costs less out of pipeline mode: one ``exec_prepared`` call, which sends it,
waits with the GIL released and returns its result (measured with 8 client threads
on 2 cores: 17 us of client CPU per select-only transaction, against 29 us for the
same statement sent in the pipeline and read back in ten calls, each of which may
hand the GIL to another thread).

Two clients: :class:`PipelinedClient` (``driver: psycopg``) waits in ``poll()``,
which releases the GIL for the other client threads; :class:`AsyncPipelinedClient`
(``driver: libpq``) runs on the event loop, over the libpq connection of a psycopg
``AsyncConnection``: it keeps one reader on the socket for the connection's
lifetime (tether removes it before closing the connection), which reads what
arrives into libpq and wakes the client when a whole result is there.

A statement that fails aborts the rest of the pipeline; the open transaction is
rolled back, and the first error is raised as psycopg's exception class for its
SQLSTATE (``DeadlockDetected``, ``SerializationFailure``...), so the runner counts
it by that name.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Sequence
from typing import Any

from psycopg import Error, errors, pq

__all__ = ["AsyncPipelinedClient", "PipelinedClient"]

_OK = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK})
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_IDLE = pq.TransactionStatus.IDLE

Call = tuple[bytes, Sequence[bytes] | None]


class PipelinedClient:
    """One client's connection, with ``statements`` prepared by name: :meth:`run` sends
    a transaction's statements in one pipeline, :meth:`execute` one statement on its own.

    The connection enters pipeline mode for :meth:`run` and leaves it for
    :meth:`execute` (both are local to libpq: no round trip), so one client may mix them.
    """

    __slots__ = ("_pipelined", "_readable", "_writable", "db", "pg")

    def __init__(self, db: Any, statements: dict[bytes, bytes]) -> None:
        self.db = db
        self.pg: pq.abc.PGconn = db.pgconn
        for name, query in statements.items():
            result = self.pg.prepare(name, query)
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise _error(result)
        self._pipelined = False
        self._readable = select.poll()
        self._readable.register(self.pg.socket, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(self.pg.socket, select.POLLOUT)

    def execute(self, name: bytes, params: Sequence[bytes] | None) -> None:
        """Run one prepared statement and wait for it (one round trip, one libpq call).

        A failed statement raises its SQLSTATE's class; the transaction it was in, if
        any, is rolled back first.
        """
        pg = self.pg
        if self._pipelined:
            self._leave_pipeline()
        result = pg.exec_prepared(name, params)
        if result.status not in _OK:
            error = _error(result)
            if pg.transaction_status != _IDLE:
                pg.exec_(b"ROLLBACK")
            raise error

    def run(self, calls: Sequence[Call]) -> None:
        """Send ``calls`` (prepared statement name, text parameters) and a Sync; check them."""
        pg = self.pg
        if not self._pipelined:
            pg.enter_pipeline_mode()
            pg.nonblocking = 1
            self._pipelined = True
        send = pg.send_query_prepared
        for name, params in calls:
            send(name, params)
        pg.pipeline_sync()
        error = self._finish()
        if error is not None:
            if pg.transaction_status != _IDLE:
                pg.send_query_params(b"ROLLBACK", None)
                pg.pipeline_sync()
                self._finish()
            raise error

    def _leave_pipeline(self) -> None:
        self.pg.nonblocking = 0
        self.pg.exit_pipeline_mode()
        self._pipelined = False

    def _finish(self) -> Exception | None:
        """Flush what was sent, read every result up to the Sync; the first error, if any."""
        pg = self.pg
        while pg.flush():
            self._writable.poll()
        first: Exception | None = None
        while True:
            while pg.is_busy():
                self._readable.poll()
                pg.consume_input()
            result = pg.get_result()
            if result is None:
                continue  # the end of one statement's results
            status = result.status
            if status == _SYNC:
                return first
            if status not in _OK and first is None:
                first = _error(result)


class AsyncPipelinedClient:
    """One client's libpq connection (of a psycopg ``AsyncConnection``) in pipeline mode,
    on the running event loop. Call :meth:`start` once, then :meth:`run` per transaction.
    """

    __slots__ = ("_fd", "_loop", "_pending", "_waiter", "db", "pg")

    def __init__(self, db: Any) -> None:
        self.db = db
        self.pg: pq.abc.PGconn = db.pgconn
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._pending = 0  # Syncs sent whose results are not read yet
        self._fd = self.pg.socket

    async def start(self, statements: dict[bytes, bytes]) -> None:
        """Enter pipeline mode, watch the socket, prepare ``statements`` by name."""
        pg = self.pg
        pg.enter_pipeline_mode()
        pg.nonblocking = 1
        self._loop.add_reader(self._fd, self._on_readable)
        for name, query in statements.items():
            pg.send_prepare(name, query)
        pg.pipeline_sync()
        self._pending += 1
        error = await self._finish()
        if error is not None:
            raise error

    async def run(self, calls: Sequence[Call]) -> None:
        """Send ``calls`` (prepared statement name, text parameters) and a Sync; check them.

        A failed statement's transaction is rolled back and its error raised.
        """
        pg = self.pg
        if self._pending:  # a call was cancelled while waiting: read what it left
            await self._recover()
        send = pg.send_query_prepared
        for name, params in calls:
            send(name, params)
        pg.pipeline_sync()
        self._pending += 1
        error = await self._finish()
        if error is not None:
            if pg.transaction_status != _IDLE:
                await self._rollback()
            raise error

    async def _recover(self) -> None:
        await self._finish()
        if self.pg.transaction_status != _IDLE:
            await self._rollback()

    async def _rollback(self) -> None:
        self.pg.send_query_params(b"ROLLBACK", None)
        self.pg.pipeline_sync()
        self._pending += 1
        await self._finish()

    async def _finish(self) -> Exception | None:
        """Read every result up to the last Sync sent; the first error of the last batch."""
        pg = self.pg
        if pg.flush():  # the socket's buffer is full (rare): wait until it takes the rest
            await self._flush()
        first: Exception | None = None
        get = pg.get_result
        while True:
            if pg.is_busy():
                self._waiter = waiter = self._loop.create_future()
                try:
                    await waiter
                finally:
                    self._waiter = None
            result = get()
            if result is None:
                continue  # the end of one statement's results
            status = result.status
            if status == _SYNC:
                self._pending -= 1
                if not self._pending:
                    return first
                first = None  # an earlier batch's: its caller is gone
            elif status not in _OK and first is None:
                first = _error(result)

    async def _flush(self) -> None:
        loop = self._loop
        while self.pg.flush():
            writable: asyncio.Future[None] = loop.create_future()
            loop.add_writer(self._fd, _settle, writable)
            try:
                await writable
            finally:
                loop.remove_writer(self._fd)

    def _on_readable(self) -> None:
        """Read what arrived into libpq; wake the client once a result is complete."""
        waiter = self._waiter
        try:
            self.pg.consume_input()
        except Error as exc:  # the connection is gone: stop watching a dead socket
            self._loop.remove_reader(self._fd)
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            return
        if waiter is not None and not waiter.done() and not self.pg.is_busy():
            waiter.set_result(None)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _error(result: pq.abc.PGresult) -> Exception:
    """psycopg's exception for the result's SQLSTATE, with the server's message."""
    sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
    message = (result.error_message or b"").decode("utf-8", "replace").strip()
    if result.status == pq.ExecStatus.PIPELINE_ABORTED:
        message = message or "pipeline aborted by an earlier error"
    try:
        kind = errors.lookup(sqlstate.decode()) if sqlstate else errors.DatabaseError
    except KeyError:
        kind = errors.DatabaseError
    return kind(message)
