"""Durable, isolated per-plugin storage: a :class:`PluginStorage` over a :class:`StateStore`.

Three parts, bottom up:

* **the value codec** (``encode_value`` / ``decode_value``, shared with the cache
  service): JSON plus ``datetime``. A value is walked once before it is written;
  anything else is refused with a :class:`~tether.errors.StorageValueError` that
  names the plugin, the key and the path of the offending item inside the value.
* **state stores**: one table, ``plugin_storage(plugin_name, key, value,
  updated_at)``, in SQLite (the default, a file in WAL mode, ``synchronous=FULL``)
  or PostgreSQL (by URL, autocommit). Every write is committed before ``set``
  returns, so an acknowledged write survives ``kill -9`` of the host.
* :class:`PluginStorage`: what one plugin receives. The plugin's name is bound at
  construction and is part of every query; no method takes a plugin name, so a
  plugin cannot reach another plugin's keys.

How datetimes round-trip: a ``datetime`` is written as ``{"$datetime": "<ISO
8601>"}`` and read back with :meth:`datetime.fromisoformat`. Naive datetimes stay
naive; aware ones come back with a fixed UTC offset (the same instant). So that a
plugin's own dict keys can never be mistaken for that tag, every dict key that
starts with ``$`` is written with one more ``$`` and read back without it.

Connections, dialects and the mapping of driver errors (``sqlite3.Error``,
``psycopg.Error``) to :class:`~tether.errors.StorageError` (``raise ... from exc``)
are the SQL layer's (``tether._sql``), shared with the database service and the
state tables; this module keeps its table and its queries.
"""

from __future__ import annotations

import builtins
import enum
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

# The location helpers are re-exported (in __all__): other modules import them from here.
from tether._sql import (
    DEFAULT_CONNECT_TIMEOUT,
    Connection,
    DialectName,
    Fetch,
    Result,
    Target,
    is_postgres_url,
    open_sqlite,
    redact_url,
    sqlite_target,
)
from tether.errors import StorageError, StorageValueError

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "DEFAULT_STATE_PATH",
    "MAX_KEY_LENGTH",
    "MISSING",
    "PluginStorage",
    "PostgresStateStore",
    "SQLiteStateStore",
    "StateStore",
    "check_key",
    "decode_value",
    "encode_value",
    "is_postgres_url",
    "open_sqlite",
    "open_state_store",
    "redact_url",
    "sqlite_target",
]

DEFAULT_STATE_PATH: Final = Path(".tether/state.db")
DEFAULT_MAX_VALUE_BYTES: Final = 1024 * 1024
MAX_KEY_LENGTH: Final = 255
STORABLE: Final = "str, int, float, bool, None, list, dict with str keys, and datetime"

_DATETIME_TAG: Final = "$datetime"


class _Missing(enum.Enum):
    MISSING = enum.auto()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""The "no default given" sentinel of :meth:`PluginStorage.get` (``None`` is a valid value)."""


# --------------------------------------------------------------------------- value codec


class _UnstorableError(Exception):
    """Internal: where in a value the walk stopped, and why."""

    def __init__(self, path: str, detail: str, hint: str) -> None:
        super().__init__(f"{path} {detail}")
        self.path = path
        self.detail = detail
        self.hint = hint


_HINTS: Final = {
    "set": "convert it to a list (sorted, if order matters)",
    "frozenset": "convert it to a list (sorted, if order matters)",
    "tuple": "use a list; tuples would come back as lists",
    "bytes": "encode it as text first (base64 or .hex())",
    "bytearray": "encode it as text first (base64 or .hex())",
    "date": "store a datetime, or the date's .isoformat() text",
    "time": "store the time's .isoformat() text",
    "timedelta": "store .total_seconds() as a float",
    "decimal.Decimal": "store str(value) to keep every digit, or float(value)",
    "uuid.UUID": "store str(value)",
}


def _type_name(value: object) -> str:
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _unsupported(value: object, path: str) -> _UnstorableError:
    name = _type_name(value)
    if name == "datetime.date":
        name = "date"
    elif name in {"datetime.time", "datetime.timedelta"}:
        name = name.removeprefix("datetime.")
    hint = _HINTS.get(name, f"convert it to one of: {STORABLE}")
    return _UnstorableError(path, f"has unsupported type '{name}'", hint)


def _walk(value: object, path: str, active: set[int]) -> object:
    """Check ``value`` and return its JSON form (datetimes tagged, ``$`` keys escaped)."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float and isinstance(value, float):
        if not math.isfinite(value):
            raise _UnstorableError(
                path,
                f"is the float {value!r}",
                "NaN and infinities have no JSON form; store None or a string instead",
            )
        return value
    if kind is datetime and isinstance(value, datetime):
        return {_DATETIME_TAG: value.isoformat()}
    if (kind is list or kind is dict) and isinstance(value, list | dict):
        if id(value) in active:
            raise _UnstorableError(
                path, "refers back to a container that holds it", "break the cycle"
            )
        active.add(id(value))
        try:
            if isinstance(value, list):
                return [_walk(item, f"{path}[{i}]", active) for i, item in enumerate(value)]
            return _walk_dict(value, path, active)
        finally:
            active.discard(id(value))
    raise _unsupported(value, path)


def _walk_dict(value: dict[object, object], path: str, active: set[int]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise _UnstorableError(
                path,
                f"has a key {key!r} of type '{_type_name(key)}'",
                "dict keys must be str (JSON objects only have text keys)",
            )
        out["$" + key if key.startswith("$") else key] = _walk(item, f"{path}[{key!r}]", active)
    return out


def encode_value(
    value: object,
    *,
    owner: str,
    key: str,
    max_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    what: str = "storage",
) -> str:
    """The JSON text stored for ``value``, or a ``StorageValueError`` saying why not.

    ``owner`` (a plugin or cache namespace), ``key`` and ``what`` ("storage",
    "cache") only shape the error message.
    """
    where = f"cannot store key {key!r} in the {what} of plugin {owner!r}"
    try:
        tree = _walk(value, "value", set())
    except _UnstorableError as problem:
        raise StorageValueError(
            f"{where}: {problem.path} {problem.detail}; storable values are {STORABLE}",
            plugin=owner,
            hint=problem.hint,
        ) from None
    except RecursionError:
        raise StorageValueError(
            f"{where}: value is nested too deeply", plugin=owner, hint="flatten the value"
        ) from None
    text = json.dumps(tree, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise StorageValueError(
            f"{where}: value contains text that is not valid Unicode (a lone surrogate)",
            plugin=owner,
            hint="decode the text properly before storing it",
        ) from None
    if size > max_bytes:
        raise StorageValueError(
            f"{where}: value is {size:,} bytes serialized, over the limit of {max_bytes:,} bytes",
            plugin=owner,
            hint="keep large data in files or the database service and store a reference, "
            "or raise the limit (max_value_bytes)",
        )
    return text


def _from_json_object(obj: dict[str, object]) -> object:
    if len(obj) == 1 and _DATETIME_TAG in obj:
        text = obj[_DATETIME_TAG]
        if isinstance(text, str):
            return datetime.fromisoformat(text)
    if any(k.startswith("$") for k in obj):
        return {k.removeprefix("$"): v for k, v in obj.items()}
    return obj


def decode_value(text: str | bytes) -> object:
    """The value ``encode_value`` wrote as ``text``."""
    return json.loads(text, object_hook=_from_json_object)


def check_key(
    key: object, *, owner: str, what: str = "storage", max_length: int = MAX_KEY_LENGTH
) -> str:
    """``key`` if it is a usable key (a non-empty str of at most ``max_length`` characters)."""
    problem = None
    if type(key) is not str:
        problem = f"must be a str, got {_type_name(key)}"
    elif not key:
        problem = "must not be empty"
    elif len(key) > max_length:
        problem = f"is {len(key)} characters long, over the limit of {max_length}"
    elif "\x00" in key:
        problem = "must not contain NUL characters"
    else:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            problem = "is not valid Unicode (a lone surrogate)"
    if problem is not None:
        raise StorageValueError(
            f"invalid {what} key {key!r} for plugin {owner!r}: the key {problem}",
            plugin=owner,
            hint=f"use a non-empty text key of at most {max_length} characters",
        )
    return key  # type: ignore[return-value]


# --------------------------------------------------------------------------- state stores


class StateStore(Protocol):
    """Where plugin storage lives: encoded values under ``(plugin, key)``.

    Only the runtime holds a store; plugins receive a :class:`PluginStorage`.
    ``set`` returns only once the write is committed.
    """

    @property
    def location(self) -> str: ...
    def get(self, plugin: str, key: str) -> str | None: ...
    def set(self, plugin: str, key: str, value: str) -> None: ...
    def delete(self, plugin: str, key: str) -> bool: ...
    def keys(self, plugin: str) -> list[str]: ...
    def clear(self, plugin: str) -> int: ...
    def close(self) -> None: ...


_SQLITE_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS plugin_storage (
    plugin_name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (plugin_name, key)
)"""
_PG_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS plugin_storage (
    plugin_name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (plugin_name, key)
)"""
_SCHEMAS: Final[dict[DialectName, str]] = {"sqlite": _SQLITE_SCHEMA, "postgresql": _PG_SCHEMA}
_PG_SCHEMA_LOCK: Final = 0x7465746865720001  # advisory lock id for creating the table

_UPSERT: Final = (
    "INSERT INTO plugin_storage (plugin_name, key, value, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (plugin_name, key) DO UPDATE "
    "SET value = excluded.value, updated_at = excluded.updated_at"
)
_SELECT: Final = "SELECT value FROM plugin_storage WHERE plugin_name = ? AND key = ?"
_DELETE: Final = "DELETE FROM plugin_storage WHERE plugin_name = ? AND key = ?"
_KEYS: Final = "SELECT key FROM plugin_storage WHERE plugin_name = ? ORDER BY key"
_CLEAR: Final = "DELETE FROM plugin_storage WHERE plugin_name = ?"


class _SQLStateStore:
    """Plugin storage in the ``plugin_storage`` table, through one SQL-layer connection.

    Every statement runs on its own in autocommit mode, so it is committed when it
    returns. On PostgreSQL a connection found closed or broken is replaced on the
    next call.
    """

    def __init__(self, target: Target, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> None:
        self._sql = Connection(target, connect_timeout=connect_timeout)
        with self._sql.storage_errors(f"cannot open the state store at {self.location}"):
            self._sql.create_schema([_SCHEMAS[target.dialect.name]], lock_id=_PG_SCHEMA_LOCK)

    @property
    def location(self) -> str:
        return self._sql.location

    def get(self, plugin: str, key: str) -> str | None:
        rows = self._run("get", plugin, _SELECT, (plugin, key), fetch="one").rows
        return str(rows[0][0]) if rows else None

    def set(self, plugin: str, key: str, value: str) -> None:
        stamp = self._sql.dialect.time(datetime.now(UTC))
        self._run("set", plugin, _UPSERT, (plugin, key, value, stamp))

    def delete(self, plugin: str, key: str) -> bool:
        return self._run("delete", plugin, _DELETE, (plugin, key)).rowcount > 0

    def keys(self, plugin: str) -> list[str]:
        return [
            str(row[0]) for row in self._run("list", plugin, _KEYS, (plugin,), fetch="all").rows
        ]

    def clear(self, plugin: str) -> int:
        return self._run("clear", plugin, _CLEAR, (plugin,)).rowcount

    def close(self) -> None:
        self._sql.close()

    def _run(
        self,
        action: str,
        plugin: str,
        sql: str,
        params: Sequence[object],
        *,
        fetch: Fetch = "none",
    ) -> Result:
        with self._sql.storage_errors(
            f"plugin storage {action} failed for plugin {plugin!r} ({self.location})",
            hint=f"check that the state store at {self.location} is reachable and writable",
            plugin=plugin,
        ):
            return self._sql.run(sql, params, fetch=fetch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


class SQLiteStateStore(_SQLStateStore):
    """Plugin storage in a SQLite file (WAL journal, ``synchronous=FULL``)."""

    def __init__(self, path: str | Path = DEFAULT_STATE_PATH) -> None:
        super().__init__(Target.sqlite(path, kind="state store"))


class PostgresStateStore(_SQLStateStore):
    """Plugin storage in PostgreSQL (psycopg 3, autocommit)."""

    def __init__(self, url: str, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> None:
        super().__init__(
            Target.postgresql(url, kind="state store"), connect_timeout=connect_timeout
        )


def open_state_store(url_or_path: str | Path = DEFAULT_STATE_PATH) -> StateStore:
    """A state store for a path or ``sqlite:///`` URL (SQLite) or a ``postgresql://`` URL."""
    if is_postgres_url(url_or_path):
        return PostgresStateStore(str(url_or_path))
    return SQLiteStateStore(url_or_path)


# --------------------------------------------------------------------------- plugin storage


class PluginStorage:
    """One plugin's durable key-value storage (the reference's ``PluginStorage``).

    Keys are non-empty text of at most 255 characters; values follow the codec's
    rules (see the module docstring). Every ``set`` is committed before it returns.
    """

    __slots__ = ("_max_value_bytes", "_plugin", "_store")

    def __init__(
        self,
        store: StateStore,
        plugin: str,
        *,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        if not isinstance(plugin, str) or not plugin:
            raise StorageError(f"plugin storage needs a plugin name, got {plugin!r}")
        self._store = store
        self._plugin = plugin
        self._max_value_bytes = max_value_bytes

    @property
    def plugin(self) -> str:
        return self._plugin

    def get(self, key: str, default: object = MISSING) -> object:
        """The value stored under ``key``; ``default`` if given, else ``KeyError``."""
        text = self._store.get(self._plugin, self._key(key))
        if text is not None:
            return decode_value(text)
        if default is MISSING:
            raise KeyError(f"plugin {self._plugin!r} has no stored key {key!r}")
        return default

    def set(self, key: str, value: object) -> None:
        """Store ``value`` under ``key``; durable once this returns."""
        checked = self._key(key)
        text = encode_value(value, owner=self._plugin, key=checked, max_bytes=self._max_value_bytes)
        self._store.set(self._plugin, checked, text)

    def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed (a missing key is not an error)."""
        return self._store.delete(self._plugin, self._key(key))

    def list(self) -> builtins.list[str]:
        """This plugin's keys, sorted."""
        return self._store.keys(self._plugin)

    def clear(self) -> int:
        """Remove every key of this plugin; return how many there were."""
        return self._store.clear(self._plugin)

    def _key(self, key: object) -> str:
        return check_key(key, owner=self._plugin)

    def __repr__(self) -> str:
        return f"PluginStorage(plugin={self._plugin!r}, store={self._store.location!r})"
