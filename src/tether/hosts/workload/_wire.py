"""PostgreSQL's extended-query messages, built and read by hand (pure: bytes in, bytes out).

The multiplexed engine (:mod:`._multiplexed`) lets libpq connect (authentication,
parameters) and prepare the workload's statements, then speaks to the server on
libpq's socket itself: per statement the messages libpq's ``PQsendQueryPrepared``
sends (Bind of the prepared statement with text parameters, Describe of the portal,
Execute), and one Sync per round trip; it reads the answers back up to each
ReadyForQuery. That is the protocol of ``pgbench -M prepared``, without libpq's
per-result objects. It only ever does so between two ReadyForQuery messages, so
libpq finds the connection idle, as it left it, when it closes it.

A :class:`Statement` is one prepared statement's constant bytes; :func:`encode`
turns a call's parameters into the messages; the engine walks what the server
sent, message by message (:data:`HEADER`), and :func:`error_of` reads an
ErrorResponse.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "COMPLETE",
    "ERROR",
    "HEADER",
    "IDLE",
    "READY",
    "ROLLBACK",
    "SYNC",
    "ServerError",
    "Statement",
    "error_of",
    "parameter_bytes",
]

_INT32 = struct.Struct("!i")
_INT16 = struct.Struct("!h")
_HEADER = struct.Struct("!BI")
_pack32 = _INT32.pack

_DESCRIBE_EXECUTE = b"D" + _pack32(6) + b"P\0" + b"E" + _pack32(9) + b"\0" + _pack32(0)
SYNC = b"S" + _pack32(4)
_ALONE_END = b"\0\0" + _DESCRIBE_EXECUTE + SYNC
ROLLBACK = b"Q" + _pack32(4 + len(b"ROLLBACK\0")) + b"ROLLBACK\0"
"""A simple-query ROLLBACK (its own round trip, ending with ReadyForQuery)."""

_NULL = _pack32(-1)


def parameter_bytes(value: object) -> bytes | None:
    """A parameter in PostgreSQL's text format (``None``: SQL NULL)."""
    if type(value) is bytes:
        return value
    if value is None:
        return None
    if type(value) is int:
        return b"%d" % value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


@dataclass(frozen=True, slots=True)
class Statement:
    """One prepared statement: the workload's name for it, the server's, its SQL.

    :meth:`encode` gives a call's Bind, Describe and Execute messages.
    """

    name: str
    prepared: bytes
    sql: str
    _prefixes: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)

    def alone(self, value: bytes) -> bytes:
        """A whole round trip of this statement alone with one parameter, ``value``
        (Bind, Describe, Execute, Sync), from a prefix kept per parameter length."""
        size = len(value)
        prefix = self._prefixes.get(size)
        if prefix is None:
            head = self.head
            prefix = b"B" + _pack32(size + 12 + len(head)) + head + b"\0\x01" + _pack32(size)
            self._prefixes[size] = prefix
        return prefix + value + _ALONE_END

    @property
    def head(self) -> bytes:
        """Bind's bytes before the parameter count: unnamed portal, statement, text formats."""
        return b"\0" + self.prepared + b"\0" + b"\0\0"

    def encode(self, head: bytes, params: Sequence[object]) -> bytes:
        """The messages of one call with ``params`` (``head`` is :attr:`head`, kept by callers)."""
        if len(params) == 1 and type(only := params[0]) is bytes:  # the common case
            size = len(only)
            return (
                b"B" + _pack32(size + 12 + len(head)) + head + b"\0\x01" + _pack32(size) + only
                + b"\0\0" + _DESCRIBE_EXECUTE
            )  # fmt: skip
        parts = [head, _INT16.pack(len(params))]
        for value in params:
            data = parameter_bytes(value)
            if data is None:
                parts.append(_NULL)
            else:
                parts.append(_pack32(len(data)))
                parts.append(data)
        parts.append(b"\0\0")  # every column in text format
        body = b"".join(parts)
        return b"B" + _pack32(len(body) + 4) + body + _DESCRIBE_EXECUTE


@dataclass(frozen=True, slots=True)
class ServerError:
    """An ErrorResponse: its SQLSTATE and its message as psycopg words it (the primary
    message, then ``DETAIL:``, ``HINT:`` and ``CONTEXT:`` lines when the server sent them)."""

    sqlstate: str
    message: str


_FIELDS = (("M", ""), ("D", "DETAIL:  "), ("H", "HINT:  "), ("W", "CONTEXT:  "))


def error_of(body: bytes) -> ServerError:
    """The ErrorResponse whose fields are ``body`` (after the type byte and length)."""
    fields: dict[str, str] = {}
    for item in body.split(b"\0"):
        if item:
            fields.setdefault(chr(item[0]), item[1:].decode("utf-8", "replace"))
    lines = [f"{prefix}{fields[key]}" for key, prefix in _FIELDS if key in fields]
    return ServerError(fields.get("C", ""), "\n".join(lines))


HEADER = _HEADER
"""The header of every message the server sends: type byte (an int), int32 length (itself
included)."""
READY = ord("Z")
"""ReadyForQuery's type: the end of one Sync's answer; its one byte of body is the
transaction status (``I`` idle, ``T`` in a transaction, ``E`` in a failed one)."""
ERROR = ord("E")
"""ErrorResponse's type."""
COMPLETE = ord("C")
"""CommandComplete's type: a statement done."""
IDLE = ord("I")
