"""A run's phases and reload attempts, and the engine taking a new operation mix mid-run
(no database: the engine's clients call a plain function)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime

import pytest
from rich.console import Console

from tether.hosts.workload import (
    BenchReport,
    BenchSettings,
    DirectOperation,
    Phase,
    PhaseLog,
    ReloadAttempt,
    SavedRun,
    html_report,
)
from tether.hosts.workload._engine import Engine, Plan
from tether.hosts.workload._stats import OperationStats

# --------------------------------------------------------------------------- phases


def test_one_phase_without_reloads_covers_the_run():
    log = PhaseLog("1.0.0", {"a": 1})
    (phase,) = log.phases(10.0, (500, 2))
    assert phase == Phase("1.0.0", 0.0, 10.0, 500, 2, {"a": 1})
    assert phase.tps == 50.0


def test_each_switch_ends_a_phase_with_the_counts_of_that_moment():
    log = PhaseLog("1.0.0", {"a": 1})
    log.switch("1.1.0", 4.0, (100, 0))
    log.set_weights({"a": 1, "b": 2})
    log.switch("1.0.0", 6.0, (180, 1))  # e.g. rolled back within its grace period
    phases = log.phases(10.0, (300, 1))
    assert [(p.version, p.start, p.end, p.transactions, p.errors) for p in phases] == [
        ("1.0.0", 0.0, 4.0, 100, 0),
        ("1.1.0", 4.0, 6.0, 80, 1),
        ("1.0.0", 6.0, 10.0, 120, 0),
    ]
    assert [p.weights for p in phases] == [{"a": 1}, {"a": 1, "b": 2}, {"a": 1, "b": 2}]
    assert sum(p.transactions for p in phases) == 300
    assert phases[1].to_json() == {
        "version": "1.1.0",
        "from_seconds": 4.0,
        "to_seconds": 6.0,
        "transactions": 80,
        "errors": 1,
        "tps": 40.0,
        "weights": {"a": 1, "b": 2},
    }


def test_a_switch_during_the_warmup_replaces_the_first_phases_version():
    log = PhaseLog("1.0.0", {"a": 1})
    log.switch("2.0.0", -0.5, (0, 0))
    log.set_weights({"b": 1})
    (phase,) = log.phases(3.0, (30, 0))
    assert (phase.version, phase.start, phase.transactions, phase.weights) == (
        "2.0.0",
        0.0,
        30,
        {"b": 1},
    )


@pytest.mark.parametrize(
    ("attempt", "line", "is_swap"),
    [
        (
            ReloadAttempt(3.2, "reloaded", "1.0.0", "1.1.0", duration=0.012, held=3),
            "at 3.20s: reloaded 1.0.0 -> 1.1.0 (12 ms, 3 calls held)",
            True,
        ),
        (
            ReloadAttempt(
                5.0, "rolled_back", "1.1.0", "1.2.0", "import", "SyntaxError at w.py:4", 0.004
            ),
            (
                "at 5.00s: rolled back: 1.2.0 failed at import, 1.1.0 kept (4 ms): "
                "SyntaxError at w.py:4"
            ),
            False,
        ),
        (
            ReloadAttempt(7.0, "rolled_back", "1.1.0", "1.2.0", "grace", "crashed", 0.002),
            "at 7.00s: rolled back: 1.2.0 failed at grace, 1.1.0 kept (2 ms): crashed",
            True,
        ),
        (
            ReloadAttempt(1.0, "reloaded", "1.0.0", "2.0.0", refused="execute_operation is def"),
            "at 1.00s: 2.0.0 refused by the bench, back to 1.0.0: execute_operation is def",
            True,
        ),
        (
            ReloadAttempt(2.0, "failed", "1.0.0", "2.0.0", "start", "both broke", 0.5),
            "at 2.00s: FAILED: 2.0.0 failed at start (500 ms): both broke",
            False,
        ),
    ],
    ids=["reloaded", "rolled-back", "grace", "refused", "failed"],
)
def test_an_attempt_reads_as_one_line(attempt, line, is_swap):
    assert attempt.describe() == line
    assert attempt.is_swap is is_swap


# --------------------------------------------------------------------------- the engine


class _Mixed:
    """An operation that records what it was asked; after ``switch_after`` calls it
    gives the engine a new mix (as a reload would), from the engine's own loop."""

    def __init__(self, switch_after: int) -> None:
        self.calls: Counter[str] = Counter()
        self.after_switch: Counter[str] = Counter()
        self.switch_after = switch_after
        self.engine: Engine | None = None
        self.lock = threading.Lock()
        self.switched = False

    async def run_async(self, db: object, op: str) -> None:
        self._count(op)
        await asyncio.sleep(0)

    def run_sync(self, db: object, op: str) -> None:
        self._count(op)

    def _count(self, op: str) -> None:
        with self.lock:
            self.calls[op] += 1
            if self.switched:
                self.after_switch[op] += 1
            elif sum(self.calls.values()) >= self.switch_after:
                self.switched = True
                assert self.engine is not None
                self.engine.set_weights({"old": 0, "new": 1})


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "threads"])
def test_clients_draw_from_new_weights_once_the_engine_has_them(is_async):
    fake = _Mixed(switch_after=100)
    engine = Engine(
        Plan(clients=3, transactions=600, seed=3),
        operation=DirectOperation(fake.run_async if is_async else fake.run_sync, is_async=is_async),
        weights={"old": 1},
    )
    fake.engine = engine
    result = asyncio.run(engine.run([None] * 3))
    # each client makes a new chooser at its next transaction; one already chosen runs
    assert fake.after_switch["old"] <= 3
    assert fake.after_switch["new"] > 0
    assert result.stats["new"].count == fake.calls["new"]  # a new operation is counted
    assert result.stats["old"].count + result.stats["new"].count == 600
    assert engine.collector.counted() == (600, 0)


# --------------------------------------------------------------------------- the report


def _report(phases: list[Phase], reloads: list[ReloadAttempt]) -> BenchReport:
    stats = {"write": OperationStats(), "read": OperationStats()}
    stats["write"].record({1000: 90})
    stats["read"].record({500: 30})
    return BenchReport(
        workload="ledger",
        workload_version="1.0.0",
        workload_origin="tests",
        driver="asyncpg",
        event_loop="asyncio",
        database="postgresql://localhost/x",
        embedded=False,
        data_directory=None,
        server_version="16.0",
        settings=BenchSettings(clients=2, duration=10.0),
        weights={"write": 1},
        operations=stats,
        elapsed=10.0,
        stop_reason="duration",
        started_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        phases=phases,
        reloads=reloads,
    )


PHASES = [
    Phase("1.0.0", 0.0, 4.0, 60, 0, {"write": 1}),
    Phase("2.0.0", 4.0, 10.0, 60, 0, {"write": 1, "read": 1}),
]
RELOADS = [
    ReloadAttempt(2.5, "rolled_back", "1.0.0", "2.0.0", "import", "SyntaxError: bad (w.py:3)"),
    ReloadAttempt(4.0, "reloaded", "1.0.0", "2.0.0", duration=0.01, held=2),
]


def test_the_json_report_has_phases_and_reloads_and_reads_back():
    data = _report(PHASES, RELOADS).to_json()
    assert [p["version"] for p in data["phases"]] == ["1.0.0", "2.0.0"]  # type: ignore[index]
    reloads = data["reloads"]
    assert [r["outcome"] for r in reloads] == ["rolled_back", "reloaded"]  # type: ignore[union-attr]
    assert reloads[0]["step"] == "import"  # type: ignore[index]
    assert reloads[0]["error"] == "SyntaxError: bad (w.py:3)"  # type: ignore[index]
    saved = SavedRun.from_json(data, source="test", label="A")
    assert [p["to_seconds"] for p in saved.phases] == [4.0, 10.0]
    assert [r["at_seconds"] for r in saved.reloads] == [2.5, 4.0]
    page = html_report([saved])
    assert '"phases":[{"version":"1.0.0"' in page
    assert '"outcome":"rolled_back"' in page


def test_a_report_without_phases_still_reads():
    data = _report([], []).to_json()
    del data["phases"], data["reloads"]
    saved = SavedRun.from_json(data, source="old.json", label="A")
    assert (saved.phases, saved.reloads) == ((), ())


def test_the_text_report_lists_each_reload_and_the_phases(tmp_path):
    path = tmp_path / "report.txt"
    with path.open("w", encoding="utf-8") as file:
        _report(PHASES, RELOADS).render(Console(file=file, width=120))
    text = path.read_text(encoding="utf-8")
    assert "reloads:" in text
    assert "at 2.50s: rolled back: 2.0.0 failed at import, 1.0.0 kept" in text
    assert "at 4.00s: reloaded 1.0.0 -> 2.0.0 (10 ms, 2 calls held)" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:2] in {"1 ", "2 "}]
    assert ["1", "1.0.0", "0.00s", "4.00s", "60", "0", "15.0"] in rows
    assert ["2", "2.0.0", "4.00s", "10.00s", "60", "0", "10.0"] in rows


def test_the_text_report_of_a_run_without_reloads_has_no_phases_table(tmp_path):
    path = tmp_path / "report.txt"
    with path.open("w", encoding="utf-8") as file:
        _report(PHASES[:1], []).render(Console(file=file, width=120))
    assert "reloads:" not in path.read_text(encoding="utf-8")
