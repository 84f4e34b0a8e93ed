"""The database service on SQLite and PostgreSQL: CRUD, placeholders, transactions, errors."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from tether._database import (
    PostgresDatabase,
    SQLiteDatabase,
    open_database,
    translate_placeholders,
)
from tether.errors import StorageError

pytest_plugins = ["pg"]

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]

USERS = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    score DOUBLE PRECISION
)"""


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    if request.param == "postgresql":
        target = request.getfixturevalue("pg_url")
    else:
        target = str(tmp_path / ".tether" / "app.db")
    database = open_database(target)
    database.execute(USERS)
    yield database
    database.close()


def names(db):
    return [row["name"] for row in db.query("SELECT name FROM users ORDER BY id")]


# --------------------------------------------------------------------------- CRUD


def test_create_read_update_delete(db):
    assert db.execute("INSERT INTO users (id, name, score) VALUES (?, ?, ?)", 1, "ada", 1.5) == 1
    db.execute("INSERT INTO users (id, name, score) VALUES (?, ?, ?)", 2, "bob", None)
    assert db.query("SELECT id, name, score FROM users ORDER BY id") == [
        {"id": 1, "name": "ada", "score": 1.5},
        {"id": 2, "name": "bob", "score": None},
    ]
    assert db.query_one("SELECT name FROM users WHERE id = ?", 2) == {"name": "bob"}
    assert db.execute("UPDATE users SET score = ? WHERE score IS NULL OR score < ?", 9.0, 5) == 2
    assert db.execute("DELETE FROM users WHERE name = ?", "ada") == 1
    assert db.query_one("SELECT * FROM users WHERE id = ?", 1) is None
    assert names(db) == ["bob"]


def test_query_one_returns_the_first_row(db):
    db.executemany("INSERT INTO users (id, name) VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    assert db.query_one("SELECT name FROM users ORDER BY id DESC") == {"name": "c"}


def test_query_of_a_statement_without_rows_returns_an_empty_list(db):
    assert db.query("INSERT INTO users (id, name) VALUES (?, ?)", 1, "a") == []
    assert names(db) == ["a"]


def test_executemany_returns_the_total_row_count(db):
    rows = [(i, f"user{i}") for i in range(10)]
    assert db.executemany("INSERT INTO users (id, name) VALUES (?, ?)", rows) == 10
    assert len(db.query("SELECT * FROM users")) == 10


def test_executemany_is_all_or_nothing(db):
    rows = [(1, "a"), (2, "b"), (3, "a")]
    with pytest.raises(db.IntegrityError):
        db.executemany("INSERT INTO users (id, name) VALUES (?, ?)", rows)
    assert names(db) == []


# --------------------------------------------------------------------------- parameters


def test_a_question_mark_inside_a_string_literal_is_not_a_placeholder(db):
    row = db.query_one("SELECT 'why?' AS q, ? AS v, 'it''s ?' AS r", 5)
    assert row == {"q": "why?", "v": 5, "r": "it's ?"}


def test_percent_signs_are_literal(db):
    db.execute("INSERT INTO users (id, name) VALUES (?, ?)", 1, "100% sure")
    assert db.query_one("SELECT name, 7 % ? AS m FROM users WHERE name LIKE '100%'", 4) == {
        "name": "100% sure",
        "m": 3,
    }
    assert db.query_one("SELECT '50%' AS p") == {"p": "50%"}


def test_values_are_never_formatted_into_the_sql(db):
    evil = "x'); DROP TABLE users; --"
    db.execute("INSERT INTO users (id, name) VALUES (?, ?)", 1, evil)
    assert names(db) == [evil]


def test_wrong_parameter_count_is_a_driver_error(db):
    with pytest.raises(db.ProgrammingError):
        db.query("SELECT ? AS a, ? AS b", 1)


@pytest.mark.slow
def test_postgres_quoting_forms_keep_their_question_marks(pg_url):
    with open_database(pg_url) as db:
        row = db.query_one(
            """SELECT $$a ? b % c$$ AS dollar, $body$?$body$ AS tagged,
                      E'it\\'s ?' AS escaped, 1 AS "odd?name", -- a comment ? here
                      /* block ? comment */ ? AS v""",
            "p",
        )
        assert row == {"dollar": "a ? b % c", "tagged": "?", "escaped": "it's ?", "odd?name": 1,
                       "v": "p"}  # fmt: skip
        assert db.query_one("""SELECT '{"a": 1}'::jsonb ?? 'a' AS has""") == {"has": True}
        assert db.query_one("""SELECT '{"a": 1}'::jsonb ?? ? AS has""", "b") == {"has": False}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT ?", "SELECT %s"),
        ("SELECT ?, ?", "SELECT %s, %s"),
        ("SELECT '?'", "SELECT '?'"),
        ("SELECT 'a''?'", "SELECT 'a''?'"),
        ("SELECT '%'", "SELECT '%%'"),
        ("SELECT 5 % ?", "SELECT 5 %% %s"),
        ('SELECT "a?b"', 'SELECT "a?b"'),
        ("SELECT E'\\'?' , ?", "SELECT E'\\'?' , %s"),
        ("SELECT $$?$$, ?", "SELECT $$?$$, %s"),
        ("SELECT $t$ $$ ? $t$, ?", "SELECT $t$ $$ ? $t$, %s"),
        ("SELECT $1", "SELECT $1"),
        ("SELECT ? -- ?\n, ?", "SELECT %s -- ?\n, %s"),
        ("SELECT /* ? */ ?", "SELECT /* ? */ %s"),
        ("SELECT x ?? 'k'", "SELECT x ? 'k'"),
        ("SELECT name ?| array['a']", "SELECT name %s| array['a']"),
    ],
)
def test_translate_placeholders(sql, expected):
    assert translate_placeholders(sql) == expected


# --------------------------------------------------------------------------- transactions


def test_a_transaction_commits_when_its_block_ends(db):
    with db.transaction() as tx:
        assert tx is db
        assert db.in_transaction
        db.execute("INSERT INTO users (id, name) VALUES (?, ?)", 1, "a")
        db.execute("INSERT INTO users (id, name) VALUES (?, ?)", 2, "b")
    assert not db.in_transaction
    assert names(db) == ["a", "b"]


INSERT = "INSERT INTO users (id, name) VALUES (?, ?)"


def test_a_transaction_rolls_back_when_its_block_raises(db):
    def block():
        with db.transaction():
            db.execute(INSERT, 1, "a")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        block()
    assert names(db) == []
    db.execute(INSERT, 1, "after")
    assert names(db) == ["after"]


def test_a_failed_statement_rolls_the_transaction_back(db):
    def block():
        with db.transaction():
            db.execute(INSERT, 2, "b")
            db.execute(INSERT, 3, "a")

    db.execute(INSERT, 1, "a")
    with pytest.raises(db.IntegrityError):
        block()
    assert names(db) == ["a"]


def test_a_nested_transaction_is_a_savepoint(db):
    def inner_block():
        with db.transaction():
            db.execute(INSERT, 2, "inner")
            db.execute(INSERT, 3, "outer")

    with db.transaction():
        db.execute(INSERT, 1, "outer")
        with pytest.raises(db.IntegrityError):
            inner_block()
        with db.transaction():
            db.execute(INSERT, 4, "kept")
        db.execute(INSERT, 5, "last")
    assert names(db) == ["outer", "kept", "last"]


def test_an_outer_rollback_undoes_committed_savepoints(db):
    def block():
        with db.transaction():
            with db.transaction():
                db.execute(INSERT, 1, "inner")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        block()
    assert names(db) == []


def test_other_threads_wait_for_a_transaction_instead_of_joining_it(db):
    started = threading.Event()

    def outsider():
        started.wait(5)
        db.execute(INSERT, 2, "outsider")

    def owner():
        with db.transaction():
            db.execute(INSERT, 1, "owner")
            started.set()
            time.sleep(0.1)  # give the outsider time to try; it must wait, not join
            assert thread.is_alive()
            raise RuntimeError

    thread = threading.Thread(target=outsider)
    thread.start()
    with pytest.raises(RuntimeError):
        owner()
    thread.join(5)
    assert names(db) == ["outsider"]


def test_concurrent_statements_from_many_threads(db):
    def insert(worker):
        for i in range(20):
            db.execute(
                "INSERT INTO users (id, name) VALUES (?, ?)", worker * 100 + i, f"{worker}-{i}"
            )

    threads = [threading.Thread(target=insert, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db.query_one("SELECT COUNT(*) AS n FROM users") == {"n": 120}


# --------------------------------------------------------------------------- errors


def test_driver_errors_surface_as_the_drivers_exceptions(db):
    with pytest.raises(db.Error):
        db.query("SELEC nonsense")
    with pytest.raises(db.IntegrityError):
        db.execute("INSERT INTO users (id, name) VALUES (?, NULL)", 1)
    assert db.query("SELECT 1 AS one") == [{"one": 1}]


def test_sqlite_error_classes_are_sqlite3s(tmp_path):
    with SQLiteDatabase(tmp_path / "app.db") as db:
        assert db.backend == "sqlite"
        assert db.Error is sqlite3.Error
        assert db.IntegrityError is sqlite3.IntegrityError
        assert db.OperationalError is sqlite3.OperationalError
        assert db.ProgrammingError is sqlite3.ProgrammingError


def test_sqlite_enforces_foreign_keys(tmp_path):
    with open_database(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (parent_id INTEGER REFERENCES parent (id))")
        with pytest.raises(db.IntegrityError):
            db.execute("INSERT INTO child VALUES (?)", 1)


def test_sqlite_database_is_durable_across_reopen(tmp_path):
    with open_database(f"sqlite:///{tmp_path}/app.db") as db:
        db.execute("CREATE TABLE t (v TEXT)")
        db.execute("INSERT INTO t VALUES (?)", "kept")
    with open_database(tmp_path / "app.db") as db:
        assert db.query("SELECT v FROM t") == [{"v": "kept"}]
        assert db.query_one("PRAGMA journal_mode") == {"journal_mode": "wal"}


def test_a_closed_database_refuses_work(db):
    db.close()
    db.close()
    with pytest.raises(StorageError, match="is closed"):
        db.query("SELECT 1")
    with pytest.raises(StorageError, match="is closed"), db.transaction():
        pass


def test_unopenable_databases_are_storage_errors(tmp_path):
    (tmp_path / "app.db").mkdir()
    with pytest.raises(StorageError, match="cannot open the database"):
        open_database(tmp_path / "app.db")
    with pytest.raises(StorageError, match="unsupported database URL scheme 'mysql'"):
        open_database("mysql://u@h/d")
    with pytest.raises(StorageError, match="cannot connect") as info:
        open_database(f"postgresql://u:hunter2@/d?host={tmp_path}&connect_timeout=2")
    assert "hunter2" not in str(info.value)


@pytest.mark.slow
def test_postgres_backend_details(pg_url):
    import psycopg

    with open_database(pg_url) as db:
        assert isinstance(db, PostgresDatabase)
        assert db.backend == "postgresql"
        assert db.IntegrityError is psycopg.IntegrityError
        assert db.OperationalError is psycopg.OperationalError
        db._sql._conn.close()  # a lost connection is replaced on the next call
        assert db.query_one("SELECT ? + 1 AS n", 1) == {"n": 2}


@pytest.mark.slow
def test_a_transaction_whose_connection_is_lost_fails_loudly(pg_url):
    def block(db):
        with db.transaction():
            db.execute("CREATE TABLE t (v INTEGER)")
            db._sql._conn.close()

    with open_database(pg_url) as db:
        with pytest.raises(db.OperationalError):
            block(db)
        assert not db.in_transaction
        assert db.query_one("SELECT to_regclass('t') AS t") == {"t": None}
