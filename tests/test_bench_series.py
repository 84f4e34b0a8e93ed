"""The run over time (Series), saved reports read back (SavedRun) and their comparison:
pure parts, no database."""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from tether.hosts.workload import (
    BenchReport,
    BenchSettings,
    DirectOperation,
    Plan,
    ReportFileError,
    SavedRun,
    Series,
    Tick,
    read_run,
    render_comparison,
)
from tether.hosts.workload._compare import differing_settings
from tether.hosts.workload._engine import Engine
from tether.hosts.workload._series import percentiles, quantized
from tether.hosts.workload._stats import OperationStats, OperationTick, interval_percentile


def tick(slot: int, ops: dict[str, tuple[int, Counter[int]]], *, tick: float = 0.5) -> Tick:
    """The tick of ``slot`` (ending at ``slot * tick`` s) with per-operation (errors,
    latencies): successes are the latencies' count."""
    operations = {
        name: OperationTick(sum(lat.values()), errors, lat) for name, (errors, lat) in ops.items()
    }
    merged: Counter[int] = Counter()
    for done in operations.values():
        merged.update(done.latencies)
    return Tick(
        (slot - 1) * tick,
        slot * tick,
        sum(d.successes for d in operations.values()),
        sum(d.errors for d in operations.values()),
        merged,
        0,
        0,
        slot=slot,
        operations=operations,
    )


# --------------------------------------------------------------------------- Series


def test_each_tick_is_a_point_with_its_own_counts_and_percentiles():
    series = Series(["read", "write"], tick=0.5)
    series(tick(1, {"read": (0, Counter({100: 98, 5000: 2})), "write": (3, Counter({900: 4}))}))
    series(tick(2, {"read": (1, Counter({200: 10}))}))
    data = series.result()
    assert data.time == (0.5, 1.0)
    assert data.slots_per_point == 1
    read, write = data.operations["read"], data.operations["write"]
    assert read.successes == (100, 10)
    assert read.errors == (0, 1)
    assert read.p50 == (0.1, 0.2)
    assert read.p99 == (5.0, 0.2)
    assert write.successes == (4, 0)
    assert write.errors == (3, 0)
    assert write.p50 == (0.9, None)  # no successes: no percentile, not a zero
    assert data.total.successes == (104, 10)
    assert data.total.errors == (3, 1)
    assert data.total.p99 == (5.0, 0.2)


def test_warmup_ticks_are_left_out_and_the_first_point_starts_at_zero():
    series = Series(["op"], tick=0.5)
    series(Tick(-1.0, -0.5, 0, 0, Counter(), 0, 0, slot=1))
    series(Tick(-0.5, 0.25, 7, 0, Counter({10: 7}), 7, 0, slot=2,
                operations={"op": OperationTick(7, 0, Counter({10: 7}))}))  # fmt: skip
    data = series.result()
    assert data.time == (0.25,)
    assert data.operations["op"].successes == (7,)


def test_ticks_of_several_processes_in_one_slot_are_one_point():
    """Two workers tick the same slots: a point holds both, its percentiles from the
    latencies of both (not an average of their percentiles)."""
    series = Series(["op"], tick=0.5)
    for slot in range(1, 4):
        series(tick(slot, {"op": (0, Counter({1000: 60}))}))  # worker 1: fast
        series(tick(slot, {"op": (1, Counter({9000: 40}))}))  # worker 2: slow
    data = series.result()
    assert data.operations["op"].successes == (100, 100, 100)
    assert data.operations["op"].errors == (1, 1, 1)
    assert data.operations["op"].p50 == (1.0, 1.0, 1.0)
    assert data.operations["op"].p99 == (9.0, 9.0, 9.0)


def test_a_late_tick_joins_its_closed_point():
    series = Series(["op"], tick=0.5)
    for slot in range(1, 12):
        series(tick(slot, {"op": (0, Counter({1000: 10}))}))
    series(tick(2, {"op": (2, Counter({50_000: 10}))}))  # 9 slots late
    data = series.result()
    assert len(data.time) == 11
    assert data.operations["op"].successes[1] == 20
    assert data.operations["op"].errors[1] == 2
    assert data.operations["op"].p99[1] == pytest.approx(50.0, rel=0.01)
    assert sum(data.total.successes) == 120


def test_a_long_run_is_coalesced_to_at_most_max_points_and_keeps_every_count():
    rng = random.Random(7)
    raw: dict[int, Counter[int]] = {}
    series = Series(["op"], tick=0.5, max_points=50)
    for slot in range(1, 1001):
        latencies = Counter(rng.randint(100, 80_000) for _ in range(rng.randint(0, 30)))
        raw[slot] = latencies
        series(tick(slot, {"op": (slot % 3, latencies)}))
    data = series.result()
    assert len(data.time) <= 50
    assert data.slots_per_point == 32  # 1,000 slots: 1, 2, 4 ... until <= 50 points
    assert list(data.time) == sorted(data.time)
    assert sum(data.operations["op"].successes) == sum(sum(c.values()) for c in raw.values())
    assert sum(data.operations["op"].errors) == sum(slot % 3 for slot in raw)
    for index, end in enumerate(data.time):
        slots = [s for s in raw if s // data.slots_per_point == index and s * 0.5 <= end]
        exact: Counter[int] = Counter()
        for slot in slots:
            exact.update(raw[slot])
        assert data.operations["op"].successes[index] == sum(exact.values())
        p50, p99 = percentiles(exact)
        assert data.operations["op"].p50[index] == pytest.approx(p50, rel=0.01)
        assert data.operations["op"].p99[index] == pytest.approx(p99, rel=0.01)


def test_a_point_of_many_distinct_latencies_is_quantized_within_one_percent():
    """Four workers' ticks of one slot, 20,000 distinct latencies: more than a point
    keeps raw, so it quantizes them; its percentiles stay within 1% of the exact ones."""
    rng = random.Random(11)
    series = Series(["op"], tick=0.5)
    exact: Counter[int] = Counter()
    for _ in range(4):
        latencies = Counter(rng.randint(50, 2_000_000) for _ in range(5_000))
        exact.update(latencies)
        series(tick(1, {"op": (0, latencies)}))
    data = series.result()
    p50, p99 = percentiles(exact)
    assert data.operations["op"].successes == (20_000,)
    assert data.operations["op"].p50[0] == pytest.approx(p50, rel=0.01)
    assert data.operations["op"].p99[0] == pytest.approx(p99, rel=0.01)
    assert data.total.p99[0] == pytest.approx(p99, rel=0.01)


@given(st.lists(st.integers(min_value=0, max_value=3_600_000_000), min_size=1, max_size=50))
def test_quantized_latencies_stay_within_one_percent(values):
    kept = quantized(Counter(values))
    assert sum(kept.values()) == len(values)
    for value in values:
        closest = min(kept, key=lambda k: abs(k - value))
        assert abs(closest - value) <= max(value / 128, 0)


@given(st.dictionaries(st.integers(1, 10**7), st.integers(1, 50), min_size=1, max_size=40))
def test_series_percentiles_agree_with_the_progress_line(latencies):
    p50, p99 = percentiles(latencies)
    assert p50 == round(interval_percentile(latencies, 50.0), 3)
    assert p99 == round(interval_percentile(latencies, 99.0), 3)


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "threads"])
def test_engine_ticks_keep_one_schedule_and_the_series_sums_to_the_run(is_async):
    calls: Counter[str] = Counter()

    async def run_async(db: object, op: str) -> None:
        calls[op] += 1
        await asyncio.sleep(0.001)
        if op == "fail":
            raise KeyError(op)

    def run_sync(db: object, op: str) -> None:
        calls[op] += 1
        if op == "fail":
            raise KeyError(op)

    ticks: list[Tick] = []
    series = Series(["ok", "fail"], tick=0.05)

    def both(t: Tick) -> None:
        ticks.append(t)
        series(t)

    engine = Engine(
        Plan(clients=2, transactions=400, tick=0.05),
        operation=DirectOperation(run_async if is_async else run_sync, is_async=is_async),
        weights={"ok": 3, "fail": 1},
        on_tick=both,
    )
    result = asyncio.run(engine.run([None, None]))
    slots = [t.slot for t in ticks]
    assert slots == sorted(slots)
    assert len(set(slots[:-1])) == len(slots) - 1  # one tick a slot; the last may share
    data = series.result()
    assert sum(data.operations["ok"].successes) == result.stats["ok"].count
    assert sum(data.operations["fail"].errors) == result.stats["fail"].error_count
    assert sum(data.total.successes) + sum(data.total.errors) == 400
    assert all(set(t.operations) <= {"ok", "fail"} for t in ticks)


# --------------------------------------------------------------------------- saved runs


def _report(*, tps_scale: int = 1, clients: int = 4, series: bool = True) -> BenchReport:
    ops = {"read": OperationStats(), "write": OperationStats()}
    ops["read"].record(Counter({1000: 300 * tps_scale, 20_000: 3}))
    ops["write"].record(Counter({5000: 100 * tps_scale}))
    ops["write"].record_error("ValueError", "no <b>such</b> row", 1.5)
    data = Series(ops, tick=0.5)
    for slot in range(1, 21):
        data(tick(slot, {"read": (0, Counter({1000: 15 * tps_scale})),
                         "write": (slot == 3, Counter({5000: 5 * tps_scale}))}))  # fmt: skip
    return BenchReport(
        workload="ledger", workload_version="1.0.0", workload_origin="cli",
        driver="asyncpg", event_loop="uvloop", database="postgresql://127.0.0.1/x",
        embedded=False, data_directory=None, server_version="16.4",
        settings=BenchSettings(clients=clients, duration=10.0, seed=1),
        weights={"read": 3, "write": 1}, operations=ops, elapsed=10.0,
        stop_reason="duration", started_at=datetime(2026, 12, 1, tzinfo=UTC),
        metrics={"calls": 7, "ratio": float("nan")},
        series=data.result() if series else None,
    )  # fmt: skip


def test_a_report_reads_back_with_its_figures_histograms_and_series():
    run = SavedRun.of(_report())
    assert run.workload == "ledger"
    assert (run.transactions, run.errors) == (303 + 100, 1)
    assert run.operations["read"].count == 303
    assert sum(run.operations["read"].bins.values()) == 303
    assert sum(run.operations["write"].bins.values()) == 100
    assert run.series is not None
    assert sum(run.series.operations["read"].successes) == 300
    assert run.setting("clients") == "4"
    assert run.setting("duration") == "10s"
    assert run.distinct_errors[0]["message"] == "no <b>such</b> row"


def test_a_report_without_a_series_still_reads(tmp_path: Path):
    path = tmp_path / "old.json"
    data = _report(series=False).to_json()
    del data["series"]
    path.write_text(json.dumps(data), encoding="utf-8")
    assert read_run(path, label="A").series is None


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda d: "{not json", ":1: not JSON"),
        (lambda d: [1, 2], "the report: expected an object, found list"),
        (
            lambda d: {**d, "totals": {**d["totals"], "tps": "fast"}},
            "totals.tps: expected a number",
        ),
        (lambda d: {k: v for k, v in d.items() if k != "format"}, "format: expected"),
        (
            lambda d: {**d, "operations": {"read": {**d["operations"]["read"], "histogram": "x"}}},
            "operations.read.histogram: not an encoded HdrHistogram",
        ),
        (
            lambda d: {**d, "series": {**d["series"], "time": d["series"]["time"][:-1]}},
            "series.total.successes: expected 19 values",
        ),
    ],
    ids=["not-json", "not-an-object", "bad-number", "no-format", "bad-histogram", "short-series"],
)
def test_a_file_that_is_not_a_bench_report_is_named_with_its_field(tmp_path: Path, damage, named):
    path = tmp_path / "run.json"
    damaged = damage(_report().to_json())
    path.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged), encoding="utf-8")
    with pytest.raises(ReportFileError) as caught:
        read_run(path, label="A")
    assert str(path) in str(caught.value)
    assert named in str(caught.value)
    assert caught.value.hint is not None
    assert "--format json" in caught.value.hint


# --------------------------------------------------------------------------- comparison


def test_only_settings_that_differ_are_listed_and_results_are_not_settings():
    a = SavedRun.of(_report(clients=4), label="A")
    b = SavedRun.of(_report(clients=8), label="B")
    assert differing_settings(a, b) == [("clients", "4", "8")]
    assert differing_settings(a, a) == []


def test_the_comparison_prints_both_runs_and_their_ratios():
    a = SavedRun.from_json(_report().to_json(), source="a.json", label="A")
    data = _report(tps_scale=2, clients=8).to_json()
    del data["operations"]["write"]  # an operation only A has
    b = SavedRun.from_json(data, source="b.json", label="B")
    stream = io.StringIO()
    render_comparison(Console(file=stream, width=100, color_system=None), a, b)
    text = stream.getvalue()
    assert "A: a.json (ledger 1.0.0" in text
    assert "B: b.json" in text
    assert "settings that differ" in text
    assert "clients" in text
    tps = next(line for line in text.splitlines() if line.split()[:2] == ["total", "tps"])
    expected = f"{b.tps / a.tps:.2f}x"
    assert tps.split()[-1] == expected
    assert expected != "1.00x"
    write = next(line for line in text.splitlines() if line.split()[:1] == ["write"])
    assert write.split()[-2:] == ["-", "-"]  # B has no write: no figure, no ratio
    assert f"B ran at {expected} the throughput" in text
