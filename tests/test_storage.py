"""Plugin storage: isolation, every operation, value rules, and durability across kill -9."""

# Naive datetimes are values under test here, not mistakes.
# ruff: noqa: DTZ001

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether._storage import (
    MISSING,
    PluginStorage,
    PostgresStateStore,
    SQLiteStateStore,
    decode_value,
    encode_value,
    open_state_store,
    redact_url,
)
from tether.errors import StorageError, StorageValueError

pytest_plugins = ["pg"]

SRC = Path(__file__).resolve().parent.parent / "src"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path) -> str:
    """Where a state store lives: a SQLite file, or a PostgreSQL URL with its own schema."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / ".tether" / "state.db")


@pytest.fixture
def store(location):
    opened = open_state_store(location)
    yield opened
    opened.close()


@pytest.fixture
def alpha(store):
    return PluginStorage(store, "alpha")


@pytest.fixture
def beta(store):
    return PluginStorage(store, "beta")


@pytest.fixture
def local(tmp_path):
    """Storage on a SQLite file, for the value rules (the codec is the same on every backend)."""
    opened = SQLiteStateStore(tmp_path / "state.db")
    yield PluginStorage(opened, "alpha")
    opened.close()


# --------------------------------------------------------------------------- operations

VALUES = {
    "str": "hello, wörld",
    "empty-str": "",
    "int": 42,
    "big-int": 2**80,
    "negative-float": -1.5,
    "true": True,
    "false": False,
    "none": None,
    "list": [1, "two", 3.0, None, [True]],
    "dict": {"a": 1, "nested": {"b": [1, 2, {"c": None}]}},
    "naive-datetime": datetime(2024, 5, 17, 12, 30, 45, 123456),
    "aware-datetime": datetime(2024, 5, 17, 12, 30, tzinfo=UTC),
    "offset-datetime": datetime(2024, 5, 17, 12, 30, tzinfo=timezone(timedelta(hours=-7))),
    "datetimes-inside": {"when": [datetime(2020, 1, 1), {"at": datetime(2021, 2, 3, 4, 5)}]},
    "dollar-keys": {"$datetime": "not a date", "$$x": 1, "$": 2, "plain": 3},
    "nul-in-text": "a\x00b",
}


@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_set_then_get_returns_an_equal_value(alpha, value):
    alpha.set("k", value)
    got = alpha.get("k")
    assert got == value
    assert type(got) is type(value)


def test_datetimes_keep_their_offset_and_naive_ones_stay_naive(alpha):
    aware = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    alpha.set("aware", aware)
    alpha.set("naive", datetime(2024, 1, 2, 3, 4, 5))
    assert alpha.get("aware").utcoffset() == timedelta(hours=5, minutes=30)
    assert alpha.get("naive").tzinfo is None


def test_set_overwrites(alpha):
    alpha.set("k", 1)
    alpha.set("k", {"now": 2})
    assert alpha.get("k") == {"now": 2}
    assert alpha.list() == ["k"]


def test_get_missing_key_raises_key_error_naming_plugin_and_key(alpha):
    with pytest.raises(KeyError, match=r"plugin 'alpha' has no stored key 'nope'"):
        alpha.get("nope")


def test_get_missing_key_returns_the_default_when_given(alpha):
    assert alpha.get("nope", None) is None
    assert alpha.get("nope", default=7) == 7
    assert repr(MISSING) == "MISSING"


def test_delete_reports_whether_the_key_existed(alpha):
    alpha.set("k", 1)
    assert alpha.delete("k") is True
    assert alpha.delete("k") is False
    assert alpha.get("k", None) is None


def test_list_is_sorted_and_clear_counts(alpha):
    for key in ("b", "a", "c"):
        alpha.set(key, key)
    assert alpha.list() == ["a", "b", "c"]
    assert alpha.clear() == 3
    assert alpha.list() == []
    assert alpha.clear() == 0


def test_plugins_with_the_same_keys_are_isolated(alpha, beta):
    alpha.set("shared", "from alpha")
    beta.set("shared", "from beta")
    alpha.set("only-alpha", 1)
    assert alpha.get("shared") == "from alpha"
    assert beta.get("shared") == "from beta"
    assert beta.get("only-alpha", None) is None
    assert beta.list() == ["shared"]
    assert beta.delete("only-alpha") is False
    assert alpha.clear() == 2
    assert beta.get("shared") == "from beta"


def test_storage_is_bound_to_one_plugin(alpha):
    assert alpha.plugin == "alpha"
    assert "alpha" in repr(alpha)
    with pytest.raises(StorageError, match="needs a plugin name"):
        PluginStorage(alpha._store, "")


def test_values_persist_across_reopen(location):
    first = open_state_store(location)
    PluginStorage(first, "alpha").set("k", {"when": datetime(2024, 1, 1)})
    first.close()
    second = open_state_store(location)
    try:
        assert PluginStorage(second, "alpha").get("k") == {"when": datetime(2024, 1, 1)}
    finally:
        second.close()


def test_rows_live_in_the_plugin_storage_table(location, alpha):
    alpha.set("k", [1])
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location) as conn:
            row = conn.execute(
                "SELECT plugin_name, key, value, updated_at FROM plugin_storage"
            ).fetchone()
    else:
        with sqlite3.connect(location) as conn:
            row = conn.execute(
                "SELECT plugin_name, key, value, updated_at FROM plugin_storage"
            ).fetchone()
    assert row[:3] == ("alpha", "k", "[1]")
    assert row[3]


def test_concurrent_writers_on_threads(alpha):
    def write(worker):
        for i in range(25):
            alpha.set(f"w{worker}-{i}", i)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(alpha.list()) == 200
    assert alpha.get("w7-24") == 24


# --------------------------------------------------------------------------- value rules


class Custom:
    pass


UNSTORABLE = [
    pytest.param(object(), r"value has unsupported type 'object'", "convert", id="object"),
    pytest.param({1, 2}, r"value has unsupported type 'set'", "sorted", id="set"),
    pytest.param(b"raw", r"value has unsupported type 'bytes'", "base64", id="bytes"),
    pytest.param((1, 2), r"value has unsupported type 'tuple'", "use a list", id="tuple"),
    pytest.param(Custom(), r"unsupported type 'test_storage\.Custom'", "convert", id="class"),
    pytest.param(Decimal("1.10"), r"unsupported type 'decimal\.Decimal'", "str", id="decimal"),
    pytest.param(datetime(2024, 1, 1).date(), r"unsupported type 'date'", "datetime", id="date"),
    pytest.param(
        {"a": [1, {"b": {3}}]},
        r"value\['a'\]\[1\]\['b'\] has unsupported type 'set'",
        "list",
        id="nested",
    ),
    pytest.param({1: "x"}, r"value has a key 1 of type 'int'", "must be str", id="int-key"),
    pytest.param([float("nan")], r"value\[0\] is the float nan", "NaN", id="nan"),
    pytest.param(float("inf"), r"value is the float inf", "NaN", id="inf"),
    pytest.param("\ud800", r"not valid Unicode", "decode", id="lone-surrogate"),
]


@pytest.mark.parametrize(("value", "message", "hint"), UNSTORABLE)
def test_unstorable_values_are_refused_with_plugin_key_path_and_type(local, value, message, hint):
    with pytest.raises(StorageValueError, match=message) as info:
        local.set("the-key", value)
    assert "cannot store key 'the-key' in the storage of plugin 'alpha'" in str(info.value)
    assert info.value.plugin == "alpha"
    assert hint in (info.value.hint or "")
    assert local.list() == []


def test_circular_values_are_refused(local):
    loop: list[object] = [1]
    loop.append({"back": loop})
    with pytest.raises(StorageValueError, match=r"value\[1\]\['back'\] refers back"):
        local.set("k", loop)


def test_a_shared_but_acyclic_value_is_fine(local):
    shared = [1, 2]
    local.set("k", {"a": shared, "b": shared})
    assert local.get("k") == {"a": [1, 2], "b": [1, 2]}


def test_deeply_nested_values_are_refused(local):
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(StorageValueError, match="nested too deeply"):
        local.set("k", deep)


def test_values_over_the_default_limit_are_refused(local):
    local.set("fits", "x" * (1024 * 1024 - 2))  # two quote characters make 1 MiB exactly
    with pytest.raises(StorageValueError, match=r"1,048,577 bytes serialized.*1,048,576"):
        local.set("too-big", "x" * (1024 * 1024 - 1))
    assert local.list() == ["fits"]


def test_the_size_limit_is_configurable_and_counts_utf8_bytes(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    small = PluginStorage(store, "alpha", max_value_bytes=10)
    small.set("k", "é" * 4)  # 8 bytes + 2 quotes
    with pytest.raises(StorageValueError, match="12 bytes serialized"):
        small.set("k", "é" * 5)
    store.close()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        pytest.param("", "must not be empty", id="empty"),
        pytest.param("k" * 256, "256 characters long, over the limit of 255", id="too-long"),
        pytest.param(7, "must be a str, got int", id="not-str"),
        pytest.param("a\x00b", "NUL", id="nul"),
        pytest.param("\udc80", "not valid Unicode", id="surrogate"),
    ],
)
def test_invalid_keys_are_refused_by_every_operation(local, key, message):
    for call in (
        lambda: local.set(key, 1),
        lambda: local.get(key),
        lambda: local.delete(key),
    ):
        with pytest.raises(StorageValueError, match=message):
            call()
    local.set("k" * 255, 1)


storable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.datetimes()
    | st.datetimes(
        timezones=st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
    ),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=6) | st.sampled_from(["$datetime", "$", "$$a"]), children
        )
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(storable)
def test_decode_after_encode_is_identity(value):
    assert decode_value(encode_value(value, owner="p", key="k")) == value


# --------------------------------------------------------------------------- stores


def test_sqlite_store_uses_wal_and_creates_its_directory(tmp_path):
    path = tmp_path / "deep" / "dir" / "state.db"
    store = open_state_store(f"sqlite:///{path}")
    try:
        assert isinstance(store, SQLiteStateStore)
        assert store.location == str(path)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_schema_creation_is_idempotent(location):
    for _ in range(3):
        open_state_store(location).close()


def test_a_closed_store_refuses_work(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    store.close()
    store.close()
    with pytest.raises(StorageError, match="is closed"):
        PluginStorage(store, "alpha").set("k", 1)


def test_memory_sqlite_store(tmp_path):
    store = open_state_store(":memory:")
    PluginStorage(store, "alpha").set("k", 1)
    assert PluginStorage(store, "alpha").get("k") == 1
    store.close()


def test_an_unwritable_sqlite_location_is_a_storage_error(tmp_path):
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StorageError, match="cannot open the state store"):
        open_state_store(tmp_path / "state.db")


def test_an_unknown_url_scheme_is_refused():
    with pytest.raises(StorageError, match="unsupported state store URL scheme 'mysql'") as info:
        open_state_store("mysql://root:secret@db/app")
    assert "secret" not in str(info.value)


def test_an_unreachable_postgres_is_a_storage_error_without_the_password(tmp_path):
    url = f"postgresql://user:hunter2@/db?host={tmp_path}&connect_timeout=2"
    with pytest.raises(StorageError, match="cannot open the state store") as info:
        PostgresStateStore(url)
    assert "hunter2" not in str(info.value)


def test_redact_url_hides_only_the_password():
    assert redact_url("postgresql://u:p@h:5/d?x=1") == "postgresql://u:***@h:5/d?x=1"
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"


@pytest.mark.slow
def test_a_broken_postgres_connection_is_replaced(pg_url):
    store = PostgresStateStore(pg_url)
    try:
        storage = PluginStorage(store, "alpha")
        storage.set("k", 1)
        store._sql._conn.close()
        assert storage.get("k") == 1
    finally:
        store.close()


# --------------------------------------------------------------------------- durability

WRITER = """
import sys
from tether._storage import PluginStorage, open_state_store

storage = PluginStorage(open_state_store(sys.argv[1]), "writer")
for i in range(1_000_000):
    storage.set(f"key-{i:07d}", {"i": i, "payload": "x" * 200})
    print("ack", i, flush=True)
"""


def test_every_acknowledged_write_survives_kill_9(location):
    wanted = 150
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, location],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    acked = -1
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acked = int(line.split()[1])
            if acked + 1 >= wanted:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        stderr = child.stderr.read() if child.stderr else ""
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL, stderr
    assert acked + 1 >= wanted, stderr

    store = open_state_store(location)
    try:
        storage = PluginStorage(store, "writer")
        for i in range(acked + 1):
            assert storage.get(f"key-{i:07d}") == {"i": i, "payload": "x" * 200}
        for key in storage.list():  # writes after the last ack are whole or absent
            number = int(key.removeprefix("key-"))
            assert storage.get(key) == {"i": number, "payload": "x" * 200}
    finally:
        store.close()
