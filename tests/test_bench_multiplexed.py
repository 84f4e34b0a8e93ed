"""The multiplexed engine against a real PostgreSQL: the per-client engine's semantics.

A workload that declares its statements (``get_statements``, ``statement_parameters``)
runs on the multiplexed engine by default; the same workload's ``execute_operation``
sends the same statements through psycopg, so ``--engine per-client`` is the
reference each test compares with: counts, budgets, errors (class and message),
rollbacks, weights switched mid-run, paced runs, processes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from helpers import PluginWriter
from tether.cli import cli
from tether.hosts.workload import EXIT_ERROR_RATE, Plan, WorkloadSpec, open_workload
from tether.hosts.workload._database import close_connections, open_connections
from tether.hosts.workload._engines import MULTIPLEXED, attach, make_engine, release
from tether.hosts.workload._wire import Statement, error_of

pytest_plugins = ["pg"]

DECLARED_PLUGIN = """
import random

import psycopg

STATEMENTS = {
    "add": "INSERT INTO notes_log (op, n) VALUES ($1, $2)",
    "count": "SELECT count(*) FROM notes_log WHERE n = $1",
    "duplicate": "INSERT INTO notes_unique (id) VALUES (1)",
    "divide": "SELECT 1 / $1::int",
    "begin": "BEGIN",
    "commit": "COMMIT",
}


class Workload:
    def initialize(self, config):
        self.rng = random.Random(1)
        self.declares = config.get("declares", True)
        self.weights = config.get("weights", {"write": 3, "read": 1})

    def setup(self, db):
        db.execute("DROP TABLE IF EXISTS notes_log, notes_unique")
        db.execute("CREATE TABLE notes_log (op text NOT NULL, n int)")
        db.execute("CREATE TABLE notes_unique (id int PRIMARY KEY)")
        db.execute("INSERT INTO notes_unique VALUES (1)")

    def cleanup(self, db):
        db.execute("DROP TABLE IF EXISTS notes_log, notes_unique")

    def get_operation_types(self):
        return {"write": 3, "read": 1, "duplicate": 0, "divide": 0, "in_transaction": 0,
                "broken": 0, "unknown_statement": 0}

    def get_statements(self):
        return STATEMENTS if self.declares else None

    def transaction(self, op):
        if op == "write":
            return [[("add", ("write", self.rng.randrange(100)))]]
        if op == "read":
            return [[("count", (self.rng.randrange(100),))]]
        if op == "duplicate":
            return [[("duplicate", ())]]
        if op == "divide":
            return [[("divide", (0,))]]
        if op == "in_transaction":  # the insert is rolled back with the failed transaction
            return [[("begin", ())], [("add", ("in_transaction", -1))], [("duplicate", ())],
                    [("commit", ())]]
        if op == "unknown_statement":
            return [[("nosuch", ())]]
        raise ValueError(f"no parameters for {op}")

    def statement_parameters(self, op, count):
        return [self.transaction(op) for _ in range(count)]

    def execute_operation(self, db, op):
        try:
            for round_trip in self.transaction(op):
                for name, params in round_trip:
                    psycopg.RawCursor(db).execute(STATEMENTS[name], params)
        except psycopg.Error:
            if db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                db.execute("ROLLBACK")
            raise
"""


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    directory = tmp_path / "plugins"
    PluginWriter(directory)(
        "notes",
        DECLARED_PLUGIN,
        entry="notes:Workload",
        directory="notes",
        provides=["workload"],
        config={
            "declares": {"type": "boolean", "description": "declare the statements"},
            "weights": {"type": "object", "description": "unused"},
        },
    )
    return directory


def bench(plugins: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["--plugin-path", str(plugins), "bench", "-w", "notes", "--format", "json", "-q", *args],
        catch_exceptions=False,
    )


def report(result: Result) -> dict[str, Any]:
    assert result.exit_code in {0, EXIT_ERROR_RATE}, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return list(conn.execute(query).fetchall())


def weights(**given: int) -> str:
    return "operation_weights=" + json.dumps(given)


ENGINES = [
    pytest.param("multiplexed", id="multiplexed"),
    pytest.param("per-client", id="per-client"),
]


# --------------------------------------------------------------------------- counts


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_a_budget_runs_exactly_and_the_table_holds_each_write_once(pg_url, plugins, engine):
    data = report(bench(plugins, "--dsn", pg_url, "-c", "4", "-t", "300", "--engine", engine))
    assert data["workload"]["engine"] == engine
    assert data["settings"]["engine"] == engine
    operations = data["operations"]
    assert operations["write"]["count"] + operations["read"]["count"] == 300
    assert data["totals"]["errors"] == 0
    assert data["stop_reason"] == "transactions"
    (written,) = rows(pg_url, "SELECT count(*) FROM notes_log WHERE op = 'write'")
    assert written[0] == operations["write"]["count"]
    assert operations["read"]["count"] > 0  # weights 3:1, drawn per client


@pytest.mark.slow
def test_auto_multiplexes_a_declaring_workload_and_not_one_that_declares_nothing(pg_url, plugins):
    declared = report(bench(plugins, "--dsn", pg_url, "-c", "2", "-t", "20"))
    assert declared["workload"]["engine"] == "multiplexed"
    undeclared = report(
        bench(plugins, "--dsn", pg_url, "-c", "2", "-t", "20", "--set", "declares=false")
    )
    assert undeclared["workload"]["engine"] == "per-client"
    assert undeclared["totals"]["transactions"] == 20


@pytest.mark.slow
def test_multiplexed_refuses_a_workload_that_declares_nothing(pg_url, plugins):
    result = bench(
        plugins, "--dsn", pg_url, "-t", "5", "--engine", "multiplexed", "--set", "declares=false"
    )
    assert result.exit_code == 1
    assert "--engine multiplexed cannot run workload 'notes'" in result.stderr
    assert "get_statements() returns None" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_processes_share_the_budget(pg_url, plugins):
    data = report(bench(plugins, "--dsn", pg_url, "-c", "4", "-j", "2", "-t", "201"))
    assert data["workload"]["engine"] == "multiplexed"
    assert data["totals"]["transactions"] == 201
    (written,) = rows(pg_url, "SELECT count(*) FROM notes_log WHERE op = 'write'")
    assert written[0] == data["operations"]["write"]["count"]


# --------------------------------------------------------------------------- errors


def distinct(data: dict[str, Any], op: str) -> list[tuple[str, str, int]]:
    return [
        (e["type"], e["message"], e["count"]) for e in data["operations"][op]["distinct_errors"]
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("op", "kind", "message"),
    [
        pytest.param(
            "duplicate",
            "UniqueViolation",
            'duplicate key value violates unique constraint "notes_unique_pkey"\n'
            "DETAIL:  Key (id)=(1) already exists.",
            id="unique",
        ),
        pytest.param("divide", "DivisionByZero", "division by zero", id="division"),
    ],
)
def test_a_refused_statement_counts_as_its_sqlstate_class_as_per_client_does(
    pg_url, plugins, op, kind, message
):
    found = {}
    for engine in ("multiplexed", "per-client"):
        found[engine] = data = report(
            bench(
                plugins,
                "--dsn",
                pg_url,
                "-c",
                "2",
                "-t",
                "30",
                "--engine",
                engine,
                "--set",
                weights(write=1, **{op: 1}),
            )
        )
        assert data["operations"][op]["errors_by_type"] == {kind: data["operations"][op]["errors"]}
        assert data["operations"][op]["count"] == 0
    multiplexed, per_client = (distinct(found[e], op) for e in ("multiplexed", "per-client"))
    assert [(k, m) for k, m, _ in multiplexed] == [(kind, message)]
    assert [(k, m) for k, m, _ in per_client] == [(kind, message)]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_a_failed_transaction_is_rolled_back_and_its_connection_goes_on(pg_url, plugins, engine):
    data = report(
        bench(
            plugins,
            "--dsn",
            pg_url,
            "-c",
            "2",
            "-t",
            "40",
            "--engine",
            engine,
            "--set",
            weights(write=1, read=0, in_transaction=1),
        )
    )
    failed = data["operations"]["in_transaction"]
    assert failed["errors"] > 0
    assert failed["errors_by_type"] == {"UniqueViolation": failed["errors"]}
    assert data["operations"]["write"]["errors"] == 0
    assert data["operations"]["write"]["count"] + failed["errors"] == 40
    # the insert before the failure was rolled back every time
    assert rows(pg_url, "SELECT count(*) FROM notes_log WHERE op = 'in_transaction'") == [(0,)]


@pytest.mark.slow
def test_the_plugins_own_errors_and_bad_transactions_are_counted_by_kind(pg_url, plugins):
    data = report(
        bench(
            plugins,
            "--dsn",
            pg_url,
            "-c",
            "2",
            "-t",
            "30",
            "--set",
            weights(write=1, broken=1, unknown_statement=1),
        )
    )
    assert distinct(data, "broken")[0][:2] == ("ValueError", "no parameters for broken")
    ((kind, message, _),) = distinct(data, "unknown_statement")
    assert kind == "BenchError"
    assert "statement_parameters('unknown_statement') names statement 'nosuch'" in message
    assert "which get_statements() does not declare" in message
    assert data["operations"]["write"]["errors"] == 0


# --------------------------------------------------------------------------- the engine itself


async def run_engine(pg_url: str, plugins: Path, plan: Plan, during: Any = None) -> Any:
    spec = WorkloadSpec("notes", path=plugins / "notes")
    workload = await open_workload(spec)
    try:
        with psycopg.connect(pg_url, autocommit=True) as db:
            workload.handle.call("setup", db)
        engine = make_engine(workload, MULTIPLEXED, plan, workload.weights, None)
        connections = await open_connections(pg_url, plan.clients, driver="psycopg")
        try:
            await attach(engine, connections)
            task = asyncio.create_task(engine.run(connections))
            if during is not None:
                await during(engine, workload)
            return await task, workload
        finally:
            release(engine)
            await close_connections(connections, driver="psycopg")
    finally:
        await workload.aclose()


@pytest.mark.slow
def test_set_weights_switches_the_mix_mid_run(pg_url, plugins):
    async def switch(engine, _workload):
        await asyncio.sleep(0.6)
        engine.set_weights({"write": 0, "read": 1})

    plan = Plan(clients=3, duration=1.2, seed=1)
    result, _ = asyncio.run(run_engine(pg_url, plugins, plan, switch))
    writes = rows(pg_url, "SELECT count(*) FROM notes_log")[0][0]
    assert result.stats["write"].count == writes > 0
    assert result.stats["read"].count > 0
    assert result.stop_reason == "duration"


@pytest.mark.slow
def test_a_paced_run_keeps_to_its_schedule(pg_url, plugins):
    plan = Plan(clients=3, duration=1.0, rate=200.0, seed=1)
    result, _ = asyncio.run(run_engine(pg_url, plugins, plan))
    done = sum(s.count for s in result.stats.values())
    assert 150 <= done <= 201  # 200 slots in the second; none started after its end


@pytest.mark.slow
def test_a_new_version_of_the_parameters_brings_its_statements(pg_url, plugins):
    """A new live version (the parameters' entry changes): the batch is dropped and
    the statements are read again and prepared before the next transaction."""

    async def swap(engine, _workload):
        await asyncio.sleep(0.3)
        engine._statements_source = Fixed(
            lambda: {"mark": "INSERT INTO notes_log (op) VALUES ('v2')"}
        )
        engine._parameters = Fixed(lambda op, n: [[[("mark", ())]]] * n)

    class Fixed:
        is_async = False

        def __init__(self, fn):
            self.call = self.acall = fn

    plan = Plan(clients=2, duration=0.8, seed=1)
    result, _ = asyncio.run(run_engine(pg_url, plugins, plan, swap))
    (second,) = rows(pg_url, "SELECT count(*) FROM notes_log WHERE op = 'v2'")
    assert second[0] > 0
    assert sum(s.error_count for s in result.stats.values()) == 0


@pytest.mark.slow
def test_warmup_transactions_are_not_counted(pg_url, plugins):
    plan = Plan(clients=2, duration=0.5, warmup=0.5, seed=1)
    result, _ = asyncio.run(run_engine(pg_url, plugins, plan))
    writes = rows(pg_url, "SELECT count(*) FROM notes_log")[0][0]
    assert 0 < result.stats["write"].count < writes  # the warmup's writes ran, uncounted


# --------------------------------------------------------------------------- the wire


def test_a_call_encodes_as_bind_describe_execute():
    statement = Statement("read", b"tether_1_0", "SELECT $1, $2")
    encoded = statement.encode(statement.head, (b"7", None))
    body = b"\0tether_1_0\0\0\0" + b"\0\x02" + b"\0\0\0\x017" + b"\xff\xff\xff\xff" + b"\0\0"
    bind = b"B" + (len(body) + 4).to_bytes(4, "big") + body
    describe = b"D\0\0\0\x06P\0"
    execute = b"E\0\0\0\x09\0\0\0\0\0"
    assert encoded == bind + describe + execute
    one = statement.encode(statement.head, (b"12",))
    assert (
        one == statement.encode(statement.head, ("12",)) == statement.encode(statement.head, [12])
    )


def test_an_error_response_reads_as_psycopg_words_it():
    body = b"SERROR\0VERROR\0C23505\0Mduplicate key\0DKey (id)=(1) already exists.\0\0"
    error = error_of(body)
    assert error.sqlstate == "23505"
    assert error.message == "duplicate key\nDETAIL:  Key (id)=(1) already exists."


# --------------------------------------------------------------------------- processes


@pytest.mark.slow
def test_auto_processes_of_the_multiplexed_engine_are_one_per_core(pg_url, plugins):
    from tether.hosts.workload import auto_multiplexed_processes, usable_cores

    assert auto_multiplexed_processes(8, cores=2) == 2
    assert auto_multiplexed_processes(8, cores=1) == 1
    assert auto_multiplexed_processes(3, cores=16) == 1
    assert auto_multiplexed_processes(64, cores=8) == 8
    data = report(bench(plugins, "--dsn", pg_url, "-c", "8", "-t", "80"))
    assert data["workload"]["engine"] == "multiplexed"
    assert data["settings"]["processes"] == max(1, min(usable_cores(), 2))
    assert data["totals"]["transactions"] == 80
    given = report(bench(plugins, "--dsn", pg_url, "-c", "8", "-t", "80", "-j", "1"))
    assert given["settings"]["processes"] == 1
    per_client = report(
        bench(plugins, "--dsn", pg_url, "-c", "8", "-t", "80", "--engine", "per-client")
    )
    assert per_client["settings"]["processes"] == max(1, min(usable_cores() // 2, 2))
