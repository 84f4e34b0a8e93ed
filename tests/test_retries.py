"""Retries with backoff and degraded start (000's retries and graceful degradation).

Real plugins on disk count their attempts in a file beside them and fail the first
ones; the manager, ``tether serve`` (a real process on 127.0.0.1), ``tether bench``
(against the session's PostgreSQL) and ``tether demo`` try them again, or go on
without them when their entry says ``required: false``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from helpers import PluginWriter
from tether import PluginManager, PluginStatus, RetrySettings, load_config
from tether.cli import cli
from tether.errors import (
    MissingDependencyError,
    PluginImportError,
    PluginLifecycleError,
    PluginLoadError,
)

pytest_plugins = ["pg"]

SRC = Path(__file__).resolve().parents[1] / "src"


def asynctest(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


# --------------------------------------------------------------------------- plugins

FLAKY = """
    from pathlib import Path

    import tether

    COUNTER = Path(__file__).with_name("attempts.txt")
    FAILURES = {failures}


    def attempt(where):
        count = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
        COUNTER.write_text(str(count))
        if count <= FAILURES:
            raise ConnectionError(f"{{where}}: database not up yet (attempt {{count}})")


    class Plugin(tether.Plugin):
        def __init__(self):
            if "{where}" == "load":
                attempt("load")

        def initialize(self, ctx):
            super().initialize(ctx)
            if "{where}" == "initialize":
                attempt("initialize")

        def start(self):
            if "{where}" == "start":
                attempt("start")

        def cleanup(self):
            with COUNTER.with_name("cleaned.txt").open("a") as log:
                log.write("cleaned\\n")
"""

GOOD = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            if ctx.has_permission("router"):
                ctx.router.get("/ping", self.ping)

        async def ping(self, request):
            return {"pong": True}
"""


@pytest.fixture
def plugin(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


def flaky(
    plugin: PluginWriter, name: str, failures: int, where: str = "initialize", **fields: object
) -> Path:
    return plugin(name, FLAKY.format(failures=failures, where=where), directory=name, **fields)


def attempts(directory: Path) -> int:
    counter = directory / "attempts.txt"
    return int(counter.read_text()) if counter.exists() else 0


def config_file(tmp_path: Path, *entries: dict[str, object], **sections: object) -> Path:
    path = tmp_path / "app.yaml"
    data = {"plugins": {"plugins": list(entries)}, **sections}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def entry(directory: Path, **settings: object) -> dict[str, object]:
    return {"path": str(directory), **settings}


def quick(attempts: int) -> dict[str, object]:
    return {"attempts": attempts, "backoff": "1ms"}


async def bring_up(manager: PluginManager, config: Path) -> None:
    await manager.load_plugins_from_config(config)
    await manager.initialize_all()
    await manager.start_all()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def one_line(text: str) -> str:
    return " ".join(text.split())  # the console wraps long lines


# --------------------------------------------------------------------------- the policy


def test_the_wait_doubles_from_the_backoff():
    from tether._retries import RetryPolicy

    policy = RetryPolicy(attempts=4, backoff=0.5)
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert RetryPolicy.of(load_config_entry({})) == RetryPolicy(1, 1.0)
    assert RetryPolicy.of(load_config_entry({"retries": {}})) == RetryPolicy(3, 1.0)
    given = load_config_entry({"retries": {"attempts": 5, "backoff": "250ms"}})
    assert RetryPolicy.of(given) == RetryPolicy(5, 0.25)
    assert RetryPolicy.of(given, attempts=2) == RetryPolicy(2, 0.25)  # --retries 2


def load_config_entry(settings: dict[str, object]) -> Any:
    from tether._config import parse_config

    return parse_config({"plugins": {"plugins": [{"name": "p", **settings}]}}).plugins.plugins[0]


# --------------------------------------------------------------------------- the manager


@pytest.mark.parametrize("where", ["load", "initialize"])
@asynctest
async def test_a_plugin_that_fails_its_first_attempts_comes_up(tmp_path, plugin, caplog, where):
    directory = flaky(plugin, "orders", 2, where)
    config = config_file(tmp_path, entry(directory, retries=quick(3)))
    caplog.set_level(logging.WARNING, logger="tether")
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        await bring_up(manager, config)
        assert manager.get_status("orders") is PluginStatus.RUNNING
        assert manager.health_status() == "healthy"
        assert manager.failed_plugins() == {}
    assert attempts(directory) == 3
    failed = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    step = "load" if where == "load" else "initialization"
    assert len(failed) == 2  # each failed attempt logged once, naming the plugin and the attempt
    for number, (line, wait) in enumerate(zip(failed, ("1ms", "2ms"), strict=True), start=1):
        assert line.startswith(f"plugin orders: attempt {number} of 3 failed ({step}): ")
        assert f"ConnectionError: {where}: database not up yet (attempt {number})" in line
        assert line.endswith(f"; trying again in {wait}")


@asynctest
async def test_a_failed_initialize_is_tried_on_a_fresh_copy(tmp_path, plugin):
    directory = flaky(plugin, "orders", 1)
    config = config_file(tmp_path, entry(directory, retries=quick(2)))
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        await bring_up(manager, config)
        imports = [a.status for a in manager.load_attempts if a.plugin == "orders"]
        assert imports == ["success", "success"]  # imported again for the second try
        history = [e.what for e in manager.get_history("orders")]
        assert "committed" in history


@asynctest
async def test_a_required_plugin_that_fails_every_attempt_fails_the_start(tmp_path, plugin):
    directory = flaky(plugin, "orders", 5)
    config = config_file(tmp_path, entry(directory, retries=quick(2)))
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        await manager.load_plugins_from_config(config)
        with pytest.raises(PluginLifecycleError) as caught:
            await manager.initialize_all()
        assert str(caught.value) == (
            "plugin initialization failed: plugin 'orders': ConnectionError: initialize: "
            "database not up yet (attempt 2) (after 2 attempts)"
        )
        assert isinstance(caught.value.__cause__, ConnectionError)  # the plugin's own error
        assert manager.failed_plugins() == {}
    assert attempts(directory) == 2


@asynctest
async def test_failures_that_cannot_pass_are_not_tried_again(tmp_path, plugin, caplog):
    directory = plugin("broken", "def broken(:\n    pass\n", directory="broken")
    config = config_file(tmp_path, entry(directory, retries=quick(3)))
    caplog.set_level(logging.WARNING, logger="tether")
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        with pytest.raises(PluginImportError):
            await manager.load_plugins_from_config(config)
        assert [a.status for a in manager.load_attempts] == ["failure"]
    assert any(
        "attempt 1 of 3 failed (load)" in r.getMessage()
        and r.getMessage().endswith("not retried: it cannot pass by itself")
        for r in caplog.records
    )


@pytest.mark.parametrize(("where", "step"), [("load", "load"), ("initialize", "initialization")])
@asynctest
async def test_a_plugin_not_required_is_set_aside_and_reported(tmp_path, plugin, where, step):
    broken = flaky(plugin, "mailer", 9, where)
    good = plugin("orders", GOOD, directory="orders")
    config = config_file(tmp_path, entry(broken, required=False, retries=quick(2)), entry(good))
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        await bring_up(manager, config)
        assert [i.name for i in manager.list_plugins()] == ["orders"]
        assert manager.get_status("orders") is PluginStatus.RUNNING
        assert not manager.is_loaded("mailer")
        failed = manager.failed_plugins()["mailer"]
        assert (failed.step, failed.attempts, failed.version) == (step, 2, "1.0.0")
        assert "database not up yet (attempt 2)" in failed.reason
        assert manager.health_status() == "degraded"
        assert manager.readiness() == (True, {})  # it runs what it has
        health = failed.to_dict()
        assert (health["status"], health["state"], health["ready"]) == ("failed", "failed", False)
    assert attempts(broken) == 2


@asynctest
async def test_a_plugin_whose_start_fails_is_set_aside_after_its_cleanup(tmp_path, plugin):
    broken = flaky(plugin, "mailer", 9, "start")
    config = config_file(tmp_path, entry(broken, required=False, retries=quick(3)))
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        await bring_up(manager, config)
        assert manager.failed_plugins()["mailer"].step == "start"
        assert manager.list_plugins() == []
    assert attempts(broken) == 1  # start is not tried again
    assert (broken / "cleaned.txt").read_text() == "cleaned\n"


@asynctest
async def test_a_required_plugin_that_needs_a_failed_one_names_both(tmp_path, plugin):
    broken = flaky(plugin, "mailer", 9)
    needs = plugin(
        "orders", GOOD, directory="orders", dependencies=[{"name": "mailer", "version": "^1.0.0"}]
    )
    config = config_file(tmp_path, entry(broken, required=False), entry(needs))
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        await manager.load_plugins_from_config(config)
        with pytest.raises(MissingDependencyError) as caught:
            await manager.initialize_all()
    message = str(caught.value)
    assert message.startswith(
        "missing dependency: plugin 'orders' requires 'mailer' version '^1.0.0' (it failed "
        "(initialization) and is not required: plugin initialization failed: plugin 'mailer': "
        "ConnectionError: initialize: database not up yet (attempt 1))"
    )
    assert caught.value.hint is not None
    assert "give 'orders' `required: false` too" in caught.value.hint


@asynctest
async def test_plugins_that_need_a_failed_one_go_with_it_or_without_it(tmp_path, plugin):
    broken = flaky(plugin, "mailer", 9, "load")
    needs = plugin(
        "digest", GOOD, directory="digest", dependencies=[{"name": "mailer", "version": "*"}]
    )
    likes = plugin(
        "orders",
        GOOD,
        directory="orders",
        dependencies=[{"name": "mailer", "version": "*", "optional": True}],
    )
    config = config_file(
        tmp_path,
        entry(broken, required=False),
        entry(needs, required=False),
        entry(likes),
    )
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        await bring_up(manager, config)
        assert [i.name for i in manager.list_plugins()] == ["orders"]
        failed = manager.failed_plugins()
        assert (failed["mailer"].step, failed["digest"].step) == ("load", "dependency")
        assert failed["digest"].reason.startswith("its dependency 'mailer' failed (load): ")


@asynctest
async def test_retry_attempts_overrides_every_entry(tmp_path, plugin):
    directory = flaky(plugin, "orders", 2)
    config = config_file(tmp_path, entry(directory, retries={"attempts": 1, "backoff": "1ms"}))
    async with PluginManager(state_directory=tmp_path / "state", retry_attempts=3) as manager:
        await bring_up(manager, config)
        assert manager.get_status("orders") is PluginStatus.RUNNING
    assert attempts(directory) == 3


@asynctest
async def test_load_plugin_counts_its_retries_after_the_first_try(tmp_path, plugin):
    directory = flaky(plugin, "orders", 2, "load")
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        with pytest.raises(PluginLoadError, match=r"\(attempt 1\) \("):
            await manager.load_plugin(directory, {"required": False})  # raised all the same
        info = await manager.load_plugin(directory, retries=1, retry_backoff=0)
        assert info.name == "orders"
    assert attempts(directory) == 3


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"retries": {"attempts": 0}}, "retries.attempts: input should be greater than or equal"),
        ({"retries": {"attempts": 101}}, "retries.attempts: input should be less than or equal"),
        ({"retries": {"attempts": "many"}}, "plugins.plugins[0].retries.attempts:"),
        ({"retries": {"backoff": "soon"}}, "plugins.plugins[0].retries.backoff: not a duration"),
        ({"retries": {"backoff": "-1s"}}, "plugins.plugins[0].retries.backoff:"),
        ({"retries": {"atempts": 3}}, "plugins.plugins[0].retries.atempts: unknown key"),
        ({"retries": 3}, "plugins.plugins[0].retries:"),
        ({"required": "maybe"}, "plugins.plugins[0].required:"),
    ],
    ids=["zero", "too-many", "text", "not-a-duration", "negative", "unknown-key", "not-a-mapping",
         "required-not-a-boolean"],
)  # fmt: skip
def test_bad_retries_values_are_refused_with_their_path(tmp_path, settings, problem):
    config = config_file(tmp_path, {"name": "orders", **settings})
    result = run("config", "validate", str(config))
    assert result.exit_code == 1
    assert problem in one_line(result.stderr)


def test_retries_settings_are_plain_values():
    assert RetrySettings() == RetrySettings(attempts=3, backoff=1.0)


@pytest.mark.parametrize("command", ["serve", "bench", "demo"])
@pytest.mark.parametrize("value", ["0", "101", "three"])
def test_a_bad_retries_option_is_a_usage_error(tmp_path, command, value):
    config = config_file(tmp_path)
    result = run(command, "--config", str(config), "--retries", value)
    assert result.exit_code == 2
    assert "Invalid value for '--retries'" in result.stderr


# --------------------------------------------------------------------------- tether demo


def test_demo_retries_override_the_config(tmp_path, plugin):
    directory = flaky(plugin, "orders", 2)
    config = config_file(tmp_path, entry(directory, retries={"attempts": 1, "backoff": "1ms"}))
    failed = run("demo", str(config))
    assert failed.exit_code == 1
    assert "Error: plugin initialization failed: plugin 'orders'" in one_line(failed.stderr)
    (directory / "attempts.txt").unlink()
    result = run("demo", str(config), "--retries", "3")
    assert result.exit_code == 0, result.stderr
    assert attempts(directory) == 3
    assert "orders 1.0.0 running" in one_line(result.stdout)


# --------------------------------------------------------------------------- tether serve


def start_serve(config: Path, *args: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`tether serve` in a process of its own on a free port; the process and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from tether.cli import main; main()", "serve", "--config",
         str(config), "--port", "0", "--admin-token", "secret", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )  # fmt: skip
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:
        seen.append(line)
        found = re.search(r"tether serving \d+ plugin\(s\) on (http://\S+)", line)
        if found:
            return process, found.group(1), seen
    process.wait(60)
    stderr = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"tether serve did not start:\n{stderr}")


def finish(process: subprocess.Popen[str], seen: list[str]) -> tuple[str, str]:
    """Stops the server; all it wrote to stdout and stderr. The stdout read loop above
    may hold lines in its buffer, which ``communicate`` (reading the pipe itself) would
    miss, so stdout is read to its end through the same file while a thread drains
    stderr."""
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.stdout, process.stderr
    assert stdout is not None
    assert stderr is not None
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.append(stderr.read()))
    drain.start()
    rest = stdout.read()
    process.wait(60)
    drain.join(60)
    stdout.close()
    stderr.close()
    return "".join(seen) + rest, "".join(errors)


@pytest.mark.slow
def test_serve_starts_degraded_without_a_plugin_not_required(tmp_path, plugin):
    broken = flaky(plugin, "mailer", 99)
    good = plugin("orders", GOOD, directory="orders", permissions={"router": True})
    config = config_file(tmp_path, entry(broken, required=False, retries=quick(2)), entry(good))
    process, url, seen = start_serve(config)
    try:
        headers = {"Authorization": "Bearer secret"}
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/ping").json() == {"pong": True}
            health = client.get("/admin/health", headers=headers).json()
            one = client.get("/admin/plugins/mailer/health", headers=headers).json()
            alive = client.get("/healthz")
            ready = client.get("/readyz")
            detail = client.get("/admin/plugins/mailer", headers=headers)
        listed = run("plugins", "health", "--url", url, "--token", "secret", "--json")
        shown = run("plugins", "health", "mailer", "--url", url, "--token", "secret")
        reload = httpx.post(f"{url}/admin/plugins/mailer/reload", headers=headers, timeout=30)
    finally:
        stdout, stderr = finish(process, seen)
    assert process.returncode == 0, stderr
    assert health["status"] == "degraded"
    assert health["plugins"]["orders"]["state"] == "running"
    mailer = health["plugins"]["mailer"]
    assert (mailer["status"], mailer["ready"], mailer["attempts"]) == ("failed", False, 2)
    assert mailer["failed_step"] == "initialization"
    assert mailer["last_error"] == (
        "plugin initialization failed: plugin 'mailer': ConnectionError: initialize: database "
        "not up yet (attempt 2) (after 2 attempts)"
    )
    assert one == mailer
    assert alive.status_code == 200
    assert alive.json()["status"] == "degraded"
    assert alive.json()["failed"] == {"mailer": mailer["last_error"]}
    assert ready.status_code == 200
    assert listed.exit_code == 1  # a plugin is not healthy
    rows = {row["name"]: row["state"] for row in json.loads(listed.stdout)["plugins"]}
    assert rows == {"orders": "running", "mailer": "failed"}
    assert "without mailer (failed, not required)" in stdout
    assert f"admin API: {url}/admin/plugins, /admin/health, /healthz" in stdout
    assert detail.status_code == 404  # not "not found", which health contradicts
    assert detail.json()["message"] == (
        "plugin 'mailer' is not loaded: it failed (initialization) and is not required, "
        f"so the server started without it: {mailer['last_error']}"
    )
    assert "POST /admin/plugins/mailer/reload (or restart the server)" in detail.json()["hint"]
    # a reload tries again: still broken, so still set aside
    assert (reload.status_code, reload.json()["result"]["outcome"]) == (409, "failed")
    assert "database not up yet" in reload.json()["message"]
    assert shown.exit_code == 1
    assert f"last error: {mailer['last_error']}" in one_line(shown.stdout)
    assert one_line(shown.stderr) == (
        "Error: 1 plugin(s) not healthy: mailer Hint: a failed one (required: false) did not "
        "come up when the server started: fix its error, then restart the server"
    )
    logged = one_line(stderr)
    assert logged.count("plugin mailer: attempt 1 of 2 failed (initialization)") == 1
    assert logged.count("plugin mailer: attempt 2 of 2 failed (initialization)") == 1
    assert "plugin mailer failed (initialization) and is not required" in logged


def test_serve_fails_fast_on_a_required_plugin(tmp_path, plugin):
    broken = flaky(plugin, "mailer", 99)
    config = config_file(tmp_path, entry(broken, retries=quick(2)))
    result = run("serve", "--config", str(config), "--port", "0")
    assert result.exit_code == 1
    assert "tether serving" not in result.stdout
    assert (
        "Error: plugin initialization failed: plugin 'mailer': ConnectionError: initialize: "
        "database not up yet (attempt 2) (after 2 attempts)" in one_line(result.stderr)
    )
    assert attempts(broken) == 2


def test_serve_retries_option_gives_every_plugin_its_attempts(tmp_path, plugin):
    broken = flaky(plugin, "mailer", 99)
    config = config_file(tmp_path, entry(broken))  # no retries: one try, but --retries 3
    result = run("serve", "--config", str(config), "--port", "0", "--retries", "3")
    assert result.exit_code == 1
    assert "(after 3 attempts)" in one_line(result.stderr)
    assert attempts(broken) == 3


# --------------------------------------------------------------------------- tether bench

WORKLOAD = """
    class Workload:
        def initialize(self, config):
            pass

        def setup(self, db):
            pass

        def cleanup(self, db):
            pass

        def execute_operation(self, db, operation_type):
            db.execute("SELECT 1")

        def get_operation_types(self):
            return {"select": 1}
"""


def bench_config(tmp_path: Path, pg_url: str, *entries: dict[str, object]) -> Path:
    return config_file(
        tmp_path,
        *entries,
        workload={"plugin_name": "probe"},
        database={"dsn": pg_url},
        bench={"clients": 1, "transactions": 20},
    )


@pytest.fixture
def workload(plugin: PluginWriter) -> Path:
    return plugin("probe", WORKLOAD, directory="probe", entry="plugin:Workload",
                  provides=["workload"])  # fmt: skip


@pytest.mark.slow
def test_bench_runs_without_a_failing_plugin_not_required(tmp_path, plugin, workload, pg_url):
    broken = flaky(plugin, "mailer", 99, "load")
    config = bench_config(tmp_path, pg_url, entry(broken, required=False, retries=quick(2)))
    result = run(
        "--plugin-path", str(workload.parent), "bench", "--config", str(config), "--format",
        "json", "-j", "2", "-c", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["transactions"] == 20
    assert "note: running without plugin 'mailer' (required: false)" in one_line(result.stderr)
    assert attempts(broken) == 2  # in the bench's process; its workers go without it


@pytest.mark.slow
def test_bench_stops_on_a_failing_required_plugin(tmp_path, plugin, workload, pg_url):
    broken = flaky(plugin, "mailer", 99, "load")
    config = bench_config(tmp_path, pg_url, entry(broken))
    result = run(
        "--plugin-path", str(workload.parent), "bench", "--config", str(config), "--retries", "2"
    )
    assert result.exit_code == 1
    assert "database not up yet (attempt 2) (" in one_line(result.stderr)
    assert one_line(result.stderr).endswith(
        "line 14) (after 2 attempts) Hint: the plugin class or factory is called with no "
        "arguments; do setup work in initialize() or start()"
    )
    assert attempts(broken) == 2


@pytest.mark.slow
def test_bench_tries_a_flaky_plugin_again(tmp_path, plugin, workload, pg_url):
    helper = flaky(plugin, "mailer", 1)
    config = bench_config(tmp_path, pg_url, entry(helper, retries=quick(2)))
    result = run(
        "--plugin-path", str(workload.parent), "bench", "--config", str(config), "--format",
        "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert attempts(helper) == 2


def test_the_documented_retries_example_reads(tmp_path):
    text = (SRC.parent / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    section = text.split("## Retries and required plugins", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "tether.yaml"
    path.write_text(textwrap.dedent(block), encoding="utf-8")
    entries = load_config(path).plugins.plugins
    assert entries[0].retries == RetrySettings(attempts=3, backoff=1.0)
    assert (entries[1].required, entries[1].retries) == (
        False,
        RetrySettings(attempts=2, backoff=0.5),
    )


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (10**9, ValueError), (True, TypeError)]
)
def test_a_manager_refuses_retry_attempts_a_load_would_refuse(value, error):
    with pytest.raises(error, match="retry attempts"):
        PluginManager(retry_attempts=value)
