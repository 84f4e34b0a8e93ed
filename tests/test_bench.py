"""``tether bench`` end to end against a real PostgreSQL (the session's embedded server)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from helpers import PluginWriter, line_of
from tether.cli import cli
from tether.hosts.workload import EXIT_ERROR_RATE

pytest_plugins = ["pg"]

ASYNC_PLUGIN = """
class Workload:
    def __init__(self):
        self.calls = 0

    async def initialize(self, config):
        self.config = config

    def get_info(self):
        return {"name": "ledger", "kind": "async"}

    async def setup(self, db):
        await db.execute("CREATE TABLE IF NOT EXISTS ledger_log (op text NOT NULL)")

    async def cleanup(self, db):
        await db.execute("DROP TABLE IF EXISTS ledger_log")

    async def execute_operation(self, db, operation_type):
        if operation_type == "fail":
            raise ValueError("this operation always fails")
        await db.execute("INSERT INTO ledger_log (op) VALUES ($1)", operation_type)
        self.calls += 1

    def get_operation_types(self):
        return {"write": 3, "read": 1, "fail": 0}

    async def get_metrics(self):
        return {"calls": self.calls, "greeting": self.config.get("greeting", "none")}
"""

SYNC_PLUGIN = """
class Workload:
    def __init__(self):
        self.calls = 0

    def initialize(self, config):
        self.config = config

    def setup(self, db):
        db.execute("CREATE TABLE IF NOT EXISTS ledger_log (op text NOT NULL)")

    def cleanup(self, db):
        db.execute("DROP TABLE IF EXISTS ledger_log")

    def execute_operation(self, db, operation_type):
        if operation_type == "fail":
            raise ValueError("this operation always fails")
        db.execute("INSERT INTO ledger_log (op) VALUES (%s)", (operation_type,))
        self.calls += 1

    def get_operation_types(self):
        return {"write": 3, "read": 1, "fail": 0}

    def get_metrics(self):
        return {"calls": self.calls}
"""


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    directory = tmp_path / "plugins"
    write = PluginWriter(directory)
    greeting = {"greeting": {"type": "string", "description": "shown in the metrics"}}
    write(
        "ledger",
        ASYNC_PLUGIN,
        entry="ledger:Workload",
        directory="ledger",
        provides=["workload"],
        config=greeting,
    )
    write(
        "ledger-sync",
        SYNC_PLUGIN,
        entry="ledger_sync:Workload",
        directory="ledger-sync",
        provides=["workload"],
        config=greeting,
    )
    write("not-a-workload", "class Plugin:\n    pass\n", directory="plain", entry="plugin:Plugin")
    return directory


def bench(*args: str, plugin_path: Path | None = None) -> Result:
    prefix = ["--plugin-path", str(plugin_path)] if plugin_path else []
    return CliRunner().invoke(cli, [*prefix, "bench", *args], catch_exceptions=False)


def report(result: Result) -> dict[str, object]:
    assert result.exit_code in {0, EXIT_ERROR_RATE}, result.stderr
    data: dict[str, object] = json.loads(result.stdout)  # JSON only on stdout
    return data


def rows(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return list(conn.execute(query).fetchall())


# --------------------------------------------------------------------------- tpcb


@pytest.mark.slow
def test_tpcb_runs_and_its_tables_hold_what_it_did(pg_url):
    result = bench("-w", "tpcb", "--dsn", pg_url, "-c", "4", "-T", "2s", "--format", "json", "-q")
    data = report(result)
    tpcb = data["operations"]["tpcb_like"]  # type: ignore[index]
    assert data["workload"]["driver"] == "psycopg"  # type: ignore[index]  # auto: threads
    assert data["workload"]["info"]["driver"] == "psycopg"  # type: ignore[index]
    assert data["workload"]["info"]["pipeline"] is True  # type: ignore[index]
    assert tpcb["count"] > 0
    assert tpcb["errors"] == 0
    assert data["metrics"]["setup"] == "loaded"  # type: ignore[index]
    counts = rows(
        pg_url,
        "SELECT (SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_tellers), "
        "(SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history), "
        "(SELECT sum(delta) FROM pgbench_history) = (SELECT sum(bbalance) FROM pgbench_branches)",
    )[0]
    assert counts == (1, 10, 100_000, tpcb["count"], True)

    again = report(
        bench("-w", "tpcb", "--dsn", pg_url, "-t", "50", "--format", "json", "-q", "--cleanup")
    )
    assert again["metrics"]["setup"] == "reused"  # type: ignore[index]
    assert again["operations"]["tpcb_like"]["count"] == 50  # type: ignore[index]
    assert rows(pg_url, "SELECT to_regclass('pgbench_accounts') IS NULL")[0] == (True,)


@pytest.mark.slow
def test_tpcb_select_only_and_the_text_report(pg_url):
    result = bench(
        "-w", "tpcb", "--dsn", pg_url, "-c", "2", "-t", "300",
        "--set", "operation_weights={tpcb_like: 0, select_only: 1}",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "(psycopg, " in result.stdout  # auto: libpq through psycopg, one thread a client
    assert re.search(r"select_only\s+1\s+300\s+0\s", result.stdout)
    assert "p99.9" in result.stdout
    assert "tpcb_like" not in result.stdout  # weight 0, nothing run: not in the table


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "driver"),
    [
        (("driver=asyncpg",), "asyncpg"),
        (("driver=psycopg", "pipeline=false"), "psycopg"),
        (("driver=psycopg",), "psycopg"),
        (("driver=libpq", "pipeline=false"), "psycopg-async"),
        (("driver=libpq",), "psycopg-async"),
    ],
    ids=["asyncpg", "psycopg", "psycopg-pipeline", "libpq", "libpq-pipeline"],
)
def test_every_tpcb_driver_commits_each_transaction_once(pg_url, settings, driver):
    extra = [arg for setting in settings for arg in ("--set", setting)]
    data = report(
        bench(
            "-w", "tpcb", "--dsn", pg_url, "-c", "3", "-t", "150", "--format", "json", "-q", *extra
        )
    )
    assert data["workload"]["driver"] == driver  # type: ignore[index]
    assert data["operations"]["tpcb_like"]["count"] == 150  # type: ignore[index]
    assert rows(
        pg_url,
        "SELECT count(*), sum(delta) = (SELECT sum(tbalance) FROM pgbench_tellers) "
        "FROM pgbench_history",
    ) == [(150, True)]


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["true", "false"])
def test_threaded_tpcb_mixes_select_only_with_tpcb_on_one_connection(pg_url, pipeline):
    """select-only runs out of pipeline mode; a client whose draws alternate between it
    and a pipelined TPC-B switches modes at each change, and every count still holds."""
    data = report(
        bench(
            "-w", "tpcb", "--dsn", pg_url, "-c", "2", "-t", "400", "--format", "json", "-q",
            "--set", "driver=psycopg", "--set", f"pipeline={pipeline}",
            "--set", "operation_weights={tpcb_like: 1, select_only: 1}",
        )
    )  # fmt: skip
    operations = data["operations"]
    tpcb, select = operations["tpcb_like"], operations["select_only"]  # type: ignore[index]
    assert tpcb["count"] + select["count"] == 400
    assert tpcb["count"] > 50
    assert select["count"] > 50
    assert tpcb["errors"] == select["errors"] == 0
    assert rows(pg_url, "SELECT count(*) FROM pgbench_history") == [(tpcb["count"],)]


CUSTOMER_OPERATIONS = ("customer_register", "customer_lookup", "customer_update", "address_update")


@pytest.mark.slow
def test_ecommerce_runs_every_operation_customer_management_included(pg_url):
    weights = ", ".join(f"{name}: 5" for name in CUSTOMER_OPERATIONS)
    data = report(
        bench(
            "-w", "ecommerce", "--dsn", pg_url, "-c", "3", "-t", "600", "--seed", "3",
            "--set", "catalog_size=300", "--set", "customer_count=40",
            "--set", f"operation_weights={{{weights}}}", "--format", "json", "-q",
        )
    )  # fmt: skip
    operations = data["operations"]
    assert isinstance(operations, dict)
    assert set(CUSTOMER_OPERATIONS) <= set(operations)
    assert {name: op["errors"] for name, op in operations.items()} == dict.fromkeys(operations, 0)
    assert all(operations[name]["count"] > 0 for name in CUSTOMER_OPERATIONS), operations
    registered = operations["customer_register"]["count"]
    assert rows(pg_url, "SELECT count(*) FROM ecommerce_customers") == [(40 + registered,)]
    moved = operations["address_update"]["count"]
    assert rows(pg_url, "SELECT count(*) FROM ecommerce_addresses") == [(40 + registered + moved,)]


# --------------------------------------------------------------------------- custom plugins


@pytest.mark.slow
@pytest.mark.parametrize(("name", "driver"), [("ledger", "asyncpg"), ("ledger-sync", "psycopg")])
def test_a_custom_workload_runs_through_the_cli(pg_url, plugins, name, driver):
    result = bench(
        "-w", name, "--dsn", pg_url, "-c", "3", "-t", "120", "--seed", "42", "--format", "json",
        "--set", "greeting=hello",
        plugin_path=plugins,
    )  # fmt: skip
    data = report(result)
    assert set(data) >= {
        "format", "tether_version", "workload", "database", "settings", "elapsed",
        "stop_reason", "totals", "operations", "metrics", "error_rate_exceeded",
    }  # fmt: skip
    assert data["workload"]["name"] == name  # type: ignore[index]
    assert data["workload"]["driver"] == driver  # type: ignore[index]
    assert data["settings"]["seed"] == 42  # type: ignore[index]
    assert data["database"]["dsn"] == pg_url  # type: ignore[index]
    operations = data["operations"]
    assert list(operations) == ["write", "read", "fail"]  # type: ignore[arg-type]
    totals = data["totals"]
    assert totals["transactions"] == 120  # type: ignore[index]
    assert totals["errors"] == 0  # type: ignore[index]
    write = operations["write"]  # type: ignore[index]
    assert write["weight"] == 3
    assert set(write["latency_ms"]) == {"min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"}
    assert write["histogram"].startswith("HISTF")
    logged = dict(rows(pg_url, "SELECT op, count(*) FROM ledger_log GROUP BY op"))  # type: ignore[arg-type]
    assert logged == {op: operations[op]["count"] for op in ("write", "read")}  # type: ignore[index]
    assert data["metrics"]["calls"] == 120  # type: ignore[index]
    if name == "ledger":
        assert data["metrics"]["greeting"] == "hello"  # type: ignore[index]
        assert data["workload"]["info"] == {"name": "ledger", "kind": "async"}  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ledger", "ledger-sync"])
def test_failing_operations_are_counted_by_type_and_fail_the_run(pg_url, plugins, name):
    result = bench(
        "-w", name, "--dsn", pg_url, "-c", "2", "-t", "200", "--format", "json", "-q",
        "--set", "operation_weights={fail: 1}", "--max-error-rate", "5%",
        plugin_path=plugins,
    )  # fmt: skip
    assert result.exit_code == EXIT_ERROR_RATE
    data = report(result)
    fail = data["operations"]["fail"]  # type: ignore[index]
    assert fail["errors_by_type"] == {"ValueError": fail["errors"]}
    assert fail["errors"] > 0
    (distinct,) = data["totals"]["distinct_errors"]  # type: ignore[index]
    assert distinct["type"] == "ValueError"
    assert distinct["message"] == "this operation always fails"
    assert distinct["operation"] == "fail"
    assert distinct["count"] == fail["errors"]
    assert fail["distinct_errors"] == [distinct]
    # the log has the message too, once (the first of its kind)
    stderr = " ".join(result.stderr.split())  # the console wraps long lines
    assert stderr.count("operation fail failed: ValueError: this operation always fails") == 1
    assert "each distinct error" in stderr
    assert fail["errors"] + sum(op["count"] for op in data["operations"].values()) == 200  # type: ignore[attr-defined]
    assert data["error_rate_exceeded"] is True
    assert "is above --max-error-rate 5.00%" in result.stderr


@pytest.mark.slow
def test_processes_merge_their_histograms_exactly(pg_url, plugins):
    data = report(
        bench(
            "-w", "ledger", "--dsn", pg_url, "-c", "4", "-j", "2", "-t", "400", "--format", "json",
            "-q", plugin_path=plugins,
        )
    )  # fmt: skip
    operations = data["operations"]
    counts = [op["count"] for op in operations.values()]  # type: ignore[attr-defined]
    assert sum(counts) == data["totals"]["transactions"] == 400  # type: ignore[index]
    assert data["metrics"]["calls"] == 400  # type: ignore[index]  # each worker's, added up
    assert data["settings"]["processes"] == 2  # type: ignore[index]
    assert rows(pg_url, "SELECT count(*) FROM ledger_log") == [(400,)]
    series = data["series"]  # both workers' ticks, merged by the run's clock
    assert sum(series["total"]["successes"]) == 400  # type: ignore[index]
    for name, op in operations.items():  # type: ignore[attr-defined]
        assert sum(series["operations"].get(name, {"successes": [0]})["successes"]) == op["count"]  # type: ignore[index]


@pytest.mark.slow
def test_a_paced_run_stays_within_its_schedule(pg_url, plugins):
    data = report(
        bench("-w", "ledger", "--dsn", pg_url, "-c", "2", "-T", "1s", "-R", "50",
              "--format", "json", "-q", plugin_path=plugins)
    )  # fmt: skip
    assert 0 < data["totals"]["transactions"] <= 50  # type: ignore[index]
    assert data["settings"]["rate"] == 50.0  # type: ignore[index]


@pytest.mark.slow
def test_plugins_test_loads_and_initializes_a_workload(plugins):
    result = CliRunner().invoke(cli, ["plugins", "test", str(plugins / "ledger")])
    assert result.exit_code == 0, result.output
    assert "initialize" in result.stdout


# --------------------------------------------------------------------------- errors


def test_an_unknown_workload_suggests_the_closest(plugins):
    result = bench("-w", "tpcc", plugin_path=plugins)
    assert result.exit_code == 1
    assert "workload not found: 'tpcc'" in result.stderr
    assert "did you mean 'tpcb'?" in result.stderr


def test_a_plugin_that_is_no_workload_is_refused(plugins):
    result = bench("-w", "not-a-workload", plugin_path=plugins)
    assert result.exit_code == 1
    assert "is not a workload plugin" in result.stderr


def test_bad_weights_fail_before_touching_a_database(plugins):
    result = bench(
        "-w", "ledger", "--dsn", "postgresql://nobody@127.0.0.1:1/none",
        "--set", "operation_weights={writ: 2}", plugin_path=plugins,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "unknown operation 'writ' for workload 'ledger' (did you mean 'write'?)" in result.stderr
    assert "write (default 3), read (default 1), fail (default 0)" in result.stderr


def test_an_unreachable_database_is_one_line_with_the_password_masked():
    result = bench("-w", "tpcb", "--dsn", "postgresql://bench:hunter2@127.0.0.1:1/db", "-T", "1s")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert (
        lines[0]
        == "Error: cannot connect to postgresql://bench:****@127.0.0.1:1/db: connection refused"
    )
    assert lines[1].startswith("Hint: ")
    assert len(lines) == 2
    assert "hunter2" not in result.output


def test_duration_and_transactions_exclude_each_other():
    result = bench("-w", "tpcb", "-T", "1s", "-t", "5")
    assert result.exit_code == 2
    assert "not both" in result.stderr


# --------------------------------------------------------------------------- configs


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_bench_config_runs_and_flags_override_it(tmp_path, pg_url, plugins):
    path = _config(
        tmp_path,
        f"""
        workload:
          type: plugin
          plugin_name: ledger
          plugin_config: {{greeting: from-config, operation_weights: {{read: 0}}}}
        database: {{dsn: "{pg_url}"}}
        bench: {{clients: 2, transactions: 30, seed: 9}}
        """,
    )
    data = report(
        bench("--config", str(path), "-t", "40", "--format", "json", "-q", plugin_path=plugins)
    )
    assert data["settings"]["clients"] == 2  # type: ignore[index]
    assert data["totals"]["transactions"] == 40  # type: ignore[index]
    assert data["operations"]["read"]["count"] == 0  # type: ignore[index]
    assert data["metrics"]["greeting"] == "from-config"  # type: ignore[index]


def test_config_validate_checks_the_bench_sections(tmp_path, plugins):
    good = _config(
        tmp_path, "workload: {plugin_name: tpcb, plugin_config: {scale: 2}}\nbench: {clients: 2}\n"
    )
    result = CliRunner().invoke(cli, ["--config", str(good), "config", "validate"])
    assert result.exit_code == 0, result.output
    assert "workload 'tpcb' (builtin)" in result.stdout
    bad = _config(
        tmp_path, "workload: {plugin_name: tpcb, plugin_config: {operation_weights: {tpcb: 1}}}\n"
    )
    result = CliRunner().invoke(cli, ["--config", str(bad), "config", "validate"])
    assert result.exit_code == 1
    assert (
        "unknown operation 'tpcb' for workload 'tpcb' (did you mean 'tpcb_like'?)" in result.stderr
    )
    wrong_type = _config(tmp_path, "workload: {plugin_name: tpcb, plugin_config: {scale: many}}\n")
    result = CliRunner().invoke(cli, ["--config", str(wrong_type), "config", "validate"])
    assert result.exit_code == 1
    assert "'scale' must be an integer" in result.stderr


def test_config_show_masks_the_dsn_password(tmp_path):
    path = _config(
        tmp_path,
        "workload: {plugin_name: tpcb}\ndatabase: {dsn: 'postgresql://u:topsecret@h/db'}\n",
    )
    result = CliRunner().invoke(cli, ["--config", str(path), "config", "show"])
    assert result.exit_code == 0, result.output
    assert "postgresql://u:****@h/db" in result.stdout
    assert "topsecret" not in result.stdout


def test_workloads_list_shows_builtin_and_plugin_workloads(plugins):
    result = CliRunner().invoke(cli, ["--plugin-path", str(plugins), "workloads", "list", "--json"])
    assert result.exit_code == 0, result.output
    found = {w["name"]: w for w in json.loads(result.stdout)["workloads"]}
    assert found["tpcb"]["origin"] == "builtin"
    assert found["tpcb"]["operations"] == {"tpcb_like": 1, "select_only": 0}
    assert found["ledger"]["origin"] == "cli"
    assert found["ledger"]["operations"] is None  # not declared in its manifest
    assert "not-a-workload" not in found
    table = CliRunner().invoke(cli, ["--plugin-path", str(plugins), "workloads", "list"])
    assert "tpcb_like 1, select_only 0" in table.stdout


# --------------------------------------------------------------------------- the guide's example


DOC = Path(__file__).resolve().parent.parent / "docs" / "workloads.md"
_FILE_FENCE = re.compile(r"^```\w+ (?P<path>\S+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def _doc_files() -> dict[str, str]:
    return {m["path"]: m["body"] for m in _FILE_FENCE.finditer(DOC.read_text(encoding="utf-8"))}


def test_the_guide_has_its_example_files():
    assert set(_doc_files()) == {
        "plugins/kv_store/plugin.yaml",
        "plugins/kv_store/kv_workload.py",
        "bench.yaml",
        "test_kv_store.py",
        "plugins/notes/plugin.yaml",
        "plugins/notes/notes_workload.py",
    }


@pytest.mark.slow
def test_the_guides_example_plugin_config_and_test_work(tmp_path, pg_url, monkeypatch):
    for relative, body in _doc_files().items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # ./plugins is searched; paths in the example are relative
    data = report(bench("--config", "bench.yaml", "--dsn", pg_url, "-t", "300", "--warmup", "0",
                        "--format", "json", "-q"))  # fmt: skip
    assert data["totals"]["transactions"] == 300  # type: ignore[index]
    assert {op: o["weight"] for op, o in data["operations"].items()} == {"get": 80, "put": 50}  # type: ignore[attr-defined]
    assert data["metrics"] == {"misses": 0}
    assert data["workload"]["info"] == {"name": "kv_store", "keys": 1000}  # type: ignore[index]

    wrong = bench("--config", "bench.yaml", "--set", "operation_weights={pt: 1}")
    assert wrong.exit_code == 1
    documented = re.search(r"^Error: workload\.plugin_config.*$", DOC.read_text(), re.MULTILINE)
    assert documented is not None
    assert documented[0] in wrong.stderr
    too_few = bench("--config", "bench.yaml", "--set", "keys=0")
    assert too_few.exit_code == 1
    assert "configuration 'keys' must be at least 1, got 0" in too_few.stderr
    assert "`--set keys=0` is refused with `configuration 'keys' must be at least 1, got 0`" in (
        " ".join(DOC.read_text(encoding="utf-8").split())
    )

    tested = CliRunner().invoke(cli, ["plugins", "test", "plugins/kv_store"])
    assert tested.exit_code == 0, tested.output

    monkeypatch.setenv("TETHER_DSN", pg_url)
    namespace: dict[str, object] = {}
    exec(
        compile((tmp_path / "test_kv_store.py").read_text(), "test_kv_store.py", "exec"), namespace
    )
    namespace["test_kv_store_runs"]()  # type: ignore[operator]


def test_the_guides_broken_config_fails_as_documented(tmp_path, monkeypatch):
    text = DOC.read_text(encoding="utf-8")
    [broken] = [
        b
        for b in re.findall(r"^```yaml\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
        if "clinets" in b
    ]
    expected = re.search(
        r"^Error: invalid config bench\.yaml: line 4: bench\.clinets.*?^Hint: .*?$",
        text,
        re.MULTILINE | re.DOTALL,
    )
    assert expected is not None
    (tmp_path / "bench.yaml").write_text(broken, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = bench("--config", "bench.yaml")
    assert result.exit_code == 1
    assert result.stderr.strip() == expected[0]


@pytest.mark.slow
def test_the_threaded_tpcb_client_raises_the_sqlstate_class_and_recovers(pg_url):
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "src/tether/builtin/tpcb/tpcb_pipeline.py"
    spec = importlib.util.spec_from_file_location("tpcb_pipeline_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    statements = {b"begin": b"BEGIN", b"divide": b"SELECT 1 / $1::int", b"end": b"END"}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        client = module.PipelinedClient(conn, statements)
        with pytest.raises(psycopg.errors.DivisionByZero, match="division by zero"):
            client.run([(b"begin", None), (b"divide", [b"0"]), (b"end", None)])
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        client.run([(b"begin", None), (b"divide", [b"2"]), (b"end", None)])
        # One statement at a time (out of pipeline mode), then a pipeline again.
        client.execute(b"begin", None)
        with pytest.raises(psycopg.errors.DivisionByZero, match="division by zero"):
            client.execute(b"divide", [b"0"])
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
        client.execute(b"divide", [b"4"])
        client.run([(b"begin", None), (b"divide", [b"2"]), (b"end", None)])
        assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.ON
        client.execute(b"divide", [b"1"])
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


def _tpcb_pipeline_module() -> object:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "src/tether/builtin/tpcb/tpcb_pipeline.py"
    spec = importlib.util.spec_from_file_location("tpcb_pipeline_async_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_async_pipelined_client_raises_recovers_and_survives_a_cancel(pg_url):
    """On the event loop: a failed statement rolls its transaction back and raises its
    SQLSTATE's class; a call cancelled while waiting leaves nothing for the next one."""
    import asyncio

    from tether.hosts.workload._database import close_connections, open_connections

    module: Any = _tpcb_pipeline_module()
    statements = {
        b"begin": b"BEGIN",
        b"divide": b"SELECT 1 / $1::int",
        b"sleep": b"SELECT pg_sleep($1::float)",
        b"end": b"END",
    }

    async def main() -> list[object]:
        (conn,) = await open_connections(pg_url, 1, driver="psycopg-async")
        try:
            client = module.AsyncPipelinedClient(conn)
            await client.start(statements)
            with pytest.raises(psycopg.errors.DivisionByZero, match="division by zero"):
                await client.run([(b"begin", None), (b"divide", [b"0"]), (b"end", None)])
            idle = conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
            slow = asyncio.ensure_future(
                client.run([(b"begin", None), (b"sleep", [b"0.2"]), (b"end", None)])
            )
            await asyncio.sleep(0.05)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            await client.run([(b"begin", None), (b"divide", [b"2"]), (b"end", None)])
            after = conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
            return [idle, after]
        finally:
            await close_connections([conn], driver="psycopg-async")

    assert asyncio.run(main()) == [True, True]


@pytest.mark.slow
def test_processes_default_to_auto_from_clients_and_cores(pg_url, plugins):
    """Without --processes, 8 clients run in min(cores // 2, 8 // 4) processes; 3 in one."""
    from tether.hosts.workload import auto_processes, usable_cores

    assert auto_processes(8, cores=4) == 2
    assert auto_processes(8, cores=2) == 1
    assert auto_processes(8, cores=1) == 1
    assert auto_processes(3, cores=16) == 1
    assert auto_processes(64, cores=8) == 4
    many = report(
        bench("-w", "ledger", "--dsn", pg_url, "-c", "8", "-t", "80", "--format", "json", "-q",
              plugin_path=plugins)
    )  # fmt: skip
    assert many["settings"]["processes"] == max(1, min(usable_cores() // 2, 2))  # type: ignore[index]
    assert many["metrics"]["calls"] == 80  # type: ignore[index]
    few = report(
        bench("-w", "ledger", "--dsn", pg_url, "-c", "3", "-t", "30", "-j", "auto",
              "--format", "json", "-q", plugin_path=plugins)
    )  # fmt: skip
    assert few["settings"]["processes"] == 1  # type: ignore[index]


def test_processes_refuse_what_is_neither_a_number_nor_auto():
    result = bench("-w", "tpcb", "--dsn", "postgresql://127.0.0.1:1/x", "-j", "many")
    assert result.exit_code == 2, result.output  # a usage error
    assert "Invalid value for '--processes': must be an integer or auto, got 'many'" in (
        result.stderr
    )


CONNECTION_TYPE_PLUGIN = """
class Workload:
    def initialize(self, config):
        self.config = config

    def setup(self, db):
        pass

    def cleanup(self, db):
        pass

    {execute}

    def get_operation_types(self):
        return {{"read": 1}}

    def get_connection_type(self):
        return {wanted!r}
"""


@pytest.mark.slow
def test_an_async_workload_asking_for_psycopg_gets_async_psycopg_connections(pg_url, tmp_path):
    execute = (
        "async def execute_operation(self, db, operation_type):\n"
        "        cursor = await db.execute('SELECT 1')\n"
        "        assert (await cursor.fetchone()) == (1,)"
    )
    PluginWriter(tmp_path)(
        "asks", CONNECTION_TYPE_PLUGIN.format(execute=execute, wanted="psycopg"),
        entry="asks:Workload", directory="asks", provides=["workload"],
    )  # fmt: skip
    data = report(
        bench("-w", "asks", "--dsn", pg_url, "-c", "2", "-t", "20", "--format", "json", "-q",
              plugin_path=tmp_path)
    )  # fmt: skip
    assert data["workload"]["driver"] == "psycopg-async"  # type: ignore[index]
    assert data["operations"]["read"]["count"] == 20  # type: ignore[index]
    assert data["operations"]["read"]["errors"] == 0  # type: ignore[index]


@pytest.mark.parametrize(
    ("wanted", "execute", "message"),
    [
        ("pg8000", "async def", ("get_connection_type() must return 'asyncpg' or 'psycopg', "
         "got 'pg8000'")),
        ("asyncpg", "def", ("get_connection_type() returned 'asyncpg', but execute_operation "
         "is a plain function")),
    ],
    ids=["unknown", "asyncpg-for-sync"],
)  # fmt: skip
def test_a_connection_type_that_cannot_be_served_is_refused(tmp_path, wanted, execute, message):
    code = f"{execute} execute_operation(self, db, operation_type):\n        pass"
    PluginWriter(tmp_path)(
        "asks", CONNECTION_TYPE_PLUGIN.format(execute=code, wanted=wanted),
        entry="asks:Workload", directory="asks", provides=["workload"],
    )  # fmt: skip
    result = bench("-w", "asks", "--dsn", "postgresql://127.0.0.1:1/x", plugin_path=tmp_path)
    assert result.exit_code == 1, result.output
    assert f"Error: workload 'asks': {message}" in result.stderr


def test_a_workload_whose_initialize_raises_gets_a_summary_not_a_traceback(pg_url, tmp_path):
    """The summary names the plugin, the step and the plugin's own frame; tether's
    internals (and the full trace) only with -v."""
    code = ASYNC_PLUGIN.replace(
        "        self.config = config", "        raise RuntimeError('no table')", 1
    )
    assert "raise RuntimeError('no table')" in code
    PluginWriter(tmp_path / "plugins")(
        "broken", code, entry="broken:Workload", directory="broken", provides=["workload"]
    )
    args = ("-w", "broken", "--dsn", pg_url, "-t", "5", "-q")
    result = bench(*args, plugin_path=tmp_path / "plugins")
    stderr = result.stderr
    assert result.exit_code == 1, stderr
    assert "Traceback" not in stderr
    assert "Error: plugin initialization failed: plugin 'broken': RuntimeError: no table" in stderr
    source = tmp_path / "plugins" / "broken" / "broken.py"
    assert f"at {source}:{line_of(source, 'no table')}, in initialize" in stderr
    verbose = CliRunner().invoke(
        cli, ["-v", "--plugin-path", str(tmp_path / "plugins"), "bench", *args]
    )
    assert "Traceback" in verbose.stderr
