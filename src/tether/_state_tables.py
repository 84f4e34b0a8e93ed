"""The plugin state tables: ``plugins``, ``plugin_hooks``, ``plugin_metrics``, ``plugin_reloads``.

They are the tables the reference's dashboard queries read, in the same database as
plugin storage (``.tether/state.db`` under the runtime's state directory by default,
PostgreSQL when ``state.url`` is a ``postgresql://`` URL)::

    plugins          one row per plugin ever seen: status, enabled, errors, load
    plugin_hooks     one row per (plugin, hook type): executions, total time, errors
    plugin_metrics   one row per event worth a trend: 'error', 'load_duration_ms',
                     'load_success', 'health_check_failed'
    plugin_reloads   one row per reload or rollback: versions, outcome, failed step,
                     error, duration, calls held and refused, storage writes discarded

``plugins.status`` is the plugin's *effective* state: its lifecycle status
(``running``, ``stopped``...), or ``disabled`` when it is disabled, or ``degraded``
when it runs but fails its health check; ``lifecycle_status`` keeps the lifecycle
status alone. So the reference's "status != 'running'" finds every plugin that needs
a look.

The reference's queries run as written on PostgreSQL; SQLite lacks ``NOW()`` and
``INTERVAL``, so the error-trend query reads ``datetime('now', '-1 hour')`` there
(``REFERENCE_QUERIES`` has both). Times are ``TIMESTAMPTZ`` on PostgreSQL and UTC text
``YYYY-MM-DD HH:MM:SS.ffffff`` on SQLite (the form SQLite's own ``datetime()`` compares
with).

The writer (:class:`PluginStateStore`) upserts snapshots; the enabled flag is written
only when it changed in this process, so a running server does not undo a
``tether plugins disable`` made meanwhile. Driver errors become
:class:`~tether.errors.StorageError`. Connections, dialects, transactions and that
mapping are the SQL layer's (``tether._sql``), shared with plugin storage and the
database service; this module keeps its tables and its queries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Self

from tether._reload_result import ReloadResult
from tether._sql import (
    DEFAULT_CONNECT_TIMEOUT,
    SQLITE,
    Connection,
    DialectName,
    Result,
    Target,
    read_time,
)

__all__ = [
    "REFERENCE_QUERIES",
    "HookRow",
    "MetricRow",
    "PersistedFlag",
    "PluginRow",
    "PluginStateStore",
    "read_enabled_flags",
    "read_reloads",
]

_SQLITE_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS plugins (
        name TEXT PRIMARY KEY,
        version TEXT,
        status TEXT NOT NULL,
        lifecycle_status TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        disabled_reason TEXT,
        degraded INTEGER NOT NULL DEFAULT 0,
        error_count INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        last_error_at TEXT,
        load_time TEXT,
        load_duration_ms REAL,
        path TEXT,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS plugin_hooks (
        plugin_name TEXT NOT NULL,
        hook_type TEXT NOT NULL,
        execution_count INTEGER NOT NULL DEFAULT 0,
        total_duration_ms REAL NOT NULL DEFAULT 0,
        error_count INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (plugin_name, hook_type)
    )""",
    """CREATE TABLE IF NOT EXISTS plugin_metrics (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        plugin_name TEXT NOT NULL,
        metric_name TEXT NOT NULL,
        metric_value REAL NOT NULL,
        labels TEXT,
        recorded_at TEXT NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS plugin_metrics_by_plugin
        ON plugin_metrics (plugin_name, metric_name, recorded_at)""",
    """CREATE TABLE IF NOT EXISTS plugin_reloads (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        plugin_name TEXT NOT NULL,
        kind TEXT NOT NULL,
        from_version TEXT NOT NULL,
        to_version TEXT,
        outcome TEXT NOT NULL,
        step TEXT,
        error TEXT,
        duration_ms REAL NOT NULL,
        held INTEGER NOT NULL,
        rejected INTEGER NOT NULL,
        discarded_writes INTEGER NOT NULL,
        recorded_at TEXT NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS plugin_reloads_by_plugin
        ON plugin_reloads (plugin_name, recorded_at)""",
)
_PG_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS plugins (
        name TEXT PRIMARY KEY,
        version TEXT,
        status TEXT NOT NULL,
        lifecycle_status TEXT NOT NULL,
        enabled BOOLEAN NOT NULL DEFAULT TRUE,
        disabled_reason TEXT,
        degraded BOOLEAN NOT NULL DEFAULT FALSE,
        error_count BIGINT NOT NULL DEFAULT 0,
        last_error TEXT,
        last_error_at TIMESTAMPTZ,
        load_time TIMESTAMPTZ,
        load_duration_ms DOUBLE PRECISION,
        path TEXT,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS plugin_hooks (
        plugin_name TEXT NOT NULL,
        hook_type TEXT NOT NULL,
        execution_count BIGINT NOT NULL DEFAULT 0,
        total_duration_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
        error_count BIGINT NOT NULL DEFAULT 0,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (plugin_name, hook_type)
    )""",
    """CREATE TABLE IF NOT EXISTS plugin_metrics (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        plugin_name TEXT NOT NULL,
        metric_name TEXT NOT NULL,
        metric_value DOUBLE PRECISION NOT NULL,
        labels TEXT,
        recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    """CREATE INDEX IF NOT EXISTS plugin_metrics_by_plugin
        ON plugin_metrics (plugin_name, metric_name, recorded_at)""",
    """CREATE TABLE IF NOT EXISTS plugin_reloads (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        plugin_name TEXT NOT NULL,
        kind TEXT NOT NULL,
        from_version TEXT NOT NULL,
        to_version TEXT,
        outcome TEXT NOT NULL,
        step TEXT,
        error TEXT,
        duration_ms DOUBLE PRECISION NOT NULL,
        held BIGINT NOT NULL,
        rejected BIGINT NOT NULL,
        discarded_writes BIGINT NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    """CREATE INDEX IF NOT EXISTS plugin_reloads_by_plugin
        ON plugin_reloads (plugin_name, recorded_at)""",
)
_TABLES: Final[dict[DialectName, tuple[str, ...]]] = {
    "sqlite": _SQLITE_TABLES,
    "postgresql": _PG_TABLES,
}
_PG_SCHEMA_LOCK: Final = 0x7465746865720002  # advisory lock id for creating the tables

_PLUGIN_COLUMNS: Final = (
    "name", "version", "status", "lifecycle_status", "enabled", "disabled_reason", "degraded",
    "error_count", "last_error", "last_error_at", "load_time", "load_duration_ms", "path",
    "updated_at",
)  # fmt: skip
_SWITCH_COLUMNS: Final = frozenset({"enabled", "disabled_reason"})


def _upsert_plugin(*, with_switch: bool) -> str:
    placeholders = ", ".join("?" for _ in _PLUGIN_COLUMNS)
    updated = [
        c for c in _PLUGIN_COLUMNS if c != "name" and (with_switch or c not in _SWITCH_COLUMNS)
    ]
    sets = ", ".join(f"{c} = excluded.{c}" for c in updated)
    return (
        f"INSERT INTO plugins ({', '.join(_PLUGIN_COLUMNS)}) VALUES ({placeholders}) "  # noqa: S608 - fixed column names
        f"ON CONFLICT (name) DO UPDATE SET {sets}"
    )


_UPSERT_PLUGIN: Final = _upsert_plugin(with_switch=True)
_UPSERT_PLUGIN_KEEP_SWITCH: Final = _upsert_plugin(with_switch=False)
_SWITCH: Final = (
    "INSERT INTO plugins (name, status, lifecycle_status, enabled, disabled_reason, updated_at) "
    "VALUES (?, ?, 'unloaded', ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, "
    "disabled_reason = excluded.disabled_reason, updated_at = excluded.updated_at, "
    "status = CASE WHEN excluded.enabled THEN plugins.lifecycle_status ELSE 'disabled' END"
)
_UPSERT_HOOK: Final = (
    "INSERT INTO plugin_hooks (plugin_name, hook_type, execution_count, total_duration_ms, "
    "error_count, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (plugin_name, hook_type) DO UPDATE SET "
    "execution_count = excluded.execution_count, total_duration_ms = excluded.total_duration_ms, "
    "error_count = excluded.error_count, updated_at = excluded.updated_at"
)
_INSERT_METRIC: Final = (
    "INSERT INTO plugin_metrics (plugin_name, metric_name, metric_value, labels, recorded_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
_PRUNE: Final = "DELETE FROM plugin_metrics WHERE recorded_at < ?"
_RELOAD_COLUMNS: Final = (
    "plugin_name", "kind", "from_version", "to_version", "outcome", "step", "error",
    "duration_ms", "held", "rejected", "discarded_writes", "recorded_at",
)  # fmt: skip
_INSERT_RELOAD: Final = (
    f"INSERT INTO plugin_reloads ({', '.join(_RELOAD_COLUMNS)}) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join('?' for _ in _RELOAD_COLUMNS)})"
)
_RELOADS: Final = f"SELECT {', '.join(_RELOAD_COLUMNS)} FROM plugin_reloads"  # noqa: S608
_FLAGS: Final = "SELECT name, enabled, disabled_reason FROM plugins"

REFERENCE_QUERIES: Final[dict[str, dict[DialectName, str]]] = {
    "plugin_status": {
        "postgresql": """SELECT name, status, error_count, last_error_at
FROM plugins
WHERE status != 'running'
ORDER BY error_count DESC""",
    },
    "hook_performance": {
        "postgresql": """SELECT plugin_name, hook_type,
       execution_count,
       total_duration_ms / execution_count as avg_duration_ms,
       error_count
FROM plugin_hooks
WHERE execution_count > 0
ORDER BY avg_duration_ms DESC""",
    },
    "error_trends": {
        "postgresql": """SELECT plugin_name,
       COUNT(*) as error_count,
       MAX(recorded_at) as last_error
FROM plugin_metrics
WHERE metric_name = 'error'
  AND recorded_at > NOW() - INTERVAL '1 hour'
GROUP BY plugin_name
ORDER BY error_count DESC""",
    },
    "plugin_state": {
        "postgresql": """SELECT name, status, error_count, last_error
FROM plugins
WHERE name = 'auth-plugin';""",
    },
    "plugin_hook_metrics": {
        "postgresql": """SELECT hook_type, execution_count, total_duration_ms, error_count
FROM plugin_hooks
WHERE plugin_name = 'auth-plugin';""",
    },
    "recent_errors": {
        "postgresql": """SELECT metric_name, metric_value, recorded_at
FROM plugin_metrics
WHERE plugin_name = 'auth-plugin'
  AND metric_name = 'error'
ORDER BY recorded_at DESC
LIMIT 10;""",
    },
}
"""The reference's dashboard and debugging queries, verbatim (``postgresql``), with the
SQLite form: the same text with PostgreSQL's ``NOW()`` arithmetic rewritten."""
for _forms in REFERENCE_QUERIES.values():
    _forms["sqlite"] = SQLITE.translate_now(_forms["postgresql"])


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class PluginRow:
    """One row of ``plugins``."""

    name: str
    status: str
    lifecycle_status: str
    enabled: bool = True
    version: str | None = None
    disabled_reason: str | None = None
    degraded: bool = False
    error_count: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    load_time: datetime | None = None
    load_duration_ms: float | None = None
    path: str | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for column in _PLUGIN_COLUMNS:
            value = getattr(self, column)
            out[column] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True, slots=True)
class HookRow:
    """One row of ``plugin_hooks``."""

    plugin_name: str
    hook_type: str
    execution_count: int
    total_duration_ms: float
    error_count: int


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One row of ``plugin_metrics``; ``labels`` is stored as JSON."""

    plugin_name: str
    metric_name: str
    metric_value: float
    recorded_at: datetime
    labels: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class PersistedFlag:
    """A plugin's enabled flag as the state store keeps it."""

    enabled: bool
    reason: str | None = None


# --------------------------------------------------------------------------- the store


class PluginStateStore:
    """The three tables in SQLite (a path or ``sqlite:///``) or PostgreSQL (a URL).

    One connection, serialized by a lock; every method commits before it returns.
    """

    def __init__(
        self, target: str | Path, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    ) -> None:
        self._sql = Connection(
            Target.parse(target, kind="state store"), connect_timeout=connect_timeout
        )
        with self._failing("open"):
            self._sql.create_schema(_TABLES[self.dialect], lock_id=_PG_SCHEMA_LOCK)

    @property
    def dialect(self) -> DialectName:
        return self._sql.dialect.name

    @property
    def location(self) -> str:
        return self._sql.location

    def _failing(self, action: str) -> AbstractContextManager[None]:
        return self._sql.storage_errors(
            f"the plugin state store at {self.location} failed to {action}",
            hint=f"check that the state store at {self.location} is reachable and writable "
            "(state.url in the config; .tether/state.db by default)",
        )

    # ------------------------------------------------------------------ writing

    def write(
        self,
        plugins: Sequence[PluginRow],
        hooks: Sequence[HookRow] = (),
        metrics: Sequence[MetricRow] = (),
        *,
        switched: frozenset[str] = frozenset(),
        retention: timedelta | None = None,
    ) -> None:
        """Upsert plugin and hook rows, append metric rows, in one transaction.

        Only plugins named in ``switched`` have their enabled flag written over an
        existing row. With ``retention``, metric rows older than that are deleted.
        """
        now = datetime.now(UTC)
        time = self._sql.dialect.time
        with self._failing("write"), self._sql.transaction():
            for row in plugins:
                sql = _UPSERT_PLUGIN if row.name in switched else _UPSERT_PLUGIN_KEEP_SWITCH
                self._sql.run(sql, self._plugin_values(row, now), fetch="none")
            hook_values = [
                (h.plugin_name, h.hook_type, h.execution_count, h.total_duration_ms,
                 h.error_count, time(now))
                for h in hooks
            ]  # fmt: skip
            metric_values = [
                (m.plugin_name, m.metric_name, m.metric_value,
                 None if m.labels is None else json.dumps(m.labels), time(m.recorded_at))
                for m in metrics
            ]  # fmt: skip
            if hook_values:
                self._sql.run_many(_UPSERT_HOOK, hook_values)
            if metric_values:
                self._sql.run_many(_INSERT_METRIC, metric_values)
            if retention is not None:
                self._sql.run(_PRUNE, (time(now - retention),), fetch="none")

    def add_reload(self, result: ReloadResult) -> None:
        """Append one reload (or rollback) to ``plugin_reloads``."""
        values = (
            result.plugin, result.kind, result.from_version, result.to_version, result.outcome,
            result.step, result.error, result.duration * 1000.0, result.held, result.rejected,
            result.discarded_writes, self._sql.dialect.time(result.at),
        )  # fmt: skip
        with self._failing("write"):
            self._sql.run(_INSERT_RELOAD, values, fetch="none")

    def _plugin_values(self, row: PluginRow, now: datetime) -> tuple[object, ...]:
        time = self._sql.dialect.time
        return (
            row.name, row.version, row.status, row.lifecycle_status, row.enabled,
            row.disabled_reason, row.degraded, row.error_count, row.last_error,
            time(row.last_error_at), time(row.load_time), row.load_duration_ms,
            row.path, time(row.updated_at or now),
        )  # fmt: skip

    def set_enabled(self, name: str, enabled: bool, reason: str | None = None) -> None:
        """Write one plugin's enabled flag now (a row is made for a plugin never seen)."""
        status = "unloaded" if enabled else "disabled"
        stamp = self._sql.dialect.time(datetime.now(UTC))
        values = (name, status, enabled, None if enabled else reason, stamp)
        with self._failing("write"):
            self._sql.run(_SWITCH, values, fetch="none")

    # ------------------------------------------------------------------ reading

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run a read-only query (``?`` placeholders on SQLite, ``%s`` on PostgreSQL)."""
        return self._read(sql, params, native=True).rows

    def enabled_flags(self) -> dict[str, PersistedFlag]:
        return _flags(self._read(_FLAGS).rows)

    def plugins(self, name: str | None = None) -> list[PluginRow]:
        columns = ", ".join(_PLUGIN_COLUMNS)
        if name is None:
            result = self._read(f"SELECT {columns} FROM plugins ORDER BY name")  # noqa: S608
        else:
            result = self._read(f"SELECT {columns} FROM plugins WHERE name = ?", (name,))  # noqa: S608
        return [_plugin_row(row) for row in result.rows]

    def hooks(self, name: str) -> list[HookRow]:
        result = self._read(
            "SELECT plugin_name, hook_type, execution_count, total_duration_ms, error_count "
            "FROM plugin_hooks WHERE plugin_name = ? ORDER BY hook_type",
            (name,),
        )
        return [HookRow(str(p), str(h), int(c), float(d), int(e)) for p, h, c, d, e in result.rows]

    def recent_errors(self, name: str, limit: int = 10) -> list[MetricRow]:
        result = self._read(
            "SELECT plugin_name, metric_name, metric_value, recorded_at, labels "
            "FROM plugin_metrics WHERE plugin_name = ? AND metric_name = 'error' "
            "ORDER BY recorded_at DESC, id DESC LIMIT ?",
            (name, limit),
        )
        out = []
        for plugin, metric, value, at, labels in result.rows:
            moment = read_time(at) or datetime.now(UTC)
            parsed = json.loads(str(labels)) if labels else None
            out.append(MetricRow(str(plugin), str(metric), float(value), moment, parsed))
        return out

    def reloads(self, name: str | None = None, limit: int = 50) -> list[ReloadResult]:
        """Reloads and rollbacks, newest first (of one plugin, or of all)."""
        where = "" if name is None else " WHERE plugin_name = ?"
        params: tuple[object, ...] = () if name is None else (name,)
        result = self._read(f"{_RELOADS}{where} ORDER BY recorded_at DESC, id DESC LIMIT ?",
                            (*params, limit))  # fmt: skip
        return [_reload_row(row) for row in result.rows]

    def _read(self, sql: str, params: Sequence[object] = (), *, native: bool = False) -> Result:
        with self._failing("read"):
            return self._sql.run(sql, params, native=native)

    def close(self) -> None:
        self._sql.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PluginStateStore({self.location!r})"


def _plugin_row(row: tuple[object, ...]) -> PluginRow:
    data = dict(zip(_PLUGIN_COLUMNS, row, strict=True))
    for column in ("last_error_at", "load_time", "updated_at"):
        data[column] = read_time(data[column])
    for column in ("enabled", "degraded"):
        data[column] = bool(data[column])
    data["error_count"] = int(data["error_count"] or 0)  # type: ignore[call-overload]
    if data["load_duration_ms"] is not None:
        data["load_duration_ms"] = float(data["load_duration_ms"])  # type: ignore[arg-type]
    return PluginRow(**data)  # type: ignore[arg-type]


def _reload_row(row: tuple[object, ...]) -> ReloadResult:
    (plugin, kind, source, target, outcome, step, error, took, held, rejected, discarded,
     at) = row  # fmt: skip
    return ReloadResult(
        plugin=str(plugin),
        kind="rollback" if kind == "rollback" else "reload",
        from_version=str(source),
        to_version=None if target is None else str(target),
        outcome=outcome if outcome in ("reloaded", "rolled_back") else "failed",
        step=None if step is None else str(step),
        error=None if error is None else str(error),
        duration=float(took) / 1000.0,  # type: ignore[arg-type]
        held=int(held),  # type: ignore[call-overload]
        rejected=int(rejected),  # type: ignore[call-overload]
        discarded_writes=int(discarded),  # type: ignore[call-overload]
        at=read_time(at) or datetime.now(UTC),
    )


def read_reloads(
    target: str | Path, name: str | None = None, limit: int = 50
) -> list[ReloadResult]:
    """The reload history in a state store, without creating anything (none if the store or
    its ``plugin_reloads`` table does not exist)."""
    parsed = Target.parse(target, kind="state store")
    if parsed.dialect is SQLITE and (parsed.path is None or not Path(parsed.path).is_file()):
        return []
    with closing(Connection(parsed, read_only=True)) as sql:
        if not sql.has_table("plugin_reloads"):
            return []
    with PluginStateStore(target) as store:
        return store.reloads(name, limit)


def _flags(rows: Iterable[tuple[object, ...]]) -> dict[str, PersistedFlag]:
    return {str(n): PersistedFlag(bool(e), None if r is None else str(r)) for n, e, r in rows}


def read_enabled_flags(target: str | Path) -> dict[str, PersistedFlag]:
    """The persisted enabled flags, without creating anything.

    A SQLite file that does not exist, or has no ``plugins`` table, holds none; it is
    opened read-only. A PostgreSQL URL is queried (the table may be absent there too).
    """
    parsed = Target.parse(target, kind="state store")
    if parsed.dialect is SQLITE and (parsed.path is None or not Path(parsed.path).is_file()):
        return {}
    with (
        closing(Connection(parsed, read_only=True)) as sql,
        sql.storage_errors(f"cannot read the plugin state store at {parsed.location}"),
    ):
        return _flags(sql.run(_FLAGS).rows) if sql.has_table("plugins") else {}
