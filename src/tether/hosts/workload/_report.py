"""The final report of a run: every figure as JSON, or a table for people."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tether import __version__
from tether.hosts.workload._phases import Phase, ReloadAttempt
from tether.hosts.workload._series import SeriesData
from tether.hosts.workload._settings import BenchSettings
from tether.hosts.workload._stats import (
    DistinctError,
    LatencySummary,
    OperationStats,
    new_histogram,
)

__all__ = ["EXIT_ERROR_RATE", "REPORT_FORMAT", "BenchReport"]

EXIT_ERROR_RATE = 3
REPORT_FORMAT = 1
_COLUMNS = (
    "operation",
    "weight",
    "count",
    "errors",
    "tps",
    "p50",
    "p90",
    "p95",
    "p99",
    "p99.9",
    "max",
)
_PLAIN_WIDTH = 160  # not a terminal: room for every column


@dataclass(slots=True)
class BenchReport:
    """What a run did. ``operations`` maps each operation (weight order) to its results;
    ``weights`` are those of the start (each phase has its own); ``phases`` say which
    version of the workload ran when, ``reloads`` each reload attempt."""

    workload: str
    workload_version: str
    workload_origin: str
    driver: str
    event_loop: str
    database: str
    embedded: bool
    data_directory: str | None
    server_version: str
    settings: BenchSettings
    weights: dict[str, int]
    operations: dict[str, OperationStats]
    elapsed: float
    stop_reason: str
    started_at: datetime
    info: dict[str, object] = field(default_factory=dict)
    metrics: dict[str, object] = field(default_factory=dict)
    setup_seconds: float | None = None
    series: SeriesData | None = None
    phases: list[Phase] = field(default_factory=list)
    reloads: list[ReloadAttempt] = field(default_factory=list)
    engine: str = "per-client"  # how the clients ran: multiplexed or per-client

    # ------------------------------------------------------------------ figures

    @property
    def transactions(self) -> int:
        return sum(s.count for s in self.operations.values())

    @property
    def errors(self) -> int:
        return sum(s.error_count for s in self.operations.values())

    @property
    def error_rate(self) -> float:
        attempts = self.transactions + self.errors
        return self.errors / attempts if attempts else 0.0

    @property
    def tps(self) -> float:
        return self.transactions / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == "interrupted"

    @property
    def error_rate_exceeded(self) -> bool:
        limit = self.settings.max_error_rate
        return limit is not None and self.error_rate > limit

    def distinct_errors(self) -> list[DistinctError]:
        """Each distinct error of the run (type and message), the earliest first, with
        the operation it first happened in and its count over every operation."""
        merged: dict[tuple[str, str], DistinctError] = {}
        for name, stats in self.operations.items():
            for error in stats.distinct_errors(name):
                key = (error.type, error.message)
                seen = merged.get(key)
                if seen is None:
                    merged[key] = error
                    continue
                first = seen if seen.first <= error.first else error
                merged[key] = DistinctError(
                    error.type, error.message, first.operation, seen.count + error.count,
                    first.first,
                )  # fmt: skip
        return sorted(merged.values(), key=lambda e: e.first)

    def overall(self) -> OperationStats:
        total = OperationStats(histogram=new_histogram())
        for stats in self.operations.values():
            total.merge(stats)
        return total

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, object]:
        """The whole report as plain data (the schema is in docs/workloads.md)."""
        s = self.settings
        overall = self.overall()
        return {
            "format": REPORT_FORMAT,
            "tether_version": __version__,
            "started_at": self.started_at.isoformat(),
            "workload": {
                "name": self.workload,
                "version": self.workload_version,
                "origin": self.workload_origin,
                "driver": self.driver,
                "engine": self.engine,
                "event_loop": self.event_loop,
                "info": self.info,
            },
            "database": {
                "dsn": self.database,
                "embedded": self.embedded,
                "data_directory": self.data_directory,
                "server_version": self.server_version,
            },
            "settings": {
                "clients": s.clients,
                "processes": s.processes,
                "engine": s.engine,
                "duration": s.duration,
                "transactions": s.transactions,
                "rate": s.rate,
                "warmup": s.warmup,
                "seed": s.seed,
                "setup": s.setup,
                "cleanup": s.cleanup,
                "max_error_rate": s.max_error_rate,
            },
            "setup_seconds": _round(self.setup_seconds),
            "elapsed": round(self.elapsed, 6),
            "stop_reason": self.stop_reason,
            "interrupted": self.interrupted,
            "totals": {
                "transactions": self.transactions,
                "errors": self.errors,
                "error_rate": round(self.error_rate, 6),
                "tps": round(self.tps, 3),
                "latency_ms": LatencySummary.of(overall.histogram).to_json(),
                "errors_by_type": dict(sorted(overall.errors.items())),
                "distinct_errors": [e.to_json() for e in self.distinct_errors()],
            },
            "operations": {
                name: self._operation(name, stats) for name, stats in self.operations.items()
            },
            "metrics": self.metrics,
            "error_rate_exceeded": self.error_rate_exceeded,
            "series": None if self.series is None else self.series.to_json(),
            "phases": [phase.to_json() for phase in self.phases],
            "reloads": [attempt.to_json() for attempt in self.reloads],
        }

    def _operation(self, name: str, stats: OperationStats) -> dict[str, object]:
        attempts = stats.count + stats.error_count
        histogram, errors, _ = stats.encode()
        return {
            "weight": self.weights.get(name, 0),
            "count": stats.count,
            "errors": stats.error_count,
            "errors_by_type": dict(sorted(errors.items())),
            "distinct_errors": [e.to_json() for e in stats.distinct_errors(name)],
            "error_rate": round(stats.error_count / attempts, 6) if attempts else 0.0,
            "tps": round(stats.count / self.elapsed, 3) if self.elapsed > 0 else 0.0,
            "latency_ms": LatencySummary.of(stats.histogram).to_json(),
            "histogram": histogram,
        }

    # ------------------------------------------------------------------ text

    def render(self, console: Console) -> None:
        """A summary and a table of operations, as pgbench-minded people expect."""
        s = self.settings
        length = f"{s.transactions} transactions" if s.transactions else f"{s.duration:g}s"
        pace = f", rate {s.rate:g}/s" if s.rate else ""
        console.print(
            f"[bold]{self.workload}[/] {self.workload_version} ({self.driver}, {self.engine}, "
            f"{self.event_loop}) "
            f"on {self.database}",
            highlight=False,
        )
        console.print(
            f"clients {s.clients}, processes {s.processes}, {length}{pace}, warmup {s.warmup:g}s, "
            f"seed {s.seed}; ran {self.elapsed:.2f}s ({self.stop_reason})",
            highlight=False,
        )
        rows = [
            [name, str(self.weights.get(name, 0)), *_cells(stats, self.elapsed)]
            for name, stats in self.operations.items()
            if self.weights.get(name, 0) or stats.count or stats.error_count
        ]
        rows.append(["[bold]total[/]", "", *_cells(self.overall(), self.elapsed)])
        if not console.is_terminal:  # a file or a pipe: wide enough for every column
            console = Console(file=console.file, width=_PLAIN_WIDTH, highlight=False)
        console.print(_fitting_table(console, rows))
        distinct = self.distinct_errors()
        if distinct:
            console.print("errors (each distinct one, the earliest first):", highlight=False)
            for error in distinct:
                console.print(
                    f"  {error.count} x {error.type}: {error.message} "
                    f"(first in {error.operation}, at {error.first:.2f}s)",
                    highlight=False,
                    markup=False,
                )
        console.print(
            f"[bold]tps {self.tps:.1f}[/], {self.transactions} transactions, {self.errors} errors "
            f"({self.error_rate:.2%})",
            highlight=False,
        )
        if self.metrics:
            console.print(
                "metrics: " + ", ".join(f"{k}={v}" for k, v in self.metrics.items()),
                highlight=False,
            )
        if self.reloads:
            self._render_reloads(console)

    def _render_reloads(self, console: Console) -> None:
        """The reload attempts, one line each, and the phases as a table."""
        console.print("reloads:", highlight=False)
        for attempt in self.reloads:
            console.print(f"  {attempt.describe()}", highlight=False, markup=False)
        table = Table(box=None, pad_edge=False, title="phases", title_justify="right")
        for column in ("phase", "version", "from", "to", "transactions", "errors", "tps"):
            table.add_column(column, justify="left" if column == "version" else "right")
        for number, phase in enumerate(self.phases, 1):
            table.add_row(
                str(number), Text(phase.version), f"{phase.start:.2f}s", f"{phase.end:.2f}s",
                str(phase.transactions), str(phase.errors), f"{phase.tps:.1f}",
            )  # fmt: skip
        console.print(table)


_DROP_ORDER = ("p90", "p99.9", "weight", "max", "p50", "errors")  # the last are kept longest
_NAME_ROOM = 12  # the least an operation's name gets before columns go (longer ones fold)


def _fitting_table(console: Console, rows: list[list[str]]) -> Table:
    """The table of ``rows`` with as many columns as fit the console's width: columns
    are dropped (``_DROP_ORDER``) rather than any figure cut; operation, count, tps,
    p95 and p99 are always there, and a name longer than the room left folds."""
    widest = {
        column: max(len(column), *(Text.from_markup(row[i]).cell_len for row in rows))
        for i, column in enumerate(_COLUMNS)
    }
    name_room = min(widest["operation"], _NAME_ROOM)
    shown = list(_COLUMNS)
    while True:
        figures = [c for c in shown if c != "operation"]
        needed = name_room + sum(widest[c] for c in figures) + 2 * len(figures)
        dropping = next((c for c in _DROP_ORDER if c in shown), None)
        if dropping is None or needed <= console.width:
            break
        shown.remove(dropping)
    table = Table(box=None, pad_edge=False, title="latency in ms", title_justify="right")
    for column in shown:
        if column == "operation":
            table.add_column(column, overflow="fold", min_width=name_room)
        else:
            table.add_column(column, justify="right", no_wrap=True, min_width=widest[column])
    for row in rows:
        table.add_row(*(cell for column, cell in zip(_COLUMNS, row, strict=True)
                        if column in shown))  # fmt: skip
    return table


def _cells(stats: OperationStats, elapsed: float) -> list[str]:
    summary = LatencySummary.of(stats.histogram)
    tps = stats.count / elapsed if elapsed > 0 else 0.0
    p = summary.percentiles
    return [
        str(stats.count),
        str(stats.error_count),
        f"{tps:.1f}",
        *(f"{p[k]:.3f}" for k in ("p50", "p90", "p95", "p99", "p99.9")),
        f"{summary.max:.3f}",
    ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
