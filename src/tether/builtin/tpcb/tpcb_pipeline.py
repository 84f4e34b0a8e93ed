"""TPC-B in libpq's pipeline mode, through psycopg's libpq binding (``psycopg.pq``).

psycopg's own pipeline (``with conn.pipeline():``) costs about 180 us of client CPU
per TPC-B transaction; talking to libpq directly costs about 45 us. A client
prepares the seven statements once, enters pipeline mode, and for each transaction
sends all of them and a Sync, then reads the results: one round trip. While it
waits for the server it sits in ``poll()``, which releases the GIL for the other
client threads.

A statement that fails aborts the rest of the pipeline; the open transaction is
rolled back, and the first error is raised as psycopg's exception class for its
SQLSTATE (``DeadlockDetected``, ``SerializationFailure``...), so the runner counts
it by that name.
"""

from __future__ import annotations

import select
from typing import Any

from psycopg import errors, pq

__all__ = ["PipelinedClient"]

_OK = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK})
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_IDLE = pq.TransactionStatus.IDLE

Call = tuple[bytes, list[bytes | None] | None]


class PipelinedClient:
    """One client's connection in pipeline mode, with ``statements`` prepared by name."""

    def __init__(self, db: Any, statements: dict[bytes, bytes]) -> None:
        self.db = db
        self.pg: pq.abc.PGconn = db.pgconn
        for name, query in statements.items():
            result = self.pg.prepare(name, query)
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise _error(result)
        self.pg.enter_pipeline_mode()
        self.pg.nonblocking = 1
        self._readable = select.poll()
        self._readable.register(self.pg.socket, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(self.pg.socket, select.POLLOUT)

    def run(self, calls: list[Call]) -> None:
        """Send ``calls`` (prepared statement name, text parameters) and a Sync; check them."""
        send = self.pg.send_query_prepared
        for name, params in calls:
            send(name, params)
        self.pg.pipeline_sync()
        error = self._finish()
        if error is not None:
            if self.pg.transaction_status != _IDLE:
                self.pg.send_query_params(b"ROLLBACK", None)
                self.pg.pipeline_sync()
                self._finish()
            raise error

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
