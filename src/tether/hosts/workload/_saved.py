"""A bench report read back: from a JSON file (``--compare``), or from this run.

:class:`SavedRun` is what the comparison and the HTML report read: the figures of
the JSON report (docs/workloads.md), checked on the way in, so that a file that is
not a bench report, or is cut short, is one error naming the file and the field.
A report without a ``series`` (written before it existed) reads too; its charts
over time are then left out. So does one without ``phases`` and ``reloads``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from tether.hosts.workload._errors import ReportFileError
from tether.hosts.workload._report import BenchReport
from tether.hosts.workload._series import OperationSeries, SeriesData

__all__ = ["BINS_PER_DECADE", "LATENCY_KEYS", "SavedOperation", "SavedRun", "read_run"]

BINS_PER_DECADE = 20  # latency histogram bins: each 10^(1/20) = 1.122 times the last
LATENCY_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max")
_PLAIN_SECONDS = 100  # from here on, whole seconds
_HINT = "give a file written by `tether bench --format json` (the whole of standard output)"


class _FieldError(ValueError):
    """A field of the report is missing or has the wrong type."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")


def _expected(where: str, expected: str, found: object) -> _FieldError:
    shown = "nothing" if found is _MISSING else type(found).__name__
    return _FieldError(where, f"expected {expected}, found {shown}")


_MISSING = object()


def _mapping(data: object, where: str) -> Mapping[str, object]:
    if not isinstance(data, Mapping):
        raise _expected(where, "an object", data)
    return data


def _number(data: Mapping[str, object], key: str, where: str) -> float:
    value = data.get(key, _MISSING)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _expected(f"{where}.{key}", "a number", value)
    return float(value)


def _text(data: Mapping[str, object], key: str, where: str) -> str:
    value = data.get(key, _MISSING)
    if not isinstance(value, str):
        raise _expected(f"{where}.{key}", "a string", value)
    return value


def _numbers(value: object, where: str, *, optional: bool = False) -> tuple[float | None, ...]:
    if not isinstance(value, list):
        raise _expected(where, "a list", value)
    for item in value:
        if item is None and optional:
            continue
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise _expected(where, "a list of numbers", value)
    return tuple(None if v is None else float(v) for v in value)


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class SavedOperation:
    """One operation of a saved run: its figures and latency histogram (``bins``:
    ``{bin: count}``, bin ``i`` holding latencies from ``10^(i/BINS_PER_DECADE)`` µs)."""

    name: str
    weight: int
    count: int
    errors: int
    tps: float
    latency: dict[str, float]
    bins: dict[int, int]


@dataclass(frozen=True, slots=True)
class SavedRun:
    """A bench report's figures. ``source`` says where it came from; ``label`` names it
    in a comparison (``A``, ``B``)."""

    source: str
    label: str
    facts: tuple[tuple[str, str, bool], ...]  # (name, shown value, is a setting)
    workload: str
    tps: float
    transactions: int
    errors: int
    error_rate: float
    elapsed: float
    latency: dict[str, float]
    operations: dict[str, SavedOperation]
    distinct_errors: tuple[dict[str, object], ...]
    series: SeriesData | None
    info: dict[str, object]
    metrics: dict[str, object]
    phases: tuple[dict[str, object], ...] = ()
    reloads: tuple[dict[str, object], ...] = ()

    @classmethod
    def from_json(cls, data: object, *, source: str, label: str) -> SavedRun:
        """Read a JSON report (as :meth:`BenchReport.to_json` makes it)."""
        try:
            return _read(_mapping(data, "the report"), source=source, label=label)
        except _FieldError as exc:
            raise ReportFileError(
                f"{source} is not a bench report: {exc}", path=source, hint=_HINT
            ) from None

    @classmethod
    def of(cls, report: BenchReport, *, label: str = "A") -> SavedRun:
        """This run's report, read as a saved one would be."""
        return cls.from_json(report.to_json(), source="this run", label=label)

    def setting(self, name: str) -> str | None:
        return next((shown for key, shown, _ in self.facts if key == name), None)


def read_run(path: Path, *, label: str) -> SavedRun:
    """Read the JSON report at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportFileError(f"cannot read {path}: {exc}", path=path, hint=_HINT) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportFileError(
            f"{path}:{exc.lineno}: not JSON ({exc.msg}, column {exc.colno})", path=path, hint=_HINT
        ) from None
    return SavedRun.from_json(data, source=str(path), label=label)


def _read(data: Mapping[str, object], *, source: str, label: str) -> SavedRun:
    if data.get("format", _MISSING) is _MISSING:
        raise _expected("format", "the report's format (1)", _MISSING)
    workload = _mapping(data.get("workload", _MISSING), "workload")
    totals = _mapping(data.get("totals", _MISSING), "totals")
    operations = _mapping(data.get("operations", _MISSING), "operations")
    distinct = totals.get("distinct_errors", [])
    if not isinstance(distinct, list):
        raise _expected("totals.distinct_errors", "a list", distinct)
    return SavedRun(
        source=source,
        label=label,
        facts=_facts(data),
        workload=_text(workload, "name", "workload"),
        tps=_number(totals, "tps", "totals"),
        transactions=int(_number(totals, "transactions", "totals")),
        errors=int(_number(totals, "errors", "totals")),
        error_rate=_number(totals, "error_rate", "totals"),
        elapsed=_number(data, "elapsed", "the report"),
        latency=_latency(totals, "totals"),
        operations={
            name: _operation(name, _mapping(value, f"operations.{name}"))
            for name, value in operations.items()
        },
        distinct_errors=tuple(dict(_mapping(e, "totals.distinct_errors")) for e in distinct),
        series=_series(data.get("series")),
        info=dict(_mapping(workload.get("info", {}), "workload.info")),
        metrics=dict(_mapping(data.get("metrics", {}), "metrics")),
        phases=_records(data.get("phases", []), "phases", _PHASE_NUMBERS),
        reloads=_records(data.get("reloads", []), "reloads", _RELOAD_NUMBERS),
    )


_PHASE_NUMBERS = ("from_seconds", "to_seconds", "transactions", "errors", "tps")
_RELOAD_NUMBERS = ("at_seconds", "duration_seconds", "held", "rejected")


def _records(data: object, where: str, numbers: tuple[str, ...]) -> tuple[dict[str, object], ...]:
    """A list of objects (phases, reloads), each with the given number fields."""
    if not isinstance(data, list):
        raise _expected(where, "a list", data)
    found = []
    for index, item in enumerate(data):
        record = _mapping(item, f"{where}[{index}]")
        for key in numbers:
            _number(record, key, f"{where}[{index}]")
        found.append(dict(record))
    return tuple(found)


def _latency(data: Mapping[str, object], where: str) -> dict[str, float]:
    latency = _mapping(data.get("latency_ms", _MISSING), f"{where}.latency_ms")
    return {key: _number(latency, key, f"{where}.latency_ms") for key in LATENCY_KEYS}


def _operation(name: str, data: Mapping[str, object]) -> SavedOperation:
    where = f"operations.{name}"
    histogram = data.get("histogram")
    return SavedOperation(
        name=name,
        weight=int(_number(data, "weight", where)),
        count=int(_number(data, "count", where)),
        errors=int(_number(data, "errors", where)),
        tps=_number(data, "tps", where),
        latency=_latency(data, where),
        bins=_bins(histogram, f"{where}.histogram") if histogram else {},
    )


def _bins(encoded: object, where: str) -> dict[int, int]:
    """The latency counts of an encoded HdrHistogram, in logarithmic bins."""
    if not isinstance(encoded, str):
        raise _expected(where, "an encoded HdrHistogram (a string)", encoded)
    try:
        histogram = HdrHistogram.decode(encoded.encode("ascii"))
    except Exception:  # hdrh raises builtin errors and its own on bytes it cannot read
        histogram = None
    if histogram is None:
        raise _FieldError(where, "not an encoded HdrHistogram (base64 of its compressed form)")
    bins: dict[int, int] = {}
    counts = histogram.counts  # read directly: hdrh's iterators take 0.15 s a histogram
    for index in range(histogram.counts_len):
        count = counts[index]
        if count:
            value = histogram.get_highest_equivalent_value(histogram.get_value_from_index(index))
            place = math.floor(math.log10(max(1, value)) * BINS_PER_DECADE + 1e-9)
            bins[place] = bins.get(place, 0) + int(count)
    return bins


def _series(data: object) -> SeriesData | None:
    if data is None:
        return None
    series = _mapping(data, "series")
    time = _numbers(series.get("time", _MISSING), "series.time")
    operations = _mapping(series.get("operations", _MISSING), "series.operations")
    return SeriesData(
        tick=_number(series, "tick", "series"),
        slots_per_point=int(_number(series, "slots_per_point", "series")),
        time=tuple(t or 0.0 for t in time),
        total=_columns(series.get("total", _MISSING), "series.total", len(time)),
        operations={
            name: _columns(value, f"series.operations.{name}", len(time))
            for name, value in operations.items()
        },
    )


def _columns(data: object, where: str, length: int) -> OperationSeries:
    columns = _mapping(data, where)
    found = {
        key: _numbers(columns.get(key, _MISSING), f"{where}.{key}", optional=key.endswith("_ms"))
        for key in ("successes", "errors", "p50_ms", "p99_ms")
    }
    for key, values in found.items():
        if len(values) != length:
            raise _expected(f"{where}.{key}", f"{length} values (as series.time)", values)
    return OperationSeries(
        successes=tuple(int(v or 0) for v in found["successes"]),
        errors=tuple(int(v or 0) for v in found["errors"]),
        p50=found["p50_ms"],
        p99=found["p99_ms"],
    )


# --------------------------------------------------------------------------- facts


def _facts(data: Mapping[str, object]) -> tuple[tuple[str, str, bool], ...]:
    """What the run was, as (name, shown value, is a setting): the settings first."""
    workload = _mapping(data.get("workload", {}), "workload")
    database = _mapping(data.get("database", {}), "database")
    settings = _mapping(data.get("settings", {}), "settings")
    shown: list[tuple[str, str, bool]] = [
        ("workload", f"{workload.get('name', '?')} {workload.get('version', '')}".strip(), True),
        ("driver", _shown(workload.get("driver")), True),
        ("event loop", _shown(workload.get("event_loop")), True),
        ("database", _shown(database.get("dsn")), True),
        ("server", _shown(database.get("server_version")), True),
        ("tether", _shown(data.get("tether_version")), True),
    ]
    for key, value in settings.items():
        shown.append((key.replace("_", " "), _setting(key, value), True))
    shown += [
        ("started at", _shown(data.get("started_at")), False),
        ("measured", _seconds(data.get("elapsed")), False),
        ("stopped by", _shown(data.get("stop_reason")), False),
        ("setup took", _seconds(data.get("setup_seconds")), False),
    ]
    return tuple(shown)


def _setting(key: str, value: object) -> str:
    if value is None:
        return "-"
    if key in {"duration", "warmup"}:
        return _seconds(value)
    if key == "max_error_rate" and isinstance(value, int | float):
        return f"{value:.2%}"
    if key == "rate" and isinstance(value, int | float):
        return f"{value:g}/s"
    return _shown(value)


def _seconds(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.3g}s" if value < _PLAIN_SECONDS else f"{value:,.0f}s"


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)
