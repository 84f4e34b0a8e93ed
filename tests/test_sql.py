"""The SQL layer under storage, the database service and the state tables, on both backends."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from tether import _database, _sql, _storage
from tether._sql import (
    POSTGRESQL,
    SQLITE,
    Connection,
    Target,
    read_time,
    translate_placeholders,
)
from tether.errors import StorageError

pytest_plugins = ["pg"]

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]
TIME_TYPE = {"sqlite": "TEXT", "postgresql": "TIMESTAMPTZ"}
ITEMS = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, done BOOLEAN)"
INSERT = "INSERT INTO items (id, name) VALUES (?, ?)"


@pytest.fixture(params=BACKENDS)
def target(request, tmp_path) -> Target:
    if request.param == "postgresql":
        return Target.parse(request.getfixturevalue("pg_url"), kind="test database")
    return Target.parse(str(tmp_path / "deep" / "test.db"), kind="test database")


@pytest.fixture
def sql(target):
    with closing(Connection(target)) as conn:
        conn.run(ITEMS)
        yield conn


def names(sql: Connection) -> list[str]:
    return [row[0] for row in sql.run("SELECT name FROM items ORDER BY id").rows]


def unreachable_postgres(tmp_path: Path) -> str:
    """A URL with a password and no server behind it (an empty socket directory)."""
    return f"postgresql://u:hunter2@/d?host={tmp_path}&connect_timeout=2"


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("given", "dialect", "name"),
    [
        pytest.param("state.db", SQLITE, "state.db", id="relative-path"),
        pytest.param(Path("/srv/state.db"), SQLITE, "/srv/state.db", id="path-object"),
        pytest.param("sqlite:////srv/state.db", SQLITE, "/srv/state.db", id="sqlite-url"),
        pytest.param(":memory:", SQLITE, ":memory:", id="memory"),
        pytest.param("sqlite://", SQLITE, ":memory:", id="sqlite-memory-url"),
        pytest.param("postgresql://u@h/d", POSTGRESQL, "postgresql://u@h/d", id="postgresql"),
        pytest.param("postgres://u@h/d", POSTGRESQL, "postgres://u@h/d", id="postgres"),
    ],
)
def test_targets_are_parsed_by_their_form(given, dialect, name):
    parsed = Target.parse(given, kind="state store")
    assert (parsed.dialect, parsed.name, parsed.kind) == (dialect, name, "state store")


def test_a_target_shows_its_location_without_the_password():
    parsed = Target.parse("postgresql://ada:s3cret@db:5432/app?sslmode=require", kind="database")
    assert parsed.location == "postgresql://ada:***@db:5432/app?sslmode=require"
    assert parsed.path is None
    assert "s3cret" not in repr(parsed)
    assert Target.parse("state.db", kind="x").path == "state.db"
    assert Target.parse(":memory:", kind="x").path is None


def test_an_unknown_scheme_is_refused_without_the_password():
    with pytest.raises(StorageError, match="unsupported database URL scheme 'mysql'") as info:
        Target.parse("mysql://root:s3cret@db/app", kind="database")
    assert "s3cret" not in str(info.value)
    assert "postgresql://" in str(info.value.hint)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        pytest.param(_storage, "is_postgres_url", id="storage-is_postgres_url"),
        pytest.param(_storage, "open_sqlite", id="storage-open_sqlite"),
        pytest.param(_storage, "redact_url", id="storage-redact_url"),
        pytest.param(_storage, "sqlite_target", id="storage-sqlite_target"),
        pytest.param(_database, "translate_placeholders", id="database-translate_placeholders"),
    ],
)
def test_the_names_other_modules_import_are_the_layers_own(module, name):
    assert getattr(module, name) is getattr(_sql, name)


# --------------------------------------------------------------------------- statements


def test_statements_use_question_mark_placeholders_on_both_backends(sql):
    assert sql.run(INSERT, (1, "ada"), fetch="none").rowcount == 1
    assert sql.run_many(INSERT, [(2, "bob"), (3, "cy")]) == 2
    result = sql.run("SELECT id, name FROM items WHERE id > ? ORDER BY id", (1,))
    assert result.columns == ("id", "name")
    assert result.rows == [(2, "bob"), (3, "cy")]
    assert sql.run("SELECT name FROM items ORDER BY id", fetch="one").rows == [("ada",)]
    assert sql.run("SELECT name FROM items", fetch="none").rows == []
    assert sql.run("DELETE FROM items WHERE name LIKE 'b%'", fetch="none").rowcount == 1


def test_question_marks_and_percent_signs_in_text_are_not_placeholders(sql):
    row = sql.run("SELECT 'why?' AS q, ? AS v, '100%' AS p", (5,)).rows[0]
    assert tuple(row) == ("why?", 5, "100%")


def test_native_statements_reach_the_driver_unchanged(sql):
    placeholder = "?" if sql.dialect is SQLITE else "%s"
    assert sql.run(f"SELECT {placeholder} AS v", (7,), native=True).rows == [(7,)]


def test_times_and_booleans_round_trip_and_compare_with_now(sql):
    sql.run(f"CREATE TABLE events (at {TIME_TYPE[sql.dialect.name]}, ok BOOLEAN)")
    now = datetime.now(UTC)
    rows = [(sql.dialect.time(now), True), (sql.dialect.time(now - timedelta(hours=2)), False)]
    sql.run_many("INSERT INTO events (at, ok) VALUES (?, ?)", rows)
    since = sql.dialect.translate_now("NOW() - INTERVAL '1 hour'")
    recent = sql.run(f"SELECT at, ok FROM events WHERE at > {since}").rows
    assert len(recent) == 1
    assert read_time(recent[0][0]) == now
    assert bool(recent[0][1]) is True


def test_sqlite_connections_are_durable_and_wait_for_locks(tmp_path):
    with closing(Connection(Target.parse(tmp_path / "a" / "b.db", kind="x"))) as sql:
        pragma = {p: sql.run(f"PRAGMA {p}").rows[0][0] for p in
                  ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}  # fmt: skip
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1,
                      "busy_timeout": 30_000}  # fmt: skip


def test_a_memory_database_works(tmp_path):
    with closing(Connection(Target.parse(":memory:", kind="x"))) as sql:
        sql.run("CREATE TABLE t (v INTEGER)")
        sql.run("INSERT INTO t VALUES (?)", (1,))
        assert sql.run("SELECT v FROM t").rows == [(1,)]


def test_a_read_only_sqlite_connection_reads_and_changes_nothing(tmp_path):
    path = tmp_path / "state.db"
    with closing(Connection(Target.parse(path, kind="state store"))) as sql:
        sql.run(ITEMS)
        sql.run(INSERT, (1, "ada"))
    with closing(Connection(Target.parse(path, kind="state store"), read_only=True)) as sql:
        assert sql.has_table("items")
        assert names(sql) == ["ada"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            sql.run(INSERT, (2, "bob"))
    missing = tmp_path / "missing" / "state.db"
    with pytest.raises(StorageError, match="cannot open the state store"):
        Connection(Target.parse(missing, kind="state store"), read_only=True).open()
    assert not missing.parent.exists()


def test_create_schema_is_idempotent_and_has_table_sees_it(target):
    schema = ["CREATE TABLE IF NOT EXISTS a (v INTEGER)", "CREATE TABLE IF NOT EXISTS b (v TEXT)"]
    with closing(Connection(target)) as sql:
        assert not sql.has_table("a")
        for _ in range(3):
            sql.create_schema(schema, lock_id=42)
        assert sql.has_table("a")
        assert sql.has_table("b")


@pytest.mark.slow
def test_concurrent_schema_creation_on_postgresql_waits_on_the_advisory_lock(pg_url):
    failures: list[BaseException] = []
    schema = [f"CREATE TABLE IF NOT EXISTS t{i} (v INTEGER)" for i in range(5)]

    def create():
        try:
            with closing(Connection(Target.parse(pg_url, kind="x"))) as sql:
                sql.create_schema(schema, lock_id=7)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --------------------------------------------------------------------------- transactions


def insert(sql: Connection, *rows: tuple[int, str], then_raise: bool = False) -> None:
    """Insert ``rows`` in a transaction of their own (a savepoint if one is open)."""
    with sql.transaction():
        sql.run_many(INSERT, rows)
        if then_raise:
            raise RuntimeError("boom")


def test_a_transaction_commits_when_its_block_ends(sql):
    with sql.transaction():
        assert sql.in_transaction
        sql.run(INSERT, (1, "a"))
        sql.run(INSERT, (2, "b"))
    assert not sql.in_transaction
    assert names(sql) == ["a", "b"]


def test_a_transaction_rolls_back_when_its_block_raises(sql):
    with pytest.raises(RuntimeError, match="boom"):
        insert(sql, (1, "a"), (2, "b"), then_raise=True)
    assert not sql.in_transaction
    assert names(sql) == []


def test_a_nested_transaction_rolls_back_only_its_own_part(sql):
    with sql.transaction():
        sql.run(INSERT, (1, "outer"))
        with pytest.raises(RuntimeError, match="boom"):
            insert(sql, (2, "inner"), then_raise=True)
        with pytest.raises(sql.dialect.driver.IntegrityError):
            # on PostgreSQL a failed statement aborts the transaction, but only back
            # to the savepoint: the outer block goes on
            insert(sql, (3, "inner-2"), (4, "outer"))
        insert(sql, (5, "kept"))
        sql.run(INSERT, (6, "last"))
    assert names(sql) == ["outer", "kept", "last"]


def test_an_outer_rollback_undoes_its_released_savepoints(sql):
    def block():
        with sql.transaction():
            insert(sql, (1, "inner"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        block()
    assert names(sql) == []


def test_a_transaction_belongs_to_its_thread_and_others_wait(sql):
    entered = threading.Event()
    seen: list[bool] = []

    def outsider():
        entered.wait(5)
        seen.append(sql.in_transaction)
        sql.run(INSERT, (2, "outsider"))

    def owner():
        with sql.transaction():
            sql.run(INSERT, (1, "owner"))
            entered.set()
            time.sleep(0.1)  # the outsider tries now; it must wait, not join
            assert thread.is_alive()
            raise RuntimeError("boom")

    thread = threading.Thread(target=outsider)
    thread.start()
    with pytest.raises(RuntimeError, match="boom"):
        owner()
    thread.join(5)
    assert seen == [False]
    assert names(sql) == ["outsider"]


# --------------------------------------------------------------------------- errors


def test_outside_storage_errors_a_statement_raises_the_drivers_error(sql):
    with pytest.raises(sql.dialect.driver.ProgrammingError):
        sql.run("SELECT ? AS a, ? AS b", (1,))
    sql.run(INSERT, (1, "a"))
    with pytest.raises(sql.dialect.driver.IntegrityError):
        sql.run(INSERT, (2, "a"))
    assert names(sql) == ["a"]


def test_storage_errors_map_driver_errors_with_message_fields_and_cause(sql):
    sql.run(INSERT, (1, "a"))
    with (
        pytest.raises(StorageError, match=r"^adding 'a' failed: \w+: ") as info,
        sql.storage_errors("adding 'a' failed", hint="use another name", plugin="alpha"),
    ):
        sql.run(INSERT, (2, "a"))
    assert isinstance(info.value.__cause__, sql.dialect.driver.IntegrityError)
    assert (info.value.plugin, info.value.hint) == ("alpha", "use another name")
    if sql.dialect is SQLITE:
        assert info.value.path == Path(sql.target.name)
    assert names(sql) == ["a"]


def test_a_closed_connection_refuses_work(target):
    sql = Connection(target, closed_hint="open it again")
    sql.run("SELECT 1")
    sql.close()
    sql.close()
    with pytest.raises(StorageError, match=r"^the test database at .* is closed$") as info:
        sql.run("SELECT 1")
    assert info.value.hint == "open it again"
    with pytest.raises(StorageError, match="is closed"), sql.transaction():
        pass
    with pytest.raises(StorageError, match="is closed"), sql.storage_errors("reading"):
        sql.run("SELECT 1")  # a StorageError of the layer's own passes through unchanged


def test_an_unopenable_sqlite_file_is_a_storage_error(tmp_path):
    (tmp_path / "app.db").mkdir()
    sql = Connection(Target.parse(tmp_path / "app.db", kind="database"))
    with pytest.raises(StorageError, match=r"^cannot open the database at ") as info:
        sql.open()
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert info.value.hint == "check that the directory exists and is writable"
    with (
        pytest.raises(StorageError, match=r"^opening it: OperationalError: "),
        sql.storage_errors("opening it"),
    ):
        sql.run("SELECT 1")


def test_an_unreachable_postgres_is_a_storage_error_without_the_password(tmp_path):
    url = unreachable_postgres(tmp_path)
    sql = Connection(Target.parse(url, kind="database"), connect_timeout=2)
    with pytest.raises(StorageError, match=r"^cannot connect to the database at ") as info:
        sql.open()
    assert "hunter2" not in str(info.value)
    assert "u:***@" in str(info.value)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert "credentials" in str(info.value.hint)
    with (
        pytest.raises(StorageError, match=r"^opening it: OperationalError: ") as info,
        sql.storage_errors("opening it", plugin="alpha"),
    ):
        sql.run("SELECT 1")
    assert "hunter2" not in str(info.value)
    assert info.value.plugin == "alpha"


def test_a_driver_message_that_echoes_the_url_is_scrubbed(tmp_path):
    url = unreachable_postgres(tmp_path)
    sql = Connection(Target.parse(url, kind="database"))
    with pytest.raises(StorageError) as info, sql.storage_errors("reading"):
        raise psycopg.OperationalError(f"bad target {url} (password 'hunter2')")
    assert "hunter2" not in str(info.value)
    assert str(info.value).startswith("reading: OperationalError: bad target postgresql://u:***@")


@pytest.mark.slow
def test_a_lost_postgres_connection_is_replaced_outside_a_transaction(pg_url):
    with closing(Connection(Target.parse(pg_url, kind="x"))) as sql:
        first = sql.run("SELECT pg_backend_pid()").rows[0][0]
        sql._conn.close()
        second = sql.run("SELECT pg_backend_pid()").rows[0][0]
        assert second != first
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (second,))
        with pytest.raises(psycopg.OperationalError):
            sql.run("SELECT 1")  # the statement that finds the connection gone fails...
        assert sql.run("SELECT 1").rows == [(1,)]  # ...and the next one reconnects


@pytest.mark.slow
def test_a_transaction_whose_connection_is_lost_fails_and_is_not_retried(pg_url):
    def block(sql):
        with sql.transaction():
            sql.run("CREATE TABLE t (v INTEGER)")
            sql._conn.close()
            sql.run("INSERT INTO t VALUES (1)")  # no new connection inside a transaction

    with closing(Connection(Target.parse(pg_url, kind="x"))) as sql:
        with pytest.raises(psycopg.OperationalError):
            block(sql)
        assert not sql.in_transaction
        assert not sql.has_table("t")


# --------------------------------------------------------------------------- dialects


def test_placeholders_are_translated_for_postgresql_only():
    text = "SELECT ?, '?', 5 % ?, x ?? 'k'"
    assert POSTGRESQL.native(text) == translate_placeholders(text)
    assert POSTGRESQL.native(text) == "SELECT %s, '?', 5 %% %s, x ? 'k'"
    assert SQLITE.native(text) == text


def test_times_are_utc_text_on_sqlite_and_datetimes_on_postgresql():
    moment = datetime(2024, 5, 1, 14, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert SQLITE.time(moment) == "2024-05-01 12:30:00.123456"
    assert POSTGRESQL.time(moment) is moment
    assert SQLITE.time(None) is None
    assert read_time("2024-05-01 12:30:00.123456") == moment
    assert read_time(datetime(2024, 5, 1, 12, 30)) == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)  # noqa: DTZ001
    assert read_time(None) is None


@pytest.mark.parametrize(
    ("postgresql", "sqlite"),
    [
        pytest.param("at > NOW() - INTERVAL '1 hour'", "at > datetime('now', '-1 hour')", id="ago"),
        pytest.param(
            "at > now() - interval '7 days'", "at > datetime('now', '-7 days')", id="lower"
        ),
        pytest.param("SELECT NOW()", "SELECT datetime('now')", id="now"),
        pytest.param("SELECT 1", "SELECT 1", id="none"),
    ],
)
def test_postgresql_now_is_rewritten_for_sqlite(postgresql, sqlite):
    assert SQLITE.translate_now(postgresql) == sqlite
    assert POSTGRESQL.translate_now(postgresql) == postgresql
