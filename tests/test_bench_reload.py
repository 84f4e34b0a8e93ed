"""``tether bench --watch``: a workload plugin rewritten mid-run, against a real PostgreSQL.

Each test runs a real ``tether bench`` process on a workload in ``tmp_path`` whose
first version paces itself (a short sleep per operation), so that the run lasts
until the test has rewritten the plugin; the next versions do not, and finish the
transaction budget. The plugin marks on disk when a version has run, the bench
prints a line per reload attempt on standard error: the test waits for those
(bounded), never for a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import tether
from helpers import PluginWriter
from test_bench_report import chromium, open_page  # noqa: F401 - chromium is a fixture
from tether import PluginManager
from tether.hosts.workload import ReloadFollower, WorkloadSpec, open_workload
from tether.hosts.workload._database import close_connections, open_connections
from tether.hosts.workload._engine import Engine, Plan

pytest_plugins = ["pg"]

_WAIT = 120.0  # seconds: the longest a step may take on a busy machine
NAME = "reloader"
_SOURCES = os.pathsep.join(  # the tether under test, whatever the process's directory
    [str(Path(tether.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
)
SCHEMA = {"marks": {"type": "string", "description": "where the plugin marks that it ran"}}


def workload_code(version: str, weights: dict[str, int], *, pause: float = 0.0) -> str:
    """A workload whose operations log their version; it marks ``ran-VERSION`` after
    20 of them. ``count`` reads, every other operation writes."""
    return f"""
import asyncio
from pathlib import Path

VERSION = "{version}"


class Workload:
    async def initialize(self, config):
        self.marks = Path(config["marks"])
        self.calls = 0

    async def setup(self, db):
        await db.execute("CREATE TABLE IF NOT EXISTS reload_log (version text, op text)")
        await db.execute("CREATE TABLE IF NOT EXISTS setup_runs (version text)")
        await db.execute("INSERT INTO setup_runs VALUES ($1)", VERSION)

    async def reload_setup(self, db):
        await db.execute("CREATE TABLE IF NOT EXISTS reload_setups (version text)")
        await db.execute("INSERT INTO reload_setups VALUES ($1)", VERSION)

    async def cleanup(self, db):
        pass

    async def execute_operation(self, db, operation_type):
        if {pause!r}:
            await asyncio.sleep({pause!r})
        if operation_type == "count":
            await db.fetchval("SELECT count(*) FROM reload_log")
        else:
            await db.execute("INSERT INTO reload_log VALUES ($1, $2)", VERSION, operation_type)
        self.calls += 1
        if self.calls == 20:
            (self.marks / ("ran-" + VERSION)).touch()

    def get_operation_types(self):
        return {weights!r}

    def get_metrics(self):
        return {{"calls": self.calls, "version": VERSION}}
"""


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.new")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def rewrite(directory: Path, version: str, code: str) -> None:
    """A new version of the plugin, as an editor would save it: the code, then the manifest."""
    _replace(directory / "reloader.py", code)
    manifest = json.loads((directory / "plugin.json").read_text(encoding="utf-8"))
    _replace(directory / "plugin.json", json.dumps({**manifest, "version": version}, indent=2))


class Bench:
    """A ``tether bench`` process; its standard error is read line by line as it
    comes, its standard output (the JSON report) whole, each by a thread of its own."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tether", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": _SOURCES, "COLUMNS": "160"},
        )
        self.lines: list[str] = []
        self.output: list[str] = []
        self.changed = threading.Condition()
        self.readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_output, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        self.output.append(self.process.stdout.read())

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def wait_for_line(self, pattern: str) -> str:
        deadline = time.monotonic() + _WAIT
        found = re.compile(pattern)
        with self.changed:
            while True:
                for line in self.lines:
                    if found.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    break
                self.changed.wait(min(left, 0.5))
        pytest.fail(f"no line matching {pattern!r} on standard error:\n{''.join(self.lines)}")

    def wait_for_file(self, path: Path) -> None:
        deadline = time.monotonic() + _WAIT
        while not path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{path.name} never appeared:\n{''.join(self.lines)}")
            time.sleep(0.05)

    def finish(self) -> tuple[int, dict[str, object]]:
        try:
            self.process.wait(timeout=_WAIT * 2)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the bench did not finish:\n{''.join(self.lines)}")
        for reader in self.readers:
            reader.join(timeout=_WAIT)
        stdout = "".join(self.output)
        assert stdout.strip(), "".join(self.lines)
        return self.process.returncode, json.loads(stdout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # our own child, by its handle
            self.process.wait(timeout=_WAIT)
        for reader in self.readers:
            reader.join(timeout=_WAIT)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    (tmp_path / "marks").mkdir()
    return PluginWriter(tmp_path / "plugins")(
        NAME,
        workload_code("1.0.0", {"write": 1}, pause=0.01),
        entry="reloader:Workload",
        directory=NAME,
        provides=["workload"],
        config=SCHEMA,
    )


@pytest.fixture
def start(tmp_path: Path, pg_url: str) -> Iterator[object]:
    started: list[Bench] = []

    def run(*extra: str) -> Bench:
        args = ["--plugin-path", str(tmp_path / "plugins"), "bench", "-w", NAME, "--watch"]
        args += ["--dsn", pg_url, "-c", "2", "-t", "4000", "--format", "json"]
        args += ["--set", f"marks={tmp_path / 'marks'}", *extra]
        started.append(Bench(args, tmp_path))
        return started[-1]

    yield run
    for bench in started:
        bench.stop()


needs_watcher = pytest.mark.skipif(
    not hasattr(PluginManager, "watch"),
    reason="--watch needs PluginManager.watch (tether._watch, branch reload-watch)",
)


def rows(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return list(conn.execute(query).fetchall())


async def _until(path: Path) -> None:
    deadline = time.monotonic() + _WAIT
    while not await asyncio.to_thread(path.exists):
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        await asyncio.sleep(0.05)


async def _reload_mid_run(
    plugin: Path, dsn: str, marks: Path, new_versions: list[tuple[str, str]]
) -> tuple[ReloadFollower, object]:
    """Run 4,000 transactions; once version 1.0.0 has run, save each of ``new_versions``
    and reload the plugin (as --watch would), in order."""
    spec = WorkloadSpec(NAME, path=plugin, config={"marks": str(marks)})
    workload = await open_workload(spec)
    try:
        (admin,) = await open_connections(dsn, 1, driver=workload.driver)
        connections = await open_connections(dsn, 2, driver=workload.driver)
        try:
            await workload.call("setup", admin)
            engine = Engine(Plan(clients=2, transactions=4000, seed=7),
                            operation=workload.operation, weights=workload.weights)  # fmt: skip
            follower = ReloadFollower(workload, engine, db=admin)
            async with follower.following(watch=False):
                running = asyncio.create_task(engine.run(connections))
                await _until(marks / "ran-1.0.0")
                for version, code in new_versions:
                    rewrite(plugin, version, code)
                    await workload.manager.reload_plugin(NAME)
                result = await running
        finally:
            await close_connections([admin, *connections], driver=workload.driver)
    finally:
        await workload.aclose()
    return follower, result


@pytest.mark.slow
def test_the_follower_moves_the_run_to_each_version_the_manager_reloads(
    tmp_path, pg_url, plugin, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the kept versions go under ./.tether
    broken = workload_code("2.0.0", {"write": 1}).replace("def get_operation_types", "def (")
    follower, result = asyncio.run(
        _reload_mid_run(
            plugin,
            pg_url,
            tmp_path / "marks",
            [("2.0.0", broken), ("3.0.0", workload_code("3.0.0", {"write": 1, "count": 2}))],
        )
    )
    stats = result.stats  # type: ignore[attr-defined]
    assert sum(s.error_count for s in stats.values()) == 0
    assert sum(s.count for s in stats.values()) == 4000
    assert stats["count"].count > 0
    failed, reloaded = follower.attempts
    assert (failed.outcome, failed.to_version, reloaded.outcome) == ("rolled_back", "2.0.0",
                                                                     "reloaded")  # fmt: skip
    assert failed.step == "import"
    assert "reloader.py" in (failed.error or "")
    first, second = follower.phases(result.elapsed)  # type: ignore[attr-defined]
    assert (first.version, second.version) == ("1.0.0", "3.0.0")
    assert first.transactions + second.transactions == 4000
    assert second.weights == {"write": 1, "count": 2}
    assert rows(pg_url, "SELECT version FROM reload_setups") == [("3.0.0",)]


@pytest.mark.slow
@needs_watcher
def test_a_rewritten_workload_takes_over_mid_run_with_no_failed_transaction(
    tmp_path,
    pg_url,
    plugin,
    start,
    chromium,  # noqa: F811 - the fixture imported above
):
    bench = start("--report", str(tmp_path / "run.html"))
    bench.wait_for_file(tmp_path / "marks" / "ran-1.0.0")
    rewrite(plugin, "2.0.0", workload_code("2.0.0", {"write": 1, "count": 3}))
    code, report = bench.finish()
    assert code == 0, "".join(bench.lines)
    totals = report["totals"]
    assert totals["errors"] == 0  # type: ignore[index]
    assert totals["transactions"] == 4000  # type: ignore[index]
    (reload,) = report["reloads"]  # type: ignore[misc]
    assert (reload["outcome"], reload["from_version"], reload["to_version"]) == (
        "reloaded",
        "1.0.0",
        "2.0.0",
    )
    first, second = report["phases"]  # type: ignore[misc]
    assert (first["version"], second["version"]) == ("1.0.0", "2.0.0")
    assert first["to_seconds"] == second["from_seconds"] == reload["at_seconds"]
    assert first["transactions"] > 0 < second["transactions"]
    assert first["transactions"] + second["transactions"] == 4000
    assert (first["errors"], second["errors"]) == (0, 0)
    assert (first["weights"], second["weights"]) == ({"write": 1}, {"write": 1, "count": 3})
    assert report["operations"]["count"]["count"] > 0  # type: ignore[index]  # the new operation
    assert report["metrics"]["version"] == "2.0.0"  # type: ignore[index]
    logged = dict(rows(pg_url, "SELECT version, count(*) FROM reload_log GROUP BY version"))
    assert set(logged) == {"1.0.0", "2.0.0"}
    assert rows(pg_url, "SELECT version FROM setup_runs") == [("1.0.0",)]  # not run again
    assert rows(pg_url, "SELECT version FROM reload_setups") == [("2.0.0",)]
    assert any("reloaded 1.0.0 -> 2.0.0" in line for line in bench.lines), bench.lines
    page = (tmp_path / "run.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="tether-report-data"[^>]*>(.*?)</script>', page, re.DOTALL)[1])
    (run,) = data["runs"]
    assert [p["version"] for p in run["phases"]] == ["1.0.0", "2.0.0"]
    assert [r["outcome"] for r in run["reloads"]] == ["reloaded"]
    shown = open_page(chromium, tmp_path / "run.html", tmp_path)
    phases = shown.dom.one("table", id="phases")
    numbers = [row.attrs["data-phase"] for row in phases.all("tr") if "data-phase" in row.attrs]
    assert numbers == ["1", "2"]
    assert "2.0.0" in shown.dom.one("table", id="reloads").content
    markers = shown.chart("throughput").all("line", **{"class": "marker"})
    assert len(markers) == 1  # the reload, on the chart over time


@pytest.mark.slow
@needs_watcher
def test_a_broken_save_is_rolled_back_and_the_run_goes_on_to_the_next_good_one(
    tmp_path, pg_url, plugin, start
):
    bench = start()
    bench.wait_for_file(tmp_path / "marks" / "ran-1.0.0")
    broken = workload_code("2.0.0", {"write": 1}).replace("def get_operation_types(self):", "def (")
    rewrite(plugin, "2.0.0", broken)
    failure = bench.wait_for_line(r"rolled back: 2\.0\.0 failed")
    assert "1.0.0 kept" in failure
    rewrite(plugin, "3.0.0", workload_code("3.0.0", {"write": 2, "count": 1}))
    code, report = bench.finish()
    assert code == 0, "".join(bench.lines)
    assert report["totals"]["errors"] == 0  # type: ignore[index]
    failed, reloaded = report["reloads"]  # type: ignore[misc]
    assert (failed["outcome"], failed["from_version"], failed["to_version"]) == (
        "rolled_back",
        "1.0.0",
        "2.0.0",
    )
    assert failed["step"] is not None
    assert "reloader.py" in failed["error"]
    assert (reloaded["outcome"], reloaded["to_version"]) == ("reloaded", "3.0.0")
    phases = report["phases"]
    assert [p["version"] for p in phases] == ["1.0.0", "3.0.0"]  # type: ignore[union-attr]
    assert sum(p["transactions"] for p in phases) == 4000  # type: ignore[union-attr]
    logged = {v for (v,) in rows(pg_url, "SELECT DISTINCT version FROM reload_log")}
    assert logged == {"1.0.0", "3.0.0"}


@pytest.mark.slow
@needs_watcher
def test_a_version_that_wants_other_connections_is_refused_and_rolled_back(
    tmp_path, pg_url, plugin, start
):
    bench = start()
    bench.wait_for_file(tmp_path / "marks" / "ran-1.0.0")
    wants_psycopg = workload_code("2.0.0", {"write": 1}).replace(
        "    def get_operation_types(self):",
        "    def get_connection_type(self):\n        return 'psycopg'\n\n"
        "    def get_operation_types(self):",
    )
    rewrite(plugin, "2.0.0", wants_psycopg)
    bench.wait_for_line(r"2\.0\.0 refused by the bench")
    bench.wait_for_line(r"reloaded 2\.0\.0 -> 1\.0\.0|-> 1\.0\.0")
    rewrite(plugin, "3.0.0", workload_code("3.0.0", {"write": 1}))
    code, report = bench.finish()
    assert code == 0, "".join(bench.lines)
    refused = report["reloads"][0]  # type: ignore[index]
    assert refused["to_version"] == "2.0.0"
    assert "get_connection_type() now asks for psycopg-async" in refused["refused"]
    versions = [p["version"] for p in report["phases"]]  # type: ignore[union-attr]
    assert versions[0] == "1.0.0"
    assert versions[-2:] == ["1.0.0", "3.0.0"]
    assert report["reloads"][-1]["to_version"] == "3.0.0"  # type: ignore[index]


def test_watch_with_several_processes_is_a_usage_error(tmp_path, plugin):
    result = subprocess.run(
        [
            *(sys.executable, "-m", "tether", "--plugin-path", str(tmp_path / "plugins")),
            *("bench", "-w", NAME, "--watch", "-c", "4", "-j", "2"),
            *("--dsn", "postgresql://127.0.0.1:1/x"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": _SOURCES},
        timeout=_WAIT,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "--watch reloads the workload in this process" in result.stderr
    assert "--processes 1" in result.stderr
