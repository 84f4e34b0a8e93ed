"""The workload host's pure parts and its client loop, without a database."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tether import PluginHandle, TetherConfig, load_config
from tether._gate import Gate
from tether.errors import ConfigError
from tether.hosts.workload import (
    BenchConfig,
    BenchReport,
    BenchSection,
    BenchSettings,
    DatabaseUnavailableError,
    DirectOperation,
    WorkloadConfigError,
    WorkloadSpec,
    intended_start_ns,
    mask_dsn,
    plans_for,
    process_rates,
    resolve_weights,
    split_evenly,
)
from tether.hosts.workload._database import describe_connect_error
from tether.hosts.workload._engine import Engine, Plan, Tick
from tether.hosts.workload._stats import (
    HIGHEST_US,
    Collector,
    LatencySummary,
    OperationStats,
    new_histogram,
    record_counts,
)
from tether.hosts.workload._weights import check_default_weights, make_chooser
from tether.hosts.workload._workers import merge_metrics

DEFAULTS = {"insert": 30, "select": 60, "update": 10}


# --------------------------------------------------------------------------- pacing


def test_intended_starts_are_evenly_spaced_from_the_start():
    starts = [intended_start_ns(k, start_ns=1_000, rate=4.0) for k in range(5)]
    assert starts == [1_000, 250_001_000, 500_001_000, 750_001_000, 1_000_001_000]


def test_a_phase_shifts_the_schedule_by_part_of_an_interval():
    assert intended_start_ns(0, start_ns=0, rate=10.0, phase=0.5) == 50_000_000


@pytest.mark.parametrize("processes", [2, 3, 4])
def test_equal_processes_interleave_into_exactly_the_global_schedule(processes):
    rate = 120.0
    shares = process_rates(rate, [2] * processes)
    merged = sorted(
        intended_start_ns(k, start_ns=0, rate=share, phase=phase)
        for share, phase in shares
        for k in range(10)
    )
    expected = [intended_start_ns(k, start_ns=0, rate=rate) for k in range(10 * processes)]
    assert all(abs(a - b) <= 1 for a, b in zip(merged, expected, strict=True))


def test_process_rates_share_in_proportion_to_clients():
    shares = process_rates(90.0, [2, 1])
    assert [round(r, 6) for r, _ in shares] == [60.0, 30.0]
    assert sum(r for r, _ in shares) == pytest.approx(90.0)


@pytest.mark.parametrize(("total", "parts"), [(10, 3), (7, 7), (100, 1), (5, 2)])
def test_split_evenly_sums_and_differs_by_at_most_one(total, parts):
    pieces = split_evenly(total, parts)
    assert sum(pieces) == total
    assert max(pieces) - min(pieces) <= 1


def test_plans_split_clients_transactions_and_rate():
    settings = BenchSettings(clients=5, transactions=101, rate=50.0, processes=2, seed=7)
    plans = plans_for(settings)
    assert [p.clients for p in plans] == [3, 2]
    assert [p.first_client for p in plans] == [0, 3]
    assert sum(p.transactions or 0 for p in plans) == 101
    assert sum(p.rate or 0 for p in plans) == pytest.approx(50.0)
    assert {p.seed for p in plans} == {7}


# --------------------------------------------------------------------------- weights


def test_overrides_replace_only_the_operations_they_name():
    assert resolve_weights("w", DEFAULTS, {"update": 0, "insert": 5}) == {
        "insert": 5,
        "select": 60,
        "update": 0,
    }


def test_no_overrides_keeps_the_defaults():
    assert resolve_weights("w", DEFAULTS, None) == DEFAULTS


def test_an_unknown_operation_names_the_known_ones_and_suggests():
    with pytest.raises(WorkloadConfigError) as caught:
        resolve_weights("w", DEFAULTS, {"selct": 1}, source="bench.yaml")
    message = str(caught.value)
    assert "unknown operation 'selct'" in message
    assert "did you mean 'select'?" in message
    assert "bench.yaml" in message
    assert "insert (default 30), select (default 60), update (default 10)" in (
        caught.value.hint or ""
    )


@pytest.mark.parametrize("weight", [-1, 1.5, "3", True, None])
def test_weights_must_be_non_negative_integers(weight):
    with pytest.raises(WorkloadConfigError, match="must be a non-negative integer"):
        resolve_weights("w", DEFAULTS, {"insert": weight})


def test_at_least_one_weight_must_be_above_zero():
    with pytest.raises(WorkloadConfigError, match="every weight is 0"):
        resolve_weights("w", DEFAULTS, {"insert": 0, "select": 0, "update": 0})


def test_overrides_must_be_a_mapping():
    with pytest.raises(WorkloadConfigError, match="must be a mapping"):
        resolve_weights("w", DEFAULTS, ["insert"])


@pytest.mark.parametrize("bad", [{}, [], {"a": -1}, {1: 2}, None])
def test_the_plugins_own_weights_are_checked(bad):
    with pytest.raises(WorkloadConfigError, match="get_operation_types"):
        check_default_weights("w", bad)


def test_the_chooser_follows_the_weights_and_its_seed():
    weights = {"a": 1, "b": 3, "never": 0}
    choose = make_chooser(weights, random.Random(5))
    picks = Counter(choose() for _ in range(20_000))
    assert "never" not in picks
    assert 0.70 < picks["b"] / 20_000 < 0.80
    again = make_chooser(weights, random.Random(5))
    first = make_chooser(weights, random.Random(5))
    assert [again() for _ in range(50)] == [first() for _ in range(50)]


def test_a_single_operation_is_always_chosen():
    choose = make_chooser({"only": 2, "off": 0}, random.Random())
    assert {choose() for _ in range(10)} == {"only"}


# --------------------------------------------------------------------------- database


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://bench:s3cr%40t@127.0.0.1:1/db",
            "postgresql://bench:****@127.0.0.1:1/db",
        ),
        ("postgresql://bench@127.0.0.1/db", "postgresql://bench@127.0.0.1/db"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql://postgres:@/postgres?host=/tmp/x",
        ),
        ("host=h user=u password=secret dbname=d", "host=h user=u password=**** dbname=d"),
        (
            "postgresql://u@h/d?password=secret&sslmode=off",
            "postgresql://u@h/d?password=****&sslmode=off",
        ),
    ],
)
def test_dsns_are_shown_without_their_password(dsn, shown):
    assert mask_dsn(dsn) == shown


def test_connect_errors_read_as_one_line():
    assert describe_connect_error(ConnectionRefusedError(111, "Connect call failed")) == (
        "connection refused"
    )
    assert describe_connect_error(
        OSError("Multiple exceptions: [Errno 111] Connect call failed")
    ) == ("connection refused")
    error = DatabaseUnavailableError("postgresql://u:****@h/d", "connection refused")
    assert str(error) == "cannot connect to postgresql://u:****@h/d: connection refused"
    assert "\n" not in str(error)


# --------------------------------------------------------------------------- settings


def test_settings_need_a_sensible_shape():
    assert BenchSettings().duration == 10.0
    for kwargs, fragment in [
        ({"clients": 0}, "clients must be an integer from 1 to 10,000"),
        ({"duration": 1.0, "transactions": 5}, "not both"),
        ({"clients": 1, "processes": 2}, "must not exceed clients"),
        ({"rate": 0.0}, "rate must be a positive number"),
        ({"max_error_rate": 2.0}, "max_error_rate must be a fraction"),
        ({"warmup": -1.0}, "warmup must not be negative"),
    ]:
        with pytest.raises(WorkloadConfigError, match=fragment):
            BenchSettings(**kwargs, source="x")  # type: ignore[arg-type]


def _bench_config(tmp_path: Path, text: str) -> TetherConfig:
    """The config of a bench file as ``BenchConfig.from_config`` sees a config built in code:
    ``load_config`` would refuse the broken ones itself (test_config_strict.py), and these
    tests are about the workload host's own check (which reads the file's lines)."""
    path = tmp_path / "bench.yaml"
    path.write_text(text, encoding="utf-8")
    return TetherConfig.model_validate({**yaml.safe_load(text), "path": path})


def test_options_override_the_config_which_overrides_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("TETHER_DSN", raising=False)
    config = BenchConfig.from_config(
        _bench_config(
            tmp_path,
            "workload: {type: plugin, plugin_name: tpcb, plugin_config: {scale: 2}}\n"
            "database: {dsn: 'postgresql://a:b@h/db', data_directory: ~/pg}\n"
            "bench: {clients: 4, duration: 30s, warmup: 1s, max_error_rate: 5%, seed: 3}\n",
        )
    )
    assert config.workload.plugin_name == "tpcb"
    assert config.workload.plugin_config == {"scale": 2}
    assert config.database.data_directory == Path("~/pg").expanduser()
    settings = config.settings(BenchSection.from_options(clients=2, transactions=100))
    assert (settings.clients, settings.transactions, settings.duration) == (2, 100, None)
    assert (settings.warmup, settings.max_error_rate, settings.seed) == (1.0, 0.05, 3)
    assert settings.dsn == "postgresql://a:b@h/db"
    assert settings.source == str(tmp_path / "bench.yaml")
    monkeypatch.setenv("TETHER_DSN", "postgresql://env/db")
    assert config.settings().dsn == "postgresql://env/db"
    assert config.settings(dsn="postgresql://flag/db").dsn == "postgresql://flag/db"
    assert config.settings(BenchSection.from_options(duration="90")).duration == 90.0


def test_an_unknown_bench_key_is_named_with_a_suggestion(tmp_path):
    config = _bench_config(tmp_path, "bench: {clinets: 4}\n")
    with pytest.raises(
        WorkloadConfigError, match=r"bench\.clinets: unknown key \(did you mean 'clients'\?\)"
    ):
        BenchConfig.from_config(config)


def test_a_bad_duration_names_the_file_and_key(tmp_path):
    config = _bench_config(tmp_path, "bench: {duration: soon}\n")
    with pytest.raises(ConfigError, match=r"bench\.yaml: bench\.duration: not a duration"):
        BenchConfig.from_config(config)


def test_only_plugin_workloads_exist(tmp_path):
    with pytest.raises(WorkloadConfigError, match=r"workload\.type: must be 'plugin'"):
        BenchConfig.from_config(_bench_config(tmp_path, "workload: {type: builtin}\n"))


BROKEN = """\
workload:
  type: builtin
  plugin_name: 5
  plugin_config: [scale]
database:
  dns: postgresql://h/db
  pool_size: 4
bench:
  clinets: 4
  duration: soon
  warmup: -1s
  processes: 0
  max_error_rate: lots
  setup: yes please
"""


def test_every_problem_of_the_file_is_reported_at_once_with_its_line(tmp_path):
    with pytest.raises(WorkloadConfigError) as caught:
        BenchConfig.from_config(_bench_config(tmp_path, BROKEN))
    path = tmp_path / "bench.yaml"
    found = {(p.key, p.line): p.message for p in caught.value.problems}  # type: ignore[attr-defined]
    durations = {k: found.pop(k) for k in [("bench.duration", 10), ("bench.warmup", 11)]}
    assert found == {
        ("workload.type", 2): "must be 'plugin', got 'builtin'",
        ("workload.plugin_name", 3): "must be a string, got 5",
        ("workload.plugin_config", 4): "must be a mapping",
        ("database.dns", 6): "unknown key (did you mean 'dsn'?)",
        ("bench.clinets", 9): "unknown key (did you mean 'clients'?)",
        ("bench.processes", 12): "must be an integer from 1 to 1,024, got 0",
        ("bench.max_error_rate", 13): (
            "not a rate: 'lots' (write a fraction like 0.01 or a percentage like 1%)"
        ),
        ("bench.setup", 14): "must be true or false, got 'yes please'",
    }
    assert durations[("bench.duration", 10)].startswith("not a duration: 'soon' (write a number")
    assert durations[("bench.warmup", 11)].startswith("not a duration: '-1s' (write a number")
    assert [p.line for p in caught.value.problems] == sorted(  # type: ignore[attr-defined]
        p.line
        for p in caught.value.problems  # type: ignore[attr-defined]
    )
    assert caught.value.path == path
    message = str(caught.value)
    assert message.startswith(
        f"{path}: workload.type: must be 'plugin', got 'builtin' (and 9 more)"
    )
    assert (
        f"\n  - {path}:12 [bench.processes]: must be an integer from 1 to 1,024, got 0" in message
    )
    assert (
        caught.value.hint
        == "fix each key listed above; `tether config validate` re-checks the file"
    )


def test_a_misspelled_database_key_is_refused_and_others_are_left_to_their_owners(tmp_path):
    text = "database: {dns: 'postgresql://h/db', pool_size: 4, url: 'sqlite:///x.db'}\n"
    with pytest.raises(WorkloadConfigError) as caught:
        BenchConfig.from_config(_bench_config(tmp_path, text))
    [problem] = caught.value.problems
    assert (problem.key, problem.message) == ("database.dns", "unknown key (did you mean 'dsn'?)")
    assert "pool_size" not in str(caught.value)
    config = BenchConfig.from_config(_bench_config(tmp_path, "database: {pool_size: 4}\n"))
    assert config.database.dsn is None


def test_a_range_problem_in_the_file_carries_its_line_and_hint(tmp_path):
    with pytest.raises(WorkloadConfigError) as caught:
        BenchConfig.from_config(_bench_config(tmp_path, "bench:\n  clients: 2\n  rate: 0\n"))
    [problem] = caught.value.problems
    assert (problem.key, problem.line) == ("bench.rate", 3)  # type: ignore[attr-defined]
    assert (
        str(problem)
        == f"{tmp_path / 'bench.yaml'}:3 [bench.rate]: must be a positive number, got 0.0"
    )
    assert caught.value.hint is not None
    assert caught.value.hint.startswith("write a number of transactions per second")


def test_json_and_toml_configs_have_lines(tmp_path):
    """Read from a file, the bench sections are checked by the schemas the workload host
    registers, with the file's lines."""
    path = tmp_path / "bench.json"
    path.write_text('{"bench": {\n  "clients": "4"}}', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert (problem.key, problem.line) == ("bench.clients", 2)  # type: ignore[attr-defined]
    assert problem.message == "must be an integer, got '4'"
    path = tmp_path / "bench.toml"
    path.write_text('[bench]\nclients = "4"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert (problem.key, problem.line) == ("bench.clients", 2)  # type: ignore[attr-defined]
    assert problem.message == "must be an integer, got '4'"


def test_option_problems_name_the_option():
    with pytest.raises(WorkloadConfigError) as caught:
        BenchSection.from_options(duration="soon", max_error_rate="lots", clients=0)
    assert [p.key for p in caught.value.problems] == ["--clients", "--duration", "--max-error-rate"]
    assert str(caught.value).startswith(
        "--clients: must be an integer from 1 to 10,000, got 0 (and 2 more)"
    )


def test_a_length_among_the_options_replaces_both_of_the_files(tmp_path):
    config = BenchConfig.from_config(
        _bench_config(tmp_path, "bench: {duration: 5s, transactions: 10, seed: 1}\n")
    )
    with pytest.raises(WorkloadConfigError, match="not both"):
        config.settings()
    assert config.settings(BenchSection.from_options(duration="1s")).transactions is None
    assert config.settings(BenchSection.from_options(transactions=3)).duration is None


def test_the_workload_to_run_and_its_plugin_config(tmp_path):
    config = BenchConfig.from_config(
        _bench_config(tmp_path, "workload: {plugin_name: tpcb, plugin_config: {scale: 2}}\n")
    )
    assert config.workload_name() == "tpcb"
    assert config.workload_name("imdb") == "imdb"
    found = WorkloadSpec("tpcb", path=tmp_path, origin="builtin")
    spec = config.spec_for(found, {"driver": "asyncpg"})
    assert (spec.config, spec.config_source, spec.origin) == (
        {"scale": 2, "driver": "asyncpg"},
        str(tmp_path / "bench.yaml"),
        "builtin",
    )
    assert config.spec_for(WorkloadSpec("imdb")).config == {}  # tpcb's settings are not imdb's
    assert config.is_ignoring_plugin_config("imdb")
    assert not config.is_ignoring_plugin_config("tpcb")
    with pytest.raises(WorkloadConfigError, match="no workload given"):
        BenchConfig().workload_name()


def test_a_config_without_bench_sections_is_not_a_bench_config(tmp_path):
    assert not BenchConfig.present_in(_bench_config(tmp_path, "database: {dsn: x}\n"))
    assert BenchConfig.present_in(_bench_config(tmp_path, "bench: 5\n"))
    with pytest.raises(WorkloadConfigError, match="bench: must be a mapping"):
        BenchConfig.from_config(_bench_config(tmp_path, "bench: 5\n"))


# --------------------------------------------------------------------------- statistics


@given(
    st.dictionaries(
        st.integers(min_value=-10, max_value=HIGHEST_US * 2), st.integers(1, 10**6), max_size=60
    )
)
def test_recording_counts_fills_the_histogram_as_record_value_does(latencies):
    """record_counts writes the counts array at HdrHistogram's own index (values clamped
    to 1 us .. an hour), with the same total, min and max."""
    expected, recorded = new_histogram(), new_histogram()
    for value, times in latencies.items():
        expected.record_value(min(max(value, 1), HIGHEST_US), times)
    record_counts(recorded, latencies)
    assert list(recorded.counts) == list(expected.counts)
    assert recorded.get_total_count() == expected.get_total_count()
    assert (recorded.get_min_value(), recorded.get_max_value()) == (
        expected.get_min_value(),
        expected.get_max_value(),
    )


def test_merged_histograms_equal_one_histogram_of_everything():
    values = [random.Random(1).randint(50, 50_000) for _ in range(5_000)]
    first, second, together = OperationStats(), OperationStats(), OperationStats()
    first.record(Counter(values[:2_000]))
    second.record(Counter(values[2_000:]))
    together.record(Counter(values))
    merged = OperationStats.decode(first.encode())
    merged.merge(OperationStats.decode(second.encode()))
    assert merged.count == together.count == 5_000
    assert LatencySummary.of(merged.histogram) == LatencySummary.of(together.histogram)


def test_the_collector_drains_what_clients_appended():
    heard: list[tuple[str, str, str]] = []
    collector = Collector(["a", "b"], on_new_error=lambda *e: heard.append(e))
    collector.origin_ns = 1_000_000_000
    collector.latencies["a"].extend([100, 100, 250])
    collector.errors.append(("b", "ValueError", "bad", 1_500_000_000))
    collector.errors.append(("b", "ValueError", "bad", 1_600_000_000))
    interval, successes, errors = collector.drain()
    assert (successes, errors) == (3, 2)
    assert interval == {100: 2, 250: 1}
    assert collector.stats["a"].count == 3
    assert collector.stats["b"].errors == {"ValueError": 2}
    (error,) = collector.stats["b"].distinct_errors("b")
    assert (error.message, error.count, error.first) == ("bad", 2, 0.5)
    assert heard == [("b", "ValueError", "bad")]  # once, the first time
    assert collector.drain()[1:] == (0, 0)


def test_worker_metrics_merge():
    merged = merge_metrics(
        [
            {"calls": 3, "kind": "x", "ok": True, "by_op": {"a": 1}},
            {"calls": 3, "kind": "y", "ok": True, "by_op": {"a": 2, "b": 1}},
        ]
    )
    assert merged == {"calls": 6, "kind": ["x", "y"], "ok": True, "by_op": {"a": 3, "b": 1}}


# --------------------------------------------------------------------------- the client loop


class _Fake:
    """An execute_operation that records what it was asked to do, and fails on 'fail'."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def run_async(self, db: object, op: str) -> None:
        self.calls[op] += 1
        await asyncio.sleep(0)
        if op == "fail":
            raise KeyError(op)

    def run_sync(self, db: object, op: str) -> None:
        self.calls[op] += 1
        if op == "fail":
            raise KeyError(op)


def _through_a_seam(fake: _Fake, *, is_async: bool) -> tuple[PluginHandle, Gate]:
    """A plugin handle whose live version's ``execute_operation`` is the fake, behind an
    open gate: what ``LoadedWorkload.handle`` is, without a manager."""
    gate = Gate("fake", hold_timeout=0.01)
    door = gate.add_door("1.0.0")
    door.committed = True
    gate.open(door)
    plugin = SimpleNamespace(execute_operation=fake.run_async if is_async else fake.run_sync)
    return PluginHandle(gate, lambda _door: plugin), gate


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "threads"])
def test_a_transaction_budget_is_exact_and_errors_are_counted_by_type(is_async):
    fake = _Fake()
    handle, gate = _through_a_seam(fake, is_async=is_async)
    operation = handle.operation("execute_operation")
    assert operation.is_async is is_async
    engine = Engine(
        Plan(clients=4, transactions=503, seed=1),
        operation=operation,
        weights={"ok": 3, "fail": 1},
    )
    result = asyncio.run(engine.run([None] * 4))
    ok, failed = result.stats["ok"], result.stats["fail"]
    assert ok.count + failed.error_count == 503 == sum(fake.calls.values())
    assert failed.errors == {"KeyError": fake.calls["fail"]}
    assert gate.error_count == fake.calls["fail"]
    assert gate.errors_by_type == {"KeyError": fake.calls["fail"]}
    assert gate.in_flight == 0
    calls = handle.metrics()["call:execute_operation"]
    assert (calls.calls, calls.errors, calls.by_version) == (
        503,
        fake.calls["fail"],
        {"1.0.0": 503},
    )
    assert result.stop_reason == "transactions"


def test_a_closed_gate_refuses_every_call():
    fake = _Fake()
    handle, gate = _through_a_seam(fake, is_async=True)
    operation = handle.operation("execute_operation")
    gate.close("it is stopped")
    engine = Engine(Plan(clients=2, transactions=20), operation=operation, weights={"ok": 1})
    result = asyncio.run(engine.run([None, None]))
    assert fake.calls == {}
    assert result.stats["ok"].errors == {"PluginUnavailableError": 20}
    assert gate.error_count == 0  # a refusal at its own gate is not the plugin's error


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "threads"])
def test_a_paced_run_never_runs_ahead_of_its_schedule(is_async):
    fake = _Fake()
    ticks: list[Tick] = []
    engine = Engine(
        Plan(clients=3, duration=0.5, rate=40.0, tick=0.1),
        operation=DirectOperation(fake.run_async if is_async else fake.run_sync, is_async=is_async),
        weights={"ok": 1},
        on_tick=ticks.append,
    )
    result = asyncio.run(engine.run([None] * 3))
    # Slots start at 0, 25, 50 ... ms: exactly 20 fall inside half a second.
    assert 0 < result.stats["ok"].count <= 20
    assert sum(t.successes for t in ticks) == result.stats["ok"].count


def test_warmup_operations_are_not_recorded():
    fake = _Fake()
    engine = Engine(
        Plan(clients=1, duration=0.2, warmup=0.2, rate=50.0),
        operation=DirectOperation(fake.run_async, is_async=True),
        weights={"ok": 1},
    )
    result = asyncio.run(engine.run([None]))
    assert result.stats["ok"].count <= 10 < sum(fake.calls.values())


def test_a_stop_request_ends_the_run_and_says_so():
    fake = _Fake()
    engine = Engine(
        Plan(clients=2, duration=30.0),
        operation=DirectOperation(fake.run_async, is_async=True),
        weights={"ok": 1},
    )

    async def run() -> str:
        asyncio.get_running_loop().call_later(0.2, engine.request_stop)
        return (await engine.run([None, None])).stop_reason

    assert asyncio.run(run()) == "interrupted"


def _steady_ticks(rate: int, seconds: float, tick: float = 0.5) -> list[Tick]:
    """Ticks of a run that completes exactly ``rate`` transactions a second."""
    ticks, total = [], 0
    for n in range(round(seconds / tick)):
        count = round(rate * tick)
        total += count
        ticks.append(Tick(n * tick, (n + 1) * tick, count, 0, Counter({1000: count}), total, 0))
    return ticks


def test_progress_tps_is_the_rate_over_the_window_it_names():
    """A steady 1,000 tps run shows 1,000 tps (the bug summed one tick more than the
    time it divided by: 1,250 over a two-second window of half-second ticks)."""
    import io

    from rich.console import Console

    from tether.hosts.workload import Progress

    stream = io.StringIO()
    ticks = _steady_ticks(1000, 10.0)
    with Progress(Console(file=stream, width=200), every=5.0, live=False) as progress:
        for tick in ticks:
            progress(tick)
    lines = stream.getvalue().splitlines()
    assert lines[0] == (
        "progress: 5.0s, last 2.0s: 1000.0 tps, p95 1.000 ms; 5000 transactions, 0 errors"
    )
    assert lines[-1] == "done: 10.0s, 10000 transactions, 0 errors"
    assert sum(t.successes for t in ticks) == 10000


def test_progress_early_in_a_run_covers_only_the_measured_time():
    import io

    from rich.console import Console

    from tether.hosts.workload import Progress

    stream = io.StringIO()
    # warm-up tick then a first measured tick that straddles the start of measuring
    ticks = [
        Tick(-1.0, -0.25, 0, 0, Counter(), 0, 0),
        Tick(-0.25, 0.5, 500, 0, Counter({2000: 500}), 500, 0),
    ]
    with Progress(Console(file=stream, width=200), every=0.5, live=False) as progress:
        for tick in ticks:
            progress(tick)
    assert "last 0.5s: 1000.0 tps" in stream.getvalue()


def test_distinct_errors_keep_message_first_operation_and_count_across_a_merge():
    from tether.hosts.workload._stats import DISTINCT_MESSAGES, OTHER_MESSAGES, OperationStats

    one, two = OperationStats(), OperationStats()
    assert one.record_error("KeyError", "'a'", 2.0) is True
    assert one.record_error("KeyError", "'a'", 3.0) is False
    two.record_error("KeyError", "'a'", 1.5)
    two.record_error("OSError", "disk full", 4.0)
    merged = OperationStats.decode(one.encode())
    merged.merge(OperationStats.decode(two.encode()))
    errors = [(e.type, e.message, e.count, e.first) for e in merged.distinct_errors("op")]
    assert errors == [("KeyError", "'a'", 3, 1.5), ("OSError", "disk full", 1, 4.0)]
    assert merged.errors == {"KeyError": 3, "OSError": 1}

    many = OperationStats()
    for n in range(DISTINCT_MESSAGES + 5):
        many.record_error("ValueError", f"bad value {n}", float(n))
    kept = many.distinct_errors("op")
    assert len(kept) == DISTINCT_MESSAGES + 1
    assert kept[-1].message == OTHER_MESSAGES
    assert kept[-1].count == 5
    assert sum(e.count for e in kept) == DISTINCT_MESSAGES + 5


def _report_with(operations: dict[str, OperationStats]) -> BenchReport:
    from datetime import UTC, datetime

    return BenchReport(
        workload="tpcb", workload_version="1.0.0", workload_origin="builtin",
        driver="psycopg", event_loop="uvloop", database="postgresql://127.0.0.1/x",
        embedded=False, data_directory=None, server_version="16.4",
        settings=BenchSettings(clients=4, duration=20.0), weights=dict.fromkeys(operations, 1),
        operations=operations, elapsed=20.0, stop_reason="duration",
        started_at=datetime(2026, 12, 1, tzinfo=UTC),
    )  # fmt: skip


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_the_report_table_never_cuts_a_figure_on_a_narrow_terminal(width):
    """On an 80-column terminal the total row read ``total ... 15447…``: columns are
    dropped instead, and every figure shown is whole."""
    import io

    from rich.console import Console

    stats = OperationStats()
    stats.record({1234: 154_470_000, 98_765: 3})
    stats.record_error("ValueError", "boom", 1.0)
    a_long_name = "select_only_with_a_rather_long_operation_name"
    report = _report_with({"tpcb_like": stats, a_long_name: OperationStats()})
    stream = io.StringIO()
    console = Console(file=stream, width=width, force_terminal=True, color_system=None)
    report.render(console)
    text = stream.getvalue()
    assert "…" not in text
    assert all(len(line) <= width for line in text.splitlines())
    total = next(line for line in text.splitlines() if line.startswith("total"))
    figures = total.split()
    assert "154470003" in figures  # the count, whole
    assert f"{154_470_003 / 20:.1f}" in figures  # the tps, whole
    if width >= 100:
        assert "p99.9" in text


@pytest.mark.parametrize(
    ("field", "value"),
    [("clients", 10**30), ("clients", 10_001), ("processes", 2_000), ("transactions", 10**16)],
)
def test_counts_past_their_bound_are_refused_by_name(field, value):
    with pytest.raises(WorkloadConfigError, match=f"{field} must be an integer from 1 to"):
        BenchSettings(**{"clients": 10_000, field: value})
