"""pgbench's TPC-B-like workload as a tether workload plugin.

Tables, data and transactions are pgbench's (``pgbench -i`` and its built-in
``tpcb-like`` and ``select-only`` scripts), so ``tether bench --workload tpcb``
and ``pgbench -M prepared`` run the same statements against the same data::

    BEGIN;
    UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
    SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
    UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
    UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
    INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
        VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
    END;

``setup`` creates and loads the tables with COPY, then adds the primary keys and
vacuums, as ``pgbench -i`` does. It is idempotent: tables already loaded at the
configured scale are kept (only ``pgbench_history`` is emptied, so it holds this
run's transactions); any other state is dropped and loaded afresh. ``cleanup``
drops the four tables.

``driver: asyncpg`` makes ``execute_operation`` a coroutine, so clients get
asyncpg connections; ``driver: libpq`` makes it a coroutine too and asks for psycopg
AsyncConnection objects (``get_connection_type()``), whose libpq connection it drives
directly on the event loop (:class:`~.tpcb_pipeline.AsyncPipelinedClient`);
``driver: psycopg`` makes it a plain method, so clients get psycopg connections, one
thread each, whose libpq connections it drives directly
(:class:`~.tpcb_pipeline.PipelinedClient`). With libpq and psycopg, ``pipeline:
true`` (the default) sends each TPC-B transaction in one pipeline: one round trip
instead of seven; ``false`` sends each statement and waits for its result, as
pgbench's built-in script does. Every statement is a prepared statement.

``driver: auto`` (the default) declares the statements (``get_statements``) and
hands out their parameters (``statement_parameters``), so tether's multiplexed
engine sends them itself, one thread per process driving every connection (the
fewest client CPU per transaction); ``execute_operation`` is then psycopg's, for
``--engine per-client``. A named driver declares nothing: its clients call
``execute_operation``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from tether.hosts.workload import read_settings, settings_keys

from .tpcb_pipeline import AsyncPipelinedClient, Call, PipelinedClient

NAME = "tpcb"
VERSION = "1.0.0"
ACCOUNTS_PER_SCALE = 100_000
TELLERS_PER_SCALE = 10
BRANCHES_PER_SCALE = 1
OPERATION_WEIGHTS = {"tpcb_like": 1, "select_only": 0}
TABLES = ("pgbench_history", "pgbench_tellers", "pgbench_accounts", "pgbench_branches")

# pgbench -i's tables (fillfactor 100, as its default), created in its order.
CREATE_TABLES = (
    (
        "CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, "
        "filler char(22))"
    ),
    (
        "CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) "
        "WITH (fillfactor = 100)"
    ),
    (
        "CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, "
        "filler char(84)) WITH (fillfactor = 100)"
    ),
    (
        "CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88)) "
        "WITH (fillfactor = 100)"
    ),
)
PRIMARY_KEYS = (
    "ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid)",
    "ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid)",
    "ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)",
)
DROP_TABLES = "DROP TABLE IF EXISTS " + ", ".join(TABLES)
LOADED_STATE = (
    "SELECT to_regclass('pgbench_history') IS NOT NULL"
    " AND to_regclass('pgbench_tellers') IS NOT NULL"
    " AND to_regclass('pgbench_accounts') IS NOT NULL"
    " AND to_regclass('pgbench_branches') IS NOT NULL"
    " AND to_regclass('pgbench_accounts_pkey') IS NOT NULL"
)
COUNTS = (
    "SELECT (SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_tellers), "
    "(SELECT max(aid) FROM pgbench_accounts)"
)

# The transaction (numbered placeholders, as asyncpg and libpq take them)
UPDATE_ACCOUNT = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"
SELECT_ACCOUNT = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
UPDATE_TELLER = "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2"
UPDATE_BRANCH = "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2"
INSERT_HISTORY = (
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)"
)


@dataclass(frozen=True, slots=True)
class Settings:
    """The plugin_config, as the manifest checks it (scale's minimum, driver's choices)."""

    scale: int
    driver: str
    pipeline: bool
    seed: int | None = None

    def resolved(self) -> Settings:
        """``driver: auto`` made concrete (psycopg, for ``execute_operation``); the
        pipeline is libpq's and psycopg's only."""
        driver = "psycopg" if self.driver == "auto" else self.driver
        return replace(self, driver=driver, pipeline=self.pipeline and driver != "asyncpg")


CONFIG_KEYS = settings_keys(Settings)


def _account_rows(scale: int) -> Iterator[tuple[int, int, int, str]]:
    for aid in range(1, scale * ACCOUNTS_PER_SCALE + 1):
        yield aid, (aid - 1) // ACCOUNTS_PER_SCALE + 1, 0, ""


class TpcbWorkload:
    """The tpcb workload plugin (entry ``tpcb_workload:TpcbWorkload``)."""

    settings: Settings  # set by initialize

    def __init__(self) -> None:
        self._random = random.Random()  # noqa: S311 - load generation, not cryptography
        self._draw = self._random.random
        self._accounts = ACCOUNTS_PER_SCALE
        self._setup: dict[str, object] = {}
        self._operations: dict[str, Callable[[Any], None]] = {}
        self._clients: dict[int, PipelinedClient] = {}
        self._async_clients: dict[int, AsyncPipelinedClient] = {}
        self._declares = False

    # ------------------------------------------------------------------ contract

    def initialize(self, config: dict[str, object]) -> None:
        settings = read_settings(Settings, config, workload=NAME)
        self._declares = settings.driver == "auto"
        self.settings = settings = settings.resolved()
        self._random = random.Random(settings.seed)  # noqa: S311 - see above
        self._draw = self._random.random
        self._accounts = ACCOUNTS_PER_SCALE * settings.scale
        if settings.driver == "psycopg":
            # A plain execute_operation: tether gives each client a psycopg connection.
            self.execute_operation = self._execute_sync  # type: ignore[method-assign,assignment]
            self.setup = self._setup_sync  # type: ignore[method-assign,assignment]
            self.cleanup = self._cleanup_sync  # type: ignore[method-assign,assignment]
            tpcb = self._tpcb_pipelined if settings.pipeline else self._tpcb_stepwise
            self._operations = {"tpcb_like": tpcb, "select_only": self._select}
        elif settings.driver == "libpq":
            # A coroutine on psycopg AsyncConnections (see get_connection_type).
            self.execute_operation = self._execute_libpq  # type: ignore[method-assign]
            self.setup = self._setup_libpq  # type: ignore[method-assign]
            self.cleanup = self._cleanup_libpq  # type: ignore[method-assign]

    def get_info(self) -> dict[str, object]:
        return {
            "name": NAME,
            "version": VERSION,
            "description": "pgbench's TPC-B-like transaction and select-only query",
            "scale": self.settings.scale,
            "accounts": self.settings.scale * ACCOUNTS_PER_SCALE,
            "driver": self.settings.driver,
            "pipeline": self.settings.pipeline,
        }

    def get_operation_types(self) -> dict[str, int]:
        return dict(OPERATION_WEIGHTS)

    def get_connection_type(self) -> str:
        """asyncpg connections for ``driver: asyncpg``, psycopg ones for libpq and psycopg."""
        return "asyncpg" if self.settings.driver == "asyncpg" else "psycopg"

    def get_statements(self) -> dict[str, str] | None:
        """The statements tether's multiplexed engine sends itself (``driver: auto``);
        ``None`` with a driver named, whose clients call ``execute_operation``."""
        if not self._declares:
            return None
        return {name.decode(): sql.decode() for name, sql in PIPELINE_STATEMENTS.items()}

    def statement_parameters(self, operation_type: str, count: int) -> list[object]:
        """``count`` transactions of ``operation_type``: each a list of round trips of
        (statement, parameters); TPC-B in one round trip unless ``pipeline: false``."""
        draw = self._draw
        if operation_type == "select_only":
            accounts = self._accounts
            return [
                ((("tpcb_select_account", (b"%d" % (int(draw() * accounts) + 1),)),),)
                for _ in range(count)
            ]
        if operation_type != "tpcb_like":
            raise ValueError(f"unknown operation type: {operation_type}")
        transactions: list[object] = []
        pipeline = self.settings.pipeline
        for _ in range(count):
            aid, tid, bid, delta = (b"%d" % v for v in self._values())
            calls = (
                ("tpcb_begin", ()),
                ("tpcb_update_account", (delta, aid)),
                ("tpcb_select_account", (aid,)),
                ("tpcb_update_teller", (delta, tid)),
                ("tpcb_update_branch", (delta, bid)),
                ("tpcb_insert_history", (tid, bid, aid, delta)),
                ("tpcb_end", ()),
            )
            transactions.append((calls,) if pipeline else [(call,) for call in calls])
        return transactions

    def get_metrics(self) -> dict[str, object]:
        """What setup did (``loaded`` with its time, or ``reused``); the runner counts the rest."""
        return dict(self._setup)

    async def execute_operation(self, db: Any, operation_type: str) -> None:
        # Both transactions inline: a call and a coroutine less per transaction.
        draw = self._draw
        if operation_type == "select_only":
            await db.fetchval(SELECT_ACCOUNT, int(draw() * self._accounts) + 1)
            return
        if operation_type != "tpcb_like":
            raise ValueError(f"unknown operation type: {operation_type}")
        scale = self.settings.scale
        aid = int(draw() * self._accounts) + 1
        tid = int(draw() * TELLERS_PER_SCALE * scale) + 1
        bid = int(draw() * BRANCHES_PER_SCALE * scale) + 1
        delta = int(draw() * 10_001) - 5000
        await db.execute("BEGIN")
        try:
            await db.execute(UPDATE_ACCOUNT, delta, aid)
            await db.fetchval(SELECT_ACCOUNT, aid)
            await db.execute(UPDATE_TELLER, delta, tid)
            await db.execute(UPDATE_BRANCH, delta, bid)
            await db.execute(INSERT_HISTORY, tid, bid, aid, delta)
        except BaseException:
            if not db.is_closed():
                await db.execute("ROLLBACK")
            raise
        await db.execute("END")

    def _execute_sync(self, db: Any, operation_type: str) -> None:
        operation = self._operations.get(operation_type)
        if operation is None:
            raise ValueError(f"unknown operation type: {operation_type}")
        operation(db)

    # ------------------------------------------------------------------ random values

    def _values(self) -> tuple[int, int, int, int]:
        """aid, tid, bid, delta as pgbench draws them (uniform)."""
        draw = self._random.random
        scale = self.settings.scale
        aid = int(draw() * ACCOUNTS_PER_SCALE * scale) + 1
        tid = int(draw() * TELLERS_PER_SCALE * scale) + 1
        bid = int(draw() * BRANCHES_PER_SCALE * scale) + 1
        delta = int(draw() * 10_001) - 5000
        return aid, tid, bid, delta

    # ------------------------------------------------------------------ asyncpg

    async def setup(self, db: Any) -> None:
        scale = self.settings.scale
        if await db.fetchval(LOADED_STATE) and tuple(await db.fetchrow(COUNTS)) == _expected(scale):
            await db.execute("TRUNCATE pgbench_history")
            self._setup = {"setup": "reused"}
            return
        began = time.perf_counter()
        await db.execute(DROP_TABLES)
        for statement in CREATE_TABLES:
            await db.execute(statement)
        await db.copy_records_to_table(
            "pgbench_branches",
            records=[(b, 0) for b in range(1, scale * BRANCHES_PER_SCALE + 1)],
            columns=("bid", "bbalance"),
        )
        await db.copy_records_to_table(
            "pgbench_tellers",
            records=[
                (t, (t - 1) // TELLERS_PER_SCALE + 1, 0)
                for t in range(1, scale * TELLERS_PER_SCALE + 1)
            ],
            columns=("tid", "bid", "tbalance"),
        )
        await db.copy_records_to_table(
            "pgbench_accounts",
            records=_account_rows(scale),
            columns=("aid", "bid", "abalance", "filler"),
        )
        await db.execute("VACUUM ANALYZE " + ", ".join(TABLES))
        for statement in PRIMARY_KEYS:
            await db.execute(statement)
        self._setup = {"setup": "loaded", "load_seconds": round(time.perf_counter() - began, 3)}

    async def cleanup(self, db: Any) -> None:
        await db.execute(DROP_TABLES)

    # ------------------------------------------------------------------ libpq

    async def _execute_libpq(self, db: Any, operation_type: str) -> None:
        client = self._async_clients.get(id(db))
        if client is None or client.db is not db:  # first use of this client's connection
            client = AsyncPipelinedClient(db)
            await client.start(PIPELINE_STATEMENTS)
            self._async_clients[id(db)] = client
        draw = self._draw
        if operation_type == "select_only":
            await client.run(((_SELECT_NAME, (b"%d" % (int(draw() * self._accounts) + 1),)),))
            return
        if operation_type != "tpcb_like":
            raise ValueError(f"unknown operation type: {operation_type}")
        scale = self.settings.scale
        aid = b"%d" % (int(draw() * self._accounts) + 1)
        tid = b"%d" % (int(draw() * TELLERS_PER_SCALE * scale) + 1)
        bid = b"%d" % (int(draw() * BRANCHES_PER_SCALE * scale) + 1)
        delta = b"%d" % (int(draw() * 10_001) - 5000)
        calls = _tpcb_calls(aid, tid, bid, delta)
        if self.settings.pipeline:
            await client.run(calls)
            return
        run = client.run
        for call in calls:  # seven round trips, each statement waiting for the last
            await run((call,))

    async def _setup_libpq(self, db: Any) -> None:
        scale = self.settings.scale
        state = await (await db.execute(LOADED_STATE)).fetchone()
        counts = await (await db.execute(COUNTS)).fetchone() if state and state[0] else None
        if counts is not None and tuple(counts) == _expected(scale):
            await db.execute("TRUNCATE pgbench_history")
            self._setup = {"setup": "reused"}
            return
        began = time.perf_counter()
        await db.execute(DROP_TABLES)
        for statement in CREATE_TABLES:
            await db.execute(statement)
        async with db.cursor() as cur:
            for target, lines in _copy_sources(scale):
                async with cur.copy(f"COPY {target} FROM STDIN") as copy:
                    for chunk in _chunks(lines):
                        await copy.write(chunk)
        await db.execute("VACUUM ANALYZE " + ", ".join(TABLES))
        for statement in PRIMARY_KEYS:
            await db.execute(statement)
        self._setup = {"setup": "loaded", "load_seconds": round(time.perf_counter() - began, 3)}

    async def _cleanup_libpq(self, db: Any) -> None:
        await db.execute(DROP_TABLES)

    # ------------------------------------------------------------------ psycopg

    def _pipelined(self, db: Any) -> PipelinedClient:
        client = self._clients.get(id(db))
        if client is None or client.db is not db:  # first use of this client's connection
            client = self._clients[id(db)] = PipelinedClient(db, PIPELINE_STATEMENTS)
        return client

    def _tpcb_pipelined(self, db: Any) -> None:
        aid, tid, bid, delta = (b"%d" % v for v in self._values())
        self._pipelined(db).run(_tpcb_calls(aid, tid, bid, delta))

    def _tpcb_stepwise(self, db: Any) -> None:
        aid, tid, bid, delta = (b"%d" % v for v in self._values())
        execute = self._pipelined(db).execute
        for name, params in _tpcb_calls(aid, tid, bid, delta):  # seven round trips
            execute(name, params)

    def _select(self, db: Any) -> None:
        aid = b"%d" % (int(self._draw() * self._accounts) + 1)
        self._pipelined(db).execute(_SELECT_NAME, (aid,))

    def _setup_sync(self, db: Any) -> None:
        scale = self.settings.scale
        state = db.execute(LOADED_STATE).fetchone()
        if state and state[0] and tuple(db.execute(COUNTS).fetchone()) == _expected(scale):
            db.execute("TRUNCATE pgbench_history")
            self._setup = {"setup": "reused"}
            return
        began = time.perf_counter()
        db.execute(DROP_TABLES)
        for statement in CREATE_TABLES:
            db.execute(statement)
        with db.cursor() as cur:
            for target, lines in _copy_sources(scale):
                with cur.copy(f"COPY {target} FROM STDIN") as copy:
                    for chunk in _chunks(lines):
                        copy.write(chunk)
        db.execute("VACUUM ANALYZE " + ", ".join(TABLES))
        for statement in PRIMARY_KEYS:
            db.execute(statement)
        self._setup = {"setup": "loaded", "load_seconds": round(time.perf_counter() - began, 3)}

    def _cleanup_sync(self, db: Any) -> None:
        db.execute(DROP_TABLES)


_COPY_CHUNK = 10_000
PIPELINE_STATEMENTS = {
    b"tpcb_begin": b"BEGIN",
    b"tpcb_update_account": UPDATE_ACCOUNT.encode(),
    b"tpcb_select_account": SELECT_ACCOUNT.encode(),
    b"tpcb_update_teller": UPDATE_TELLER.encode(),
    b"tpcb_update_branch": UPDATE_BRANCH.encode(),
    b"tpcb_insert_history": INSERT_HISTORY.encode(),
    b"tpcb_end": b"END",
}


def _expected(scale: int) -> tuple[int, int, int]:
    return scale * BRANCHES_PER_SCALE, scale * TELLERS_PER_SCALE, scale * ACCOUNTS_PER_SCALE


def _copy_sources(scale: int) -> Iterator[tuple[str, Iterator[str]]]:
    """The tables COPY loads (``target (columns)``) and their rows as tab-separated lines."""
    yield "pgbench_branches (bid, bbalance)", (f"{b}\t0\n" for b in range(1, scale + 1))
    yield (
        "pgbench_tellers (tid, bid, tbalance)",
        (
            f"{t}\t{(t - 1) // TELLERS_PER_SCALE + 1}\t0\n"
            for t in range(1, scale * TELLERS_PER_SCALE + 1)
        ),
    )
    yield (
        "pgbench_accounts (aid, bid, abalance, filler)",
        (f"{a}\t{b}\t0\t\n" for a, b, _, _ in _account_rows(scale)),
    )


def _chunks(lines: Iterator[str]) -> Iterator[str]:
    """``lines`` joined a chunk of rows at a time (one write per chunk)."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= _COPY_CHUNK:
            yield "".join(chunk)
            chunk.clear()
    if chunk:
        yield "".join(chunk)


_SELECT_NAME = b"tpcb_select_account"
_BEGIN: Call = (b"tpcb_begin", None)
_END: Call = (b"tpcb_end", None)


def _tpcb_calls(aid: bytes, tid: bytes, bid: bytes, delta: bytes) -> tuple[Call, ...]:
    """The seven prepared statements of one TPC-B transaction, with their parameters."""
    return (
        _BEGIN,
        (b"tpcb_update_account", (delta, aid)),
        (_SELECT_NAME, (aid,)),
        (b"tpcb_update_teller", (delta, tid)),
        (b"tpcb_update_branch", (delta, bid)),
        (b"tpcb_insert_history", (tid, bid, aid, delta)),
        _END,
    )
