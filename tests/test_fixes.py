"""Behaviour tests for the fixes of the docs review, one section per fix.

Each test drives real plugins (written into tmp_path) through a real manager, the web
host (uvicorn on loopback through ``LiveServer``), the CLI (click's runner) or a fresh
interpreter with an OpenTelemetry SDK configured. Time bounds only prove that a call
was cut or did not hang: a 0.2s limit must end a 30s sleep well within 10s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from helpers import PluginWriter
from tether import PluginConfig, PluginHandle, PluginManager, PluginStatus, TetherConfig, blame
from tether._chain import LINKS
from tether._config import grant_permissions, validate_plugin_config
from tether._context import PluginScope
from tether._loader import load_code
from tether._locate import call_chain, config_schema
from tether._manifest import load_manifest
from tether._slots import PluginVersion
from tether._steps import call_step
from tether.admin._errors import status_of
from tether.cli import cli
from tether.errors import (
    CallError,
    CallInputError,
    CallTimeoutError,
    ContractError,
    HookTimeoutError,
    IsolationError,
    PluginCrashedError,
    StopAllError,
    TetherError,
    WorkerProtocolError,
)
from tether.hosts.web.testing import LiveServer
from tether.hosts.workload import WorkloadSpec, open_workload


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


async def poll_until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.005)


Settings = Mapping[str, object]


@contextlib.asynccontextmanager
async def running(
    state: Path,
    *plugins: Path | tuple[Path, Settings],
    config: TetherConfig | None = None,
    stop_timeout: float = 10.0,
) -> AsyncIterator[PluginManager]:
    """A manager with ``plugins`` (a path, or a path and its settings) loaded and started."""
    manager = PluginManager(config=config, state_directory=state, stop_timeout=stop_timeout)
    try:
        for plugin in plugins:
            path, settings = plugin if isinstance(plugin, tuple) else (plugin, None)
            await manager.load_plugin(path, settings)
        await manager.initialize_all()
        await manager.start_all()
        yield manager
    finally:
        await manager.aclose()


async def call_as(style: str, handle: PluginHandle, op: str, *args: object) -> object:
    """``handle.call`` or ``await handle.acall``, as ``style`` says."""
    if style == "call":
        return handle.call(op, *args)
    return await handle.acall(op, *args)


def chain_of(manager: PluginManager, name: str) -> tuple[str, ...]:
    live = manager._slot(name).gate.live
    assert live is not None
    return live.chain.links


@pytest.fixture
def plugin(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


# Generous: what a cut call must finish well within (its own limit is a fraction of a
# second), and what an uncut one would blow through (it sleeps 30s).
CUT_WITHIN = 10.0

LIFECYCLE = """
    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

MINIMAL = (
    """\
class Plugin:
    def initialize(self, ctx):
        pass
"""
    + LIFECYCLE
)


# --------------------------------------------------------------------------- 1. health checks

HANGING_CHECK = (
    """\
import asyncio


class Plugin:
    def initialize(self, ctx):
        self.checks = 0

    async def health_check(self):
        self.checks += 1
        await asyncio.sleep(30)
        return True
"""
    + LIFECYCLE
)


@pytest.mark.parametrize("links", [["metrics"], []], ids=["metrics-only", "empty-chain"])
@asynctest
async def test_an_async_health_check_is_bounded_even_when_the_chain_has_no_timeout_link(
    plugin, state, links
):
    config = TetherConfig.model_validate({"plugins": {"health_check_timeout": "200ms"}})
    path = plugin("checked", HANGING_CHECK)
    async with running(state, (path, {"call_chain": links}), config=config) as manager:
        assert "timeout" not in chain_of(manager, "checked")  # the plugin's calls have none

        started = time.monotonic()
        results = await manager.check_health()
        elapsed = time.monotonic() - started

        assert elapsed < CUT_WITHIN, f"check_health() took {elapsed:.1f}s"
        assert manager.get_plugin("checked").checks == 1
        result = results["checked"]
        assert not result.ok
        assert result.error == "health_check() did not return within 0.2s"
        health = manager.get_plugin_health("checked")
        assert health.degraded
        assert health.error_count == 1
        assert health.errors_by_type == {"HealthCheckError": 1}
        assert health.in_flight == 0


# --------------------------------------------------------------------------- 2. hook timeouts

HOOKED = (
    """\
import asyncio


class Plugin:
    def initialize(self, ctx):
        self.entered = 0
        ctx.register_hook("pre_request", 1, self.slow, timeout=0.2)

    async def slow(self, arg):
        self.entered += 1
        await asyncio.sleep(30)
"""
    + LIFECYCLE
)


@pytest.mark.parametrize(
    "links", [["metrics"], ["recovery", "metrics"]], ids=["metrics-only", "recovery-and-metrics"]
)
@asynctest
async def test_a_hooks_own_timeout_is_enforced_when_the_chain_has_no_timeout_link(
    plugin, state, links
):
    path = plugin("hooked", HOOKED)  # timeouts.call: the manifest's default 30s
    async with running(state, (path, {"call_chain": links})) as manager:
        assert "timeout" not in chain_of(manager, "hooked")

        started = time.monotonic()
        outcome = await manager.runtime.hooks.run("pre_request", None)
        elapsed = time.monotonic() - started

        assert elapsed < CUT_WITHIN, f"the hook ran {elapsed:.1f}s"
        assert manager.get_plugin("hooked").entered == 1
        [failure] = outcome.failures
        assert failure.plugin == "hooked"
        assert type(failure.error) is HookTimeoutError
        assert str(failure.error) == (
            "hook execution timeout: pre_request hook exceeded 200ms timeout"
        )
        metrics = manager.get_handle("hooked").metrics()["hook:pre_request"]
        assert (metrics.calls, metrics.errors) == (1, 1)
        assert manager.get_handle("hooked").in_flight == 0


# --------------------------------------------------------------------------- 3. validation

ADDER = (
    """\
class Plugin:
    def initialize(self, ctx):
        self.entered = 0

    def add(self, a, b):
        self.entered += 1
        return a + b

    async def aadd(self, a, b):
        self.entered += 1
        return a + b
"""
    + LIFECYCLE
)

# Run by a fresh interpreter (the tracer provider is set once per process): configure an
# SDK, load the adder with validation outside tracing, make calls that do not fit, then
# one that does; print what each raised, the spans and the call metrics as JSON.
VALIDATED_SCRIPT = """\
import asyncio
import json
import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

from tether import PluginManager


async def main():
    manager = PluginManager(state_directory=Path(sys.argv[2]))
    try:
        await manager.load_plugin(
            sys.argv[1], {"call_chain": ["validation", "tracing", "metrics"]}
        )
        await manager.initialize_all()
        await manager.start_all()
        handle = manager.get_handle("adder")
        chain = manager._slot("adder").gate.live.chain
        raised = {}
        for label, op, style in [("call add", "add", "call"), ("acall add", "add", "acall"),
                                 ("acall aadd", "aadd", "acall")]:
            try:
                if style == "call":
                    handle.call(op, 1)
                else:
                    await handle.acall(op, 1)
            except Exception as exc:
                raised[label] = [type(exc).__name__, str(exc)]
        refused = {s: [m.calls, m.errors] for s, m in handle.metrics().items()}
        result = handle.call("add", 1, 2)
        return {
            "tracing": chain.tracing,
            "raised": raised,
            "refused_metrics": refused,
            "result": result,
            "entered": manager.get_plugin("adder").entered,
            "error_count": handle.error_count,
            "successes": handle.successes(),
        }
    finally:
        await manager.aclose()


seen = asyncio.run(main())
seen["spans"] = sorted(span.name for span in exporter.get_finished_spans())
print(json.dumps(seen))
"""


def test_validation_before_tracing_refuses_bad_arguments_with_an_sdk_configured(tmp_path, plugin):
    adder = plugin("adder", ADDER)
    script = tmp_path / "validated.py"
    script.write_text(VALIDATED_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(adder), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["tracing"] is True  # the SDK was there: the tracing link is compiled in
    missing = "missing a required argument: 'b'"
    assert seen["raised"] == {
        "call add": ["CallInputError", _input_message("call:add", missing)],
        "acall add": ["CallInputError", _input_message("call:add", missing)],
        "acall aadd": ["CallInputError", _input_message("call:aadd", missing)],
    }
    assert seen["refused_metrics"] == {"call:aadd": [0, 0], "call:add": [0, 0]}
    assert seen["result"] == 3
    assert seen["entered"] == 1  # only the call that fit
    assert seen["error_count"] == 0
    assert seen["successes"] == 1
    assert seen["spans"] == ["adder call:add"]  # refused before its span began


def _input_message(source: str, detail: str) -> str:
    return (
        f"invalid input: {source} of plugin 'adder' was called with arguments that do not "
        f"fit it: {detail}"
    )


@pytest.mark.parametrize(
    "links",
    [
        ["validation", "tracing", "metrics"],
        ["metrics", "validation"],
        ["tracing", "recovery", "metrics", "validation", "timeout"],
    ],
    ids=["validation-outermost", "validation-inside-metrics", "default-plus-validation"],
)
@pytest.mark.parametrize("style", ["call", "acall"])
@asynctest
async def test_a_call_refused_by_validation_is_not_counted_as_a_call(plugin, state, links, style):
    async with running(state, (plugin("adder", ADDER), {"call_chain": links})) as manager:
        handle = manager.get_handle("adder")
        for _ in range(3):
            with pytest.raises(CallInputError):
                await call_as(style, handle, "add", 1)

        refused = handle.metrics()["call:add"]
        assert (refused.calls, refused.errors) == (0, 0)
        assert handle.successes() == 0
        assert handle.error_count == 0
        assert manager.get_plugin("adder").entered == 0

        assert handle.call("add", 1, 2) == 3
        fitted = handle.metrics()["call:add"]
        assert (fitted.calls, fitted.errors) == (1, 0)
        assert handle.successes() == 1


@asynctest
async def test_a_call_refused_by_validation_is_not_timed_either(plugin, state):
    """``timed`` counts the calls that were timed, out of ``calls``: a refused call,
    which is not a call, is not one of them (nor is its time in the average)."""
    links = ["metrics", "validation"]
    async with running(state, (plugin("adder", ADDER), {"call_chain": links})) as manager:
        handle = manager.get_handle("adder")
        with pytest.raises(CallInputError):
            handle.call("add", 1)

        refused = handle.metrics()["call:add"]
        assert (refused.calls, refused.errors, refused.timed) == (0, 0, 0)
        assert refused.to_dict()["timed_calls"] == 0


# --------------------------------------------------------------------------- 4. stop limits


@pytest.mark.parametrize(
    ("manifest", "section", "entry", "expected"),
    [
        pytest.param(None, None, None, 3.0, id="the-managers-stop_timeout"),
        pytest.param({"call": "5s"}, None, None, 3.0, id="a-manifest-without-stop"),
        pytest.param({"stop": "1s"}, None, None, 1.0, id="the-manifest-over-the-manager"),
        pytest.param({"stop": "10s"}, None, None, 10.0, id="a-manifest-stating-the-default"),
        pytest.param(None, None, {"stop": "2s"}, 2.0, id="the-entry-over-the-manager"),
        pytest.param({"stop": "1s"}, None, {"stop": "2s"}, 2.0, id="the-entry-over-both"),
        pytest.param({"stop": "1s"}, {"stop": "4s"}, None, 4.0, id="the-section-over-both"),
        pytest.param(None, {"stop": "4s"}, {"stop": "2s"}, 2.0, id="the-entry-over-the-section"),
    ],
)
@asynctest
async def test_get_timeouts_reports_the_stop_limit_in_use(
    plugin, state, manifest, section, entry, expected
):
    fields = {"timeouts": manifest} if manifest is not None else {}
    settings = {"timeouts": entry} if entry is not None else {}
    config = TetherConfig.model_validate({"plugins": {"timeouts": section} if section else {}})
    path = plugin("timed", MINIMAL, **fields)
    async with running(state, (path, settings), config=config, stop_timeout=3) as manager:
        timeouts = manager.get_timeouts("timed")

        assert timeouts["stop"] == expected
        assert timeouts["start"] == 30.0  # the manager's stop_timeout is for stop() only


SLOW_STOP = """\
import asyncio


class Plugin:
    def initialize(self, ctx):
        pass

    def start(self):
        pass

    async def stop(self):
        await asyncio.sleep(30)

    def cleanup(self):
        pass
"""


@asynctest
async def test_the_managers_stop_timeout_cuts_a_stop_that_hangs(plugin, state):
    async with running(state, plugin("stuck", SLOW_STOP), stop_timeout=0.2) as manager:
        assert manager.get_timeouts("stuck")["stop"] == 0.2
        started = time.monotonic()
        with pytest.raises(StopAllError) as caught:
            await manager.stop_all()
        elapsed = time.monotonic() - started

        assert elapsed < CUT_WITHIN, f"stop_all() took {elapsed:.1f}s"
        [failure] = caught.value.failures
        assert failure.plugin == "stuck"
        assert "stop() did not return within 0.2s" in str(failure)


# --------------------------------------------------------------------------- 5. middleware time

GUARD = """\
import asyncio

import tether


class Plugin(tether.Plugin):
    mode = "pass"  # "slow": sleep 2s before call_next

    def initialize(self, ctx):
        super().initialize(ctx)
        self.seen = 0
        sync = ctx.plugin_config["sync"]
        ctx.register_middleware("guard", self.sync_guard if sync else self.guard)

    async def guard(self, request, call_next):
        self.seen += 1
        if self.mode == "slow":
            await asyncio.sleep(2)
        return await call_next(request)

    def sync_guard(self, request, call_next):
        self.seen += 1
        return call_next(request)
"""
GUARD_SCHEMA = {"sync": {"type": "boolean", "default": False}}

SLOW_ROUTE = """\
import asyncio

import tether


class Plugin(tether.Plugin):
    def initialize(self, ctx):
        super().initialize(ctx)
        self.served = 0
        ctx.router.get("/slow", self.slow)

    async def slow(self, request):
        await asyncio.sleep(1.0)
        self.served += 1
        return {"slept": True}
"""


@contextlib.contextmanager
def serving(tmp_path: Path, *entries: dict[str, object]) -> Iterator[LiveServer]:
    """``tether serve`` (uvicorn on loopback) for some ``plugins.plugins`` entries."""
    config = TetherConfig.model_validate({"plugins": {"plugins": list(entries)}})
    with LiveServer(config, state_directory=tmp_path / "state") as server:
        yield server


def guarded(tmp_path: Path, plugin: PluginWriter, *, sync: bool = False):
    guard = plugin("guard", GUARD, config=GUARD_SCHEMA, timeouts={"call": 0.3})
    routes = plugin("routes", SLOW_ROUTE, permissions={"router": True})
    return serving(tmp_path, {"path": str(routes)}, {"path": str(guard), "config": {"sync": sync}})


@pytest.mark.parametrize("sync", [False, True], ids=["async-middleware", "sync-middleware"])
def test_a_middleware_awaiting_a_slow_handler_is_not_timed_out(tmp_path, plugin, sync):
    with guarded(tmp_path, plugin, sync=sync) as server:
        assert server.manager.get_timeouts("guard")["call"] == 0.3
        with httpx.Client(base_url=server.url, timeout=30) as http:
            response = http.get("/slow")

        assert response.status_code == 200, response.text
        assert response.json() == {"slept": True}
        assert server.manager.get_plugin("guard").seen == 1
        guard = server.manager.get_handle("guard")
        assert guard.error_count == 0
        assert guard.errors_by_type() == {}
        calls = guard.metrics()["middleware:guard"]
        assert (calls.calls, calls.errors) == (1, 0)
        assert server.manager.get_handle("routes").error_count == 0


def test_a_middleware_that_is_slow_itself_is_cut_at_its_deadline(tmp_path, plugin):
    with guarded(tmp_path, plugin) as server:
        server.manager.get_plugin("guard").mode = "slow"
        with httpx.Client(base_url=server.url, timeout=30) as http:
            response = http.get("/slow")

        assert response.status_code == 500
        body = response.json()
        assert (body["error"], body["plugin"]) == ("CallTimeoutError", "guard")
        assert body["message"] == (
            "plugin execution timeout: plugin 'guard' did not finish middleware:guard within 300ms"
        )
        guard = server.manager.get_handle("guard")
        assert guard.error_count == 1
        assert guard.errors_by_type() == {"CallTimeoutError": 1}
        assert server.manager.get_plugin("routes").served == 0  # call_next was never reached


@pytest.mark.parametrize("mode", ["pass", "slow"])
@asynctest
async def test_a_host_endpoint_under_a_middleware_is_not_the_middlewares_time(plugin, state, mode):
    guard = plugin("guard", GUARD, config=GUARD_SCHEMA, timeouts={"call": 0.3})
    async with running(state, guard) as manager:
        manager.get_plugin("guard").mode = mode
        served = []

        async def endpoint(request):
            await asyncio.sleep(1.0)
            served.append(request)
            return f"response to {request}"

        run = manager.runtime.middleware.run("/host", "req", endpoint)
        handle = manager.get_handle("guard")
        if mode == "pass":
            assert await run == "response to req"
            assert handle.error_count == 0
            assert served == ["req"]
        else:
            with pytest.raises(CallTimeoutError) as caught:
                await run
            assert caught.value.plugin == "guard"
            assert blame(caught.value) == "guard"
            assert handle.error_count == 1
            assert served == []


# --------------------------------------------------------------------------- 6. admin


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param(CallTimeoutError("p", "call:x", "1s"), 504, id="call-timeout"),
        pytest.param(HookTimeoutError("p", "pre_request", "1s"), 504, id="hook-timeout"),
        pytest.param(CallInputError("p", "call:x", "missing 'b'"), 400, id="call-input"),
        pytest.param(CallError("no such operation", plugin="p"), 400, id="call"),
        pytest.param(ContractError("no host accepts it", plugin="p"), 400, id="contract"),
        pytest.param(IsolationError("cannot give it", plugin="p"), 501, id="isolation"),
        pytest.param(PluginCrashedError("p", "signal SIGSEGV"), 503, id="crashed"),
        pytest.param(WorkerProtocolError("p", "a bad frame"), 502, id="protocol"),
        pytest.param(TetherError("other"), 500, id="other"),
    ],
)
def test_call_contract_and_isolation_errors_have_their_own_admin_status(error, status):
    assert status_of(error) == status


# --------------------------------------------------------------------------- 7. workloads

WORKLOAD = """\
class Plugin:
    {kind}def initialize(self, config):
        self.events = ["initialize"]

    {kind}def start(self):
        self.events.append("start")

    {kind}def stop(self):
        self.events.append("stop")

    def setup(self, db):
        self.events.append("setup")

    def cleanup(self, db):
        self.events.append("cleanup")

    def get_operation_types(self):
        return {{"noop": 1}}

    def execute_operation(self, db, operation):
        return None
"""


@pytest.mark.parametrize("kind", ["", "async "], ids=["plain", "async"])
@asynctest
async def test_a_workloads_start_runs_when_opened_and_stop_when_closed(plugin, kind, monkeypatch):
    monkeypatch.chdir(plugin.root.parent)  # the workload's manager keeps its state under cwd
    directory = plugin("probe", WORKLOAD.format(kind=kind), provides=["workload"])
    workload = await open_workload(WorkloadSpec("probe", path=directory))
    try:
        instance = workload.manager.get_plugin("probe")
        assert instance.events == ["initialize", "start"]
        assert workload.manager.get_status("probe") is PluginStatus.RUNNING
        assert workload.weights == {"noop": 1}
    finally:
        await workload.aclose()

    assert instance.events == ["initialize", "start", "stop"]  # cleanup(db) is the host's


# --------------------------------------------------------------------------- 8. web blame

STORE = (
    """\
class Store:
    def fetch(self, key):
        raise LookupError(f"no such key: {key}")

    async def afetch(self, key):
        raise LookupError(f"no such key: {key}")


class Plugin:
    def initialize(self, ctx):
        ctx.export_service("Store", Store())
"""
    + LIFECYCLE
)

HOOK_USER = """\
import tether


class Plugin(tether.Plugin):
    def initialize(self, ctx):
        super().initialize(ctx)
        self.store = ctx.import_service("store", "Store")
        self.errors = []
        ctx.register_hook("pre_request", 2, self.sync_check)
        ctx.register_hook("pre_request", 1, self.async_check)
        ctx.register_hook("error", 1, self.saw)

    def sync_check(self, ctx):
        if ctx.path == "/sync":
            self.store.fetch(ctx.path)

    async def async_check(self, ctx):
        if ctx.path == "/async":
            await self.store.afetch(ctx.path)

    def saw(self, ctx):
        self.errors.append((ctx.path, type(ctx.error).__name__, ctx.error_plugin))
"""


@pytest.mark.parametrize("path", ["/sync", "/async"], ids=["sync-hook", "async-hook"])
def test_a_hooks_failure_in_a_service_is_answered_and_counted_as_the_services(
    tmp_path, plugin, path
):
    store = plugin("store", STORE, exports=[{"name": "Store"}])
    user = plugin("hooks", HOOK_USER, dependencies=[{"name": "store"}])
    with serving(tmp_path, {"path": str(store)}, {"path": str(user)}) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            response = http.get(path)

        assert response.status_code == 500
        body = response.json()
        assert (body["error"], body["plugin"]) == ("LookupError", "store")
        assert body["message"] == f"no such key: {path}"
        manager = server.manager
        assert manager.get_handle("store").error_count == 1
        assert manager.get_handle("store").errors_by_type() == {"LookupError": 1}
        assert manager.get_handle("hooks").error_count == 0
        assert manager.get_plugin("hooks").errors == [(path, "LookupError", "store")]


# --------------------------------------------------------------------------- 9. the CLI


def test_config_validate_accepts_process_isolation_and_reports_unknown_call_chain_links(
    tmp_path, plugin
):
    isolated = plugin("isolated", MINIMAL)
    chained = plugin("chained", MINIMAL)
    config = tmp_path / "app.yaml"
    entries = [
        {"path": str(isolated), "isolation": "process"},
        {"path": str(chained), "call_chain": ["tracing", "retry", "metrics"]},
    ]
    config.write_text(yaml.safe_dump({"plugins": {"plugins": entries}}), encoding="utf-8")

    result = CliRunner().invoke(cli, ["--config", str(config), "config", "validate"])

    output = " ".join(result.output.split())  # the console may wrap long lines
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click's exit, not a crash
    assert "Traceback" not in result.output
    assert "isolated" not in output  # isolation: process is a level tether gives
    assert (
        "plugin 'chained': its config entry's call_chain: unknown call_chain link(s): 'retry'"
        in output
    )
    assert all(link in output for link in LINKS), output
    assert "1 problem(s)" in output


# --------------------------------------------------------------------------- 10. unloading

VERSIONED = """\
LOG = {log!r}
VERSION = "{version}"


def note(what):
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(f"{{what}} {{VERSION}}\\n")


class Plugin:
    def initialize(self, ctx):
        ctx.register_hook("pre_request", 1, self.hook)

    def hook(self, arg):
        return VERSION

    def start(self):
        note("start")

    def stop(self):
        note("stop")

    def cleanup(self):
        note("cleanup")
"""


def stage(manager: PluginManager, directory: Path) -> PluginVersion:
    """Load ``directory`` as another version of a loaded plugin, beside the live one (as
    tests/test_slots.py stages one; no reload API drives this yet)."""
    manifest = load_manifest(directory)
    slot = manager._slot(manifest.name)
    settings = PluginConfig()
    contract = manager.contracts.resolve(manifest.name, manifest.provides)
    code = load_code(manifest, contract=contract, private_namespace=True)
    values = validate_plugin_config(
        manifest.name, config_schema(manifest, code.instance), settings.config
    )
    chain = call_chain(manifest, settings, manager.config, manager.runtime.errors)
    scope = PluginScope(
        manifest=manifest,
        config=values,
        permissions=grant_permissions(manifest, settings.permissions),
        runtime=manager.runtime,
        door=slot.gate.add_door(manifest.version, chain=chain),
    )
    version = PluginVersion(manifest, settings, code, scope, contract, str(directory))
    version.set_status(PluginStatus.LOADING)
    slot.add(version)
    return version


async def start_staged(version: PluginVersion) -> None:
    await call_step(version.instance, "initialize", version.scope.context)
    version.initialized = True
    version.set_status(PluginStatus.INITIALIZED)
    await call_step(version.instance, "start")
    version.set_status(PluginStatus.RUNNING)


@pytest.mark.parametrize("how", ["unload_plugin", "aclose"])
@pytest.mark.parametrize("live", ["old-live", "new-live"])
@asynctest
async def test_unloading_a_plugin_stops_every_running_version(tmp_path, plugin, how, live):
    log = tmp_path / "lifecycle.log"
    first = plugin("p", VERSIONED.format(log=str(log), version="1.0.0"))
    second = plugin("p", VERSIONED.format(log=str(log), version="2.0.0"), version="2.0.0")
    manager = PluginManager(state_directory=tmp_path / "state")
    try:
        await manager.load_plugin(first)
        await manager.initialize_all()
        await manager.start_all()
        slot = manager._slot("p")
        old = slot.live
        assert old is not None
        new = stage(manager, second)
        await start_staged(new)
        if live == "new-live":  # a reload half done: the new one is live, the old still runs
            slot.commit(new)
            slot.gate.open(new.door)
        assert (old.status, new.status) == (PluginStatus.RUNNING, PluginStatus.RUNNING)
        assert manager.runtime.hooks.call("pre_request", None).results == [
            "1.0.0" if live == "old-live" else "2.0.0"
        ]

        if how == "unload_plugin":
            await manager.unload_plugin("p")
        else:
            await manager.aclose()
        lines = log.read_text(encoding="utf-8").splitlines()
    finally:
        await manager.aclose()

    stops = [line for line in lines if line.startswith("stop")]
    live_first = (
        ["stop 1.0.0", "stop 2.0.0"] if live == "old-live" else ["stop 2.0.0", "stop 1.0.0"]
    )
    assert stops == live_first  # each exactly once, the live version first
    assert sorted(line for line in lines if line.startswith("cleanup")) == [
        "cleanup 1.0.0",
        "cleanup 2.0.0",
    ]
    assert (old.status, new.status) == (PluginStatus.UNLOADED, PluginStatus.UNLOADED)
    assert not manager.is_loaded("p")


# --------------------------------------------------------------------------- 11. deliveries

DEFERRED_FAILURE = (
    """\
class Plugin:
    def initialize(self, ctx):
        self.called = 0
        ctx.subscribe_event("jobs.run", self.on_job)

    def on_job(self, event):  # plain, but returns a coroutine: awaited by the bus
        self.called += 1
        return self._run(event.data)

    async def _run(self, data):
        raise RuntimeError(f"job {data} failed")
"""
    + LIFECYCLE
)


@asynctest
async def test_a_plain_handlers_coroutine_that_raises_is_a_failed_delivery_of_the_plugin(
    plugin, state
):
    path = plugin("jobs", DEFERRED_FAILURE, events={"subscribes": ["jobs.run"]})
    async with running(state, path) as manager:
        [subscription] = manager.runtime.events.subscriptions("jobs")
        handle = manager.get_handle("jobs")
        for number in (1, 2):  # the first through the sync entry, then the async one
            await manager.runtime.events.publish("jobs.run", number)
            await poll_until(lambda n=number: subscription.failed == n)

            assert (subscription.delivered, subscription.dropped) == (0, 0)
            assert handle.error_count == number
            assert str(handle.last_error) == f"job {number} failed"
        assert manager.get_plugin("jobs").called == 2
        assert handle.errors_by_type() == {"RuntimeError": 2}
        assert blame(handle.last_error) == "jobs"


@asynctest
async def test_a_plain_handlers_failed_coroutine_is_not_a_success_in_the_call_metrics(
    plugin, state
):
    """The call metrics (where the error threshold's successes come from) agree with the
    error count: each failed delivery is a call with an error, the first one too."""
    path = plugin("jobs", DEFERRED_FAILURE, events={"subscribes": ["jobs.run"]})
    async with running(state, path) as manager:
        [subscription] = manager.runtime.events.subscriptions("jobs")
        for number in (1, 2):
            await manager.runtime.events.publish("jobs.run", number)
            await poll_until(lambda n=number: subscription.failed == n)

        handle = manager.get_handle("jobs")
        metrics = handle.metrics()["event:jobs.run"]
        assert (metrics.calls, metrics.errors) == (2, 2)
        assert handle.successes() == 0


DEFERRED_HANG = (
    """\
import asyncio


class Plugin:
    def initialize(self, ctx):
        ctx.subscribe_event("jobs.run", self.on_job)

    def on_job(self, event):  # plain, but returns a coroutine that runs 30s
        return asyncio.sleep(30)
"""
    + LIFECYCLE
)


@asynctest
async def test_a_plain_handlers_coroutine_is_bounded_by_timeouts_call_from_the_first_delivery(
    plugin, state
):
    """The awaitable a plain handler returns is the plugin's own work, awaited inside the
    seam: its time limit holds for the first delivery as for the ones after it."""
    path = plugin(
        "jobs", DEFERRED_HANG, events={"subscribes": ["jobs.run"]}, timeouts={"call": 0.2}
    )
    async with running(state, path) as manager:
        [subscription] = manager.runtime.events.subscriptions("jobs")
        handle = manager.get_handle("jobs")
        for number in (1, 2):  # the first through the sync entry, then the async one
            await manager.runtime.events.publish("jobs.run", number)
            await poll_until(lambda n=number: subscription.failed == n, timeout=CUT_WITHIN)

            assert subscription.delivered == 0
            assert handle.error_count == number
            assert type(handle.last_error) is CallTimeoutError


# --------------------------------------------------------------------------- 12. proxies

CALCULATOR = (
    """\
class Calculator:
    def compute(self, result, exc=None, *, d=1):
        return {"result": result, "exc": exc, "d": d}


class Plugin:
    def initialize(self, ctx):
        ctx.export_service("Calculator", Calculator())
"""
    + LIFECYCLE
)

IMPORTER = (
    """\
class Plugin:
    def initialize(self, ctx):
        self.calculator = ctx.import_service("calc", "Calculator")
"""
    + LIFECYCLE
)


@contextlib.asynccontextmanager
async def two_importers(plugin: PluginWriter, state: Path) -> AsyncIterator[tuple[object, object]]:
    calc = plugin("calc", CALCULATOR, exports=[{"name": "Calculator"}])
    depends = {"dependencies": [{"name": "calc"}]}
    first = plugin("first", IMPORTER, **depends)
    second = plugin("second", IMPORTER, **depends)
    async with running(state, calc, first, second) as manager:
        yield manager.get_plugin("first").calculator, manager.get_plugin("second").calculator


@asynctest
async def test_each_importer_of_a_service_gets_a_proxy_of_its_own_class(plugin, state):
    async with two_importers(plugin, state) as (first, second):
        assert type(first) is not type(second)
        assert first.compute(1) == second.compute(1) == {"result": 1, "exc": None, "d": 1}


@asynctest
async def test_a_proxys_class_refuses_writes(plugin, state):
    async with two_importers(plugin, state) as (first, second):
        klass = type(first)
        with pytest.raises(AttributeError, match="read-only"):
            klass.compute = lambda *args, **kwargs: "hijacked"
        with pytest.raises(AttributeError, match="read-only"):
            klass.extra = 1
        with pytest.raises(AttributeError, match="read-only"):
            del klass.compute

        assert first.compute(2) == {"result": 2, "exc": None, "d": 1}
        assert second.compute(2) == {"result": 2, "exc": None, "d": 1}
        assert not hasattr(first, "extra")


@asynctest
async def test_an_importer_changing_its_methods_defaults_does_not_change_anothers_calls(
    plugin, state
):
    async with two_importers(plugin, state) as (first, second):
        first.compute.__kwdefaults__["d"] = 99  # in place
        first.compute.__defaults__ = ("changed",)

        assert first.compute(3) == {"result": 3, "exc": "changed", "d": 99}  # its own, changed
        assert second.compute(3) == {"result": 3, "exc": None, "d": 1}


# --------------------------------------------------------------------------- 13. sealed

SEALED = """\
import tether


class Plugin(tether.Plugin):
    def initialize(self, ctx):
        super().initialize(ctx)
        self.registration = ctx.register_hook("pre_request", 1, self.hook)

    def hook(self, arg):
        return self.ctx.name
"""


@pytest.mark.parametrize("what", ["context", "hook-registration"])
@asynctest
async def test_the_classes_of_sealed_views_refuse_writes(plugin, state, what):
    async with running(state, plugin("a", SEALED), plugin("b", SEALED)) as manager:
        a, b = manager.get_plugin("a"), manager.get_plugin("b")
        view = a.ctx if what == "context" else a.registration
        other = b.ctx if what == "context" else b.registration
        klass = type(view)
        assert type(other) is klass  # shared by every plugin: a write would reach them all
        member = "name" if what == "context" else "remove"

        with pytest.raises(AttributeError, match="read-only"):
            klass.anything = 1
        with pytest.raises(AttributeError, match="read-only"):
            setattr(klass, member, property(lambda self: "hijacked"))
        with pytest.raises(AttributeError, match="read-only"):
            delattr(klass, member)

        assert not hasattr(klass, "anything")
        assert member in vars(klass)
        assert (a.ctx.name, b.ctx.name) == ("a", "b")
        assert manager.runtime.hooks.call("pre_request", None).results == ["a", "b"]


# ------------------------------------------------------------------- a request kept too long

KEEPER = """\
class Plugin:
    def initialize(self, ctx):
        self.kept = None
        router = ctx.router
        router.post("/keep", self.keep)
        router.post("/read-kept", self.read_kept)

    async def keep(self, request):
        self.kept = request
        return {"body": (await request.body()).decode()}

    async def read_kept(self, request):
        mine = (await request.body()).decode()
        kept = [chunk async for chunk in self.kept.stream()]  # its body was read: drained
        fresh = type(self.kept)(self.kept.scope, self.kept.receive)
        try:  # a new reader of the old request's receive
            later = (await fresh.body()).decode()
        except Exception as exc:
            later = type(exc).__name__
        return {"mine": mine, "kept": [c.decode() for c in kept], "later": later}

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""


def test_a_request_kept_past_its_answer_never_reads_another_requests_body(tmp_path, plugin):
    """A request's receive is the server's only while that request is served: read from a
    later request, it has nothing more (not the later request's body)."""
    keeper = plugin("keeper", KEEPER, permissions={"router": True})
    with (
        serving(tmp_path, {"path": str(keeper)}) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        first = http.post("/keep", content=b"first body")
        second = http.post("/read-kept", content=b"second body")

    assert first.status_code == 200, first.text
    assert first.json() == {"body": "first body"}
    assert second.status_code == 200, second.text
    assert second.json()["mine"] == "second body"
    assert "second body" not in json.dumps(second.json()["kept"])
    assert "".join(second.json()["kept"]) == "first body"  # what it had read, kept
    assert second.json()["later"] == "ClientDisconnect"  # the old request is over
