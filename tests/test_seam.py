"""The seam: every call into a plugin, through real plugins loaded by a real manager.

The call chain a config selects, the ``timeout``, ``validation`` and ``logging`` links,
call metrics, error attribution across plugins, exact service signatures, and tracing
(in a subprocess, since the global OpenTelemetry tracer provider is set once per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from helpers import PluginWriter
from tether import PluginHandle, PluginManager, TetherConfig, blame
from tether._chain import LINKS
from tether.errors import (
    CallInputError,
    CallTimeoutError,
    ConfigError,
    HookTimeoutError,
    PluginUnavailableError,
)


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


async def poll_until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.005)


Settings = Mapping[str, object]


@contextlib.asynccontextmanager
async def running(
    state: Path, *plugins: Path | tuple[Path, Settings]
) -> AsyncIterator[PluginManager]:
    """A manager with ``plugins`` (a path, or a path and its settings) loaded and started."""
    manager = PluginManager(state_directory=state)
    try:
        for plugin in plugins:
            path, settings = plugin if isinstance(plugin, tuple) else (plugin, None)
            await manager.load_plugin(path, settings)
        await manager.initialize_all()
        await manager.start_all()
        yield manager
    finally:
        await manager.aclose()


@contextlib.asynccontextmanager
async def from_config(state: Path, config: TetherConfig) -> AsyncIterator[PluginManager]:
    manager = PluginManager(state_directory=state)
    try:
        await manager.load_plugins_from_config(config)
        await manager.initialize_all()
        await manager.start_all()
        yield manager
    finally:
        await manager.aclose()


@pytest.fixture
def plugin(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


# One plugin with every kind of way in: plain operations, an async one that never
# finishes, a busy sync one, an async hook handler, an event handler and a service.
WORKER = """\
import asyncio
import time


class Jobs:
    def __init__(self, plugin):
        self._plugin = plugin

    async def wait(self):
        await self._plugin.hang()


class Plugin:
    def initialize(self, ctx):
        self.entered = 0
        self.started = asyncio.Event()
        self.handled = []
        ctx.export_service("Jobs", Jobs(self))
        ctx.register_hook("pre_request", 1, self.on_request)
        ctx.subscribe_event("jobs.*", self.on_job)

    def add(self, a, b):
        self.entered += 1
        return a + b

    def boom(self):
        self.entered += 1
        raise RuntimeError("boom")

    async def hang(self):
        self.entered += 1
        self.started.set()
        await asyncio.Event().wait()

    def busy(self, seconds):
        time.sleep(seconds)  # runs past timeouts.call: a sync call cannot be interrupted
        return "finished"

    async def on_request(self, arg):
        await self.hang()

    async def on_job(self, event):
        if event.data == "hang":
            await self.hang()
        self.handled.append(event.data)

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

WORKER_EVENTS = {"subscribes": ["jobs.*"], "publishes": []}


def worker(plugin: PluginWriter, **fields: object) -> Path:
    return plugin("worker", WORKER, exports=[{"name": "Jobs"}], events=WORKER_EVENTS, **fields)


# A plugin that uses the worker's service: importing it needs the dependency.
CLIENT = """\
class Plugin:
    def initialize(self, ctx):
        self.jobs = ctx.import_service("worker", "Jobs")

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""


def client(plugin: PluginWriter) -> Path:
    return plugin("client", CLIENT, dependencies=[{"name": "worker"}])


async def call_as(style: str, handle: PluginHandle, op: str, *args: object, **kwargs: object):
    """``handle.call`` or ``await handle.acall``, as ``style`` says."""
    if style == "call":
        return handle.call(op, *args, **kwargs)
    return await handle.acall(op, *args, **kwargs)


def call_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "tether.calls"]


def chain_of(manager: PluginManager, name: str) -> tuple[str, ...]:
    live = manager._slot(name).gate.live
    assert live is not None
    return live.chain.links


# --------------------------------------------------------------------------- the call chain


@asynctest
async def test_a_plugin_entry_selects_its_call_chain(plugin, state, caplog):
    caplog.set_level(logging.DEBUG, logger="tether.calls")
    path = worker(plugin)
    async with running(state, (path, {"call_chain": ["logging"]})) as manager:
        handle = manager.get_handle("worker")
        assert chain_of(manager, "worker") == ("logging",)
        assert handle.call("add", 1, 2) == 3

        assert len(call_lines(caplog)) == 1  # logging: on
        assert handle.metrics()["call:add"].calls == 0  # metrics: off


@asynctest
async def test_the_plugins_section_chain_applies_to_entries_without_their_own(
    plugin, state, caplog
):
    caplog.set_level(logging.DEBUG, logger="tether.calls")
    config = TetherConfig.model_validate(
        {
            "plugins": {
                "call_chain": ["metrics"],
                "plugins": [
                    {"path": str(worker(plugin))},
                    {"path": str(client(plugin)), "call_chain": ["logging", "metrics"]},
                ],
            }
        }
    )
    async with from_config(state, config) as manager:
        assert chain_of(manager, "worker") == ("metrics",)
        assert chain_of(manager, "client") == ("logging", "metrics")  # the entry wins
        assert manager.get_handle("worker").call("add", 1, 2) == 3

        assert manager.get_handle("worker").metrics()["call:add"].calls == 1
        assert call_lines(caplog) == []  # the worker's chain has no logging link


@pytest.mark.parametrize(
    ("links", "complaint"),
    [
        (["tracing", "retry", "metrics"], "retry"),
        (["metrics", "logging", "metrics"], "metrics"),
    ],
    ids=["unknown-link", "repeated-link"],
)
@pytest.mark.parametrize("where", ["entry", "section"])
@asynctest
async def test_a_bad_call_chain_is_a_config_error_naming_the_plugin_and_the_links(
    plugin, state, links, complaint, where
):
    entry: dict[str, object] = {"path": str(worker(plugin))}
    section: dict[str, object] = {"plugins": [entry]}
    (entry if where == "entry" else section)["call_chain"] = links
    manager = PluginManager(state_directory=state)
    try:
        with pytest.raises(ConfigError) as caught:
            await manager.load_plugins_from_config(
                TetherConfig.model_validate({"plugins": section})
            )
        assert not manager.is_loaded("worker")
    finally:
        await manager.aclose()

    error = caught.value
    assert error.plugin == "worker"
    assert "plugin 'worker'" in str(error)
    assert complaint in str(error)
    said = f"{error} {error.hint}"
    assert all(link in said for link in LINKS), f"the known links are not named: {said!r}"


@asynctest
async def test_an_empty_call_chain_still_passes_the_gate_but_counts_nothing(plugin, state):
    async with running(state, (worker(plugin), {"call_chain": []})) as manager:
        handle = manager.get_handle("worker")
        assert chain_of(manager, "worker") == ()
        assert handle.call("add", 1, 2) == 3
        assert await handle.acall("add", 3, 4) == 7
        with pytest.raises(RuntimeError, match="boom"):
            handle.call("boom")

        assert handle.metrics()["call:add"].calls == 0
        assert handle.metrics()["call:boom"].calls == 0
        assert handle.error_count == 0  # no recovery link either

        manager.set_enabled("worker", enabled=False, reason="switched off", persist=False)
        with pytest.raises(PluginUnavailableError, match="switched off"):
            handle.call("add", 1, 2)
        with pytest.raises(PluginUnavailableError, match="switched off"):
            await handle.acall("add", 1, 2)
        assert manager.get_plugin("worker").entered == 3  # the refused calls never entered


# --------------------------------------------------------------------------- the timeout link


async def _hook(manager: PluginManager) -> None:
    outcome = await manager.runtime.hooks.run("pre_request", None)
    outcome.raise_first()


async def _service(manager: PluginManager) -> None:
    await manager.get_plugin("client").jobs.wait()


async def _operation(manager: PluginManager) -> None:
    await manager.get_handle("worker").acall("hang")


async def _event(manager: PluginManager) -> None:
    await manager.runtime.events.publish("jobs.run", "hang")
    [subscription] = manager.runtime.events.subscriptions("worker")
    await poll_until(lambda: subscription.failed == 1)
    raise manager.get_handle("worker").last_error  # what the subscriber's delivery raised


TIMED_CALLS = {
    "hook": (_hook, "hook:pre_request", HookTimeoutError),
    "service": (_service, "service:Jobs.wait", CallTimeoutError),
    "handle-acall": (_operation, "call:hang", CallTimeoutError),
    "event": (_event, "event:jobs.*", CallTimeoutError),
}


def _timeout_message(source: str, limit: str) -> str:
    if source.startswith("hook:"):
        hook = source.partition(":")[2]
        return f"hook execution timeout: {hook} hook exceeded {limit} timeout"
    return f"plugin execution timeout: plugin 'worker' did not finish {source} within {limit}"


@pytest.mark.parametrize("kind", list(TIMED_CALLS))
@pytest.mark.parametrize(
    ("manifest", "entry", "limit"),
    [({"call": 0.1}, None, "100ms"), ({"call": 30}, {"call": "200ms"}, "200ms")],
    ids=["manifest-timeout", "config-override"],
)
@asynctest
async def test_an_async_call_past_its_timeout_raises_is_counted_and_leaves_nothing_in_flight(
    plugin, state, kind, manifest, entry, limit
):
    call, source, error_type = TIMED_CALLS[kind]
    settings = {"timeouts": entry} if entry is not None else {}
    path = worker(plugin, timeouts=manifest)
    async with running(state, (path, settings), client(plugin)) as manager:
        handle = manager.get_handle("worker")

        with pytest.raises(CallTimeoutError) as caught:
            await call(manager)

        error = caught.value
        assert type(error) is error_type
        assert str(error) == _timeout_message(source, limit)
        assert error.plugin == "worker"
        assert blame(error) == "worker"
        assert manager.get_plugin("worker").entered == 1
        assert handle.error_count == 1
        assert handle.errors_by_type() == {error_type.__name__: 1}
        assert (handle.metrics()[source].calls, handle.metrics()[source].errors) == (1, 1)
        assert handle.in_flight == 0
        assert manager.get_handle("client").error_count == 0


@asynctest
async def test_an_event_handler_that_timed_out_does_not_stop_the_next_delivery(plugin, state):
    async with running(state, worker(plugin, timeouts={"call": 0.1})) as manager:
        await manager.runtime.events.publish("jobs.run", "hang")
        await manager.runtime.events.publish("jobs.run", "fine")
        [subscription] = manager.runtime.events.subscriptions("worker")
        await poll_until(lambda: subscription.delivered == 1)
        assert subscription.failed == 1
        assert manager.get_plugin("worker").handled == ["fine"]


@asynctest
async def test_a_call_the_host_cancels_gets_cancelled_error_and_is_not_counted(plugin, state):
    async with running(state, worker(plugin)) as manager:  # timeouts.call: the default 30s
        handle = manager.get_handle("worker")
        task = asyncio.create_task(handle.acall("hang"))
        await poll_until(manager.get_plugin("worker").started.is_set)
        assert handle.in_flight == 1
        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            await task

        assert handle.in_flight == 0
        assert handle.error_count == 0
        assert handle.metrics()["call:hang"].errors == 0


@pytest.mark.parametrize("style", ["call", "acall"])
@asynctest
async def test_a_sync_call_past_its_timeout_is_not_interrupted(plugin, state, style):
    async with running(state, worker(plugin, timeouts={"call": 0.1})) as manager:
        handle = manager.get_handle("worker")
        result = await call_as(style, handle, "busy", 0.3)
        await asyncio.sleep(0.05)  # the watchdog's turn, had it anything to cancel

        assert result == "finished"  # in-process, a sync call runs to its end
        assert handle.error_count == 0
        assert handle.in_flight == 0


# --------------------------------------------------------------------------- the validation link


VALIDATING = {"call_chain": ["recovery", "metrics", "validation"]}


@pytest.mark.parametrize(
    ("args", "kwargs", "detail"),
    [
        ((1,), {}, "missing a required argument: 'b'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1, 2), {"c": 3}, "got an unexpected keyword argument 'c'"),
    ],
    ids=["missing", "too-many", "unknown-keyword"],
)
@pytest.mark.parametrize("style", ["call", "acall"])
@asynctest
async def test_arguments_that_do_not_fit_are_refused_before_the_plugin_is_entered(
    plugin, state, args, kwargs, detail, style
):
    async with running(state, (worker(plugin), VALIDATING)) as manager:
        handle = manager.get_handle("worker")
        with pytest.raises(CallInputError) as caught:
            await call_as(style, handle, "add", *args, **kwargs)

        error = caught.value
        assert error.plugin == "worker"
        assert error.source == "call:add"
        assert str(error) == (
            "invalid input: call:add of plugin 'worker' was called with arguments that do "
            f"not fit it: {detail}"
        )
        assert manager.get_plugin("worker").entered == 0
        assert handle.error_count == 0
        assert handle.metrics()["call:add"].errors == 0
        assert handle.call("add", 1, 2) == 3  # arguments that fit pass


# --------------------------------------------------------------------------- the logging link


@asynctest
async def test_the_logging_link_logs_one_debug_line_per_call(plugin, state, caplog):
    caplog.set_level(logging.DEBUG, logger="tether.calls")
    async with running(state, (worker(plugin), {"call_chain": ["logging", "metrics"]})) as manager:
        handle = manager.get_handle("worker")
        handle.call("add", 1, 2)
        with pytest.raises(RuntimeError):
            handle.call("boom")
        await handle.acall("add", 2, 3)

    lines = call_lines(caplog)
    assert [r.levelno for r in lines] == [logging.DEBUG] * 3
    ok, failed, ok_async = (r.getMessage() for r in lines)
    for message in (ok, failed, ok_async):
        assert message.startswith("plugin 'worker' 1.0.0 call:")
    assert "call:add" in ok
    assert ok.endswith(" ok")
    assert "call:boom" in failed
    assert failed.endswith("RuntimeError: boom")
    assert ok_async.endswith(" ok")


@asynctest
async def test_without_the_logging_link_calls_log_nothing(plugin, state, caplog):
    caplog.set_level(logging.DEBUG, logger="tether.calls")
    async with running(state, worker(plugin)) as manager:  # the default chain
        manager.get_handle("worker").call("add", 1, 2)
    assert call_lines(caplog) == []


# --------------------------------------------------------------------------- metrics and blame


@asynctest
async def test_handle_metrics_count_calls_and_errors_per_source_and_version(plugin, state):
    async with running(state, worker(plugin)) as manager:
        handle = manager.get_handle("worker")
        for a in range(3):
            handle.call("add", a, 1)
        for _ in range(2):
            with pytest.raises(RuntimeError) as caught:
                await handle.acall("boom")
        await manager.runtime.events.publish("jobs.done", "ok")
        [subscription] = manager.runtime.events.subscriptions("worker")
        await poll_until(lambda: subscription.delivered == 1)

        metrics = handle.metrics()
        counts = {source: (m.calls, m.errors, m.by_version) for source, m in metrics.items()}
        assert counts["call:add"] == (3, 0, {"1.0.0": 3})
        assert counts["call:boom"] == (2, 2, {"1.0.0": 2})
        assert counts["event:jobs.*"] == (1, 0, {"1.0.0": 1})
        assert metrics["call:add"].to_dict()["calls"] == 3
        assert handle.error_count == 2
        assert handle.errors_by_type() == {"RuntimeError": 2}
        assert blame(caught.value) == "worker"
        assert blame(RuntimeError("never passed a seam")) is None


# --------------------------------------------------------------------------- attribution

# Three plugins: front's hooks and event handler call middle's service, which calls
# back's service, which raises the same prepared exception object every time (or, for
# ``hang``, runs past back's timeouts.call).
BACK = """\
import asyncio

PREPARED = KeyError("prepared")


class Store:
    def fetch(self, key):
        raise PREPARED

    async def afetch(self, key):
        raise PREPARED

    async def hang(self):
        await asyncio.Event().wait()


class Plugin:
    def initialize(self, ctx):
        ctx.export_service("Store", Store())

    def fail(self):
        raise PREPARED

    async def afail(self):
        raise PREPARED

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

MIDDLE = """\
class Users:
    def __init__(self, store):
        self._store = store

    def get(self, key):
        return self._store.fetch(key)

    async def aget(self, key):
        return await self._store.afetch(key)

    async def ahang(self):
        await self._store.hang()


class Plugin:
    def initialize(self, ctx):
        ctx.export_service("Users", Users(ctx.import_service("back", "Store")))

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

FRONT = """\
class Plugin:
    def initialize(self, ctx):
        self.users = ctx.import_service("middle", "Users")
        ctx.register_hook("pre_request", 1, self.sync_hook)
        ctx.register_hook("post_request", 1, self.async_hook)
        ctx.register_hook("pre_response", 1, self.hanging_hook)
        ctx.subscribe_event("front.go", self.on_go)

    def sync_hook(self, arg):
        return self.users.get(arg)

    async def async_hook(self, arg):
        return await self.users.aget(arg)

    async def hanging_hook(self, arg):
        await self.users.ahang()

    def on_go(self, event):
        return self.users.get(event.data)

    async def wait(self):
        await self.users.ahang()

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""


@pytest.fixture
def chain_of_three(plugin):
    return (
        plugin("back", BACK, exports=[{"name": "Store"}], timeouts={"call": 0.1}),
        plugin("middle", MIDDLE, exports=[{"name": "Users"}], dependencies=[{"name": "back"}]),
        plugin(
            "front",
            FRONT,
            dependencies=[{"name": "middle"}],
            events={"subscribes": ["front.go"]},
        ),
    )


async def fire(manager: PluginManager, style: str) -> BaseException:
    """Make front call through middle into back (sync: the ``call`` of a hook; async: the
    ``run`` of an async hook; event: an event front handles); what reached the top."""
    hooks = manager.runtime.hooks
    if style == "event":
        [subscription] = manager.runtime.events.subscriptions("front")
        failed = subscription.failed
        await manager.runtime.events.publish("front.go", "user:1")
        await poll_until(lambda: subscription.failed == failed + 1)
        error = manager.get_handle("back").last_error
        assert error is not None
        return error
    outcome = hooks.call("pre_request", "user:1") if style == "sync" else None
    if outcome is None:
        outcome = await hooks.run("post_request", "user:1")
    [failure] = outcome.failures
    assert failure.plugin == "front"  # the handler that failed, as the host sees it
    return failure.error


def errors(manager: PluginManager) -> dict[str, int]:
    return {name: manager.get_handle(name).error_count for name in ("front", "middle", "back")}


STYLES = ["sync", "async", "event"]


@pytest.mark.parametrize("style", STYLES)
@asynctest
async def test_an_error_is_counted_once_against_the_innermost_plugin_it_left(
    chain_of_three, state, style
):
    async with running(state, *chain_of_three) as manager:
        error = await fire(manager, style)

        assert type(error) is KeyError
        assert blame(error) == "back"  # where it was raised
        assert errors(manager) == {"front": 0, "middle": 0, "back": 1}
        service = "service:Store.afetch" if style == "async" else "service:Store.fetch"
        assert manager.get_handle("back").metrics()[service].errors == 1
        for name in ("front", "middle"):
            metrics = manager.get_handle(name).metrics()
            assert sum(m.errors for m in metrics.values()) == 0
            assert sum(m.calls for m in metrics.values()) == 1


@pytest.mark.parametrize("style", STYLES)
@asynctest
async def test_the_same_exception_object_raised_in_two_calls_counts_twice(
    chain_of_three, state, style
):
    async with running(state, *chain_of_three) as manager:
        first = await fire(manager, style)
        second = await fire(manager, style)

        assert first is second  # one prepared exception object
        assert errors(manager) == {"front": 0, "middle": 0, "back": 2}


@pytest.mark.parametrize("style", ["call", "acall"])
@asynctest
async def test_the_same_exception_object_raised_by_two_direct_calls_counts_twice(
    chain_of_three, state, style
):
    async with running(state, *chain_of_three) as manager:
        handle = manager.get_handle("back")
        op = "fail" if style == "call" else "afail"
        raised = []
        for _ in range(2):
            with pytest.raises(KeyError) as caught:
                await call_as(style, handle, op)
            raised.append(caught.value)

        assert raised[0] is raised[1]
        assert handle.error_count == 2
        assert handle.metrics()[f"call:{op}"].errors == 2


@pytest.mark.parametrize("style", STYLES)
@asynctest
async def test_a_refusal_by_a_stopped_dependency_is_not_counted_against_the_caller(
    chain_of_three, state, style
):
    async with running(state, *chain_of_three) as manager:
        await manager.disable_plugin("back", force=True, reason="it is under maintenance")
        if style == "event":
            [subscription] = manager.runtime.events.subscriptions("front")
            await manager.runtime.events.publish("front.go", "user:1")
            await poll_until(lambda: subscription.failed + subscription.dropped == 1)
        else:
            error = await fire(manager, style)
            assert type(error) is PluginUnavailableError
            assert error.plugin == "back"
            assert blame(error) == "back"
            assert "under maintenance" in str(error)

        assert errors(manager) == {"front": 0, "middle": 0, "back": 0}
        front = manager.get_handle("front").metrics()
        assert sum(m.errors for m in front.values()) == 0


@pytest.mark.parametrize("style", ["hook", "handle-acall"])
@asynctest
async def test_a_dependencys_timeout_passing_up_through_the_caller_is_the_dependencys_alone(
    chain_of_three, state, style
):
    async with running(state, *chain_of_three) as manager:
        if style == "hook":
            [failure] = (await manager.runtime.hooks.run("pre_response", None)).failures
            error = failure.error
        else:
            with pytest.raises(CallTimeoutError) as caught:
                await manager.get_handle("front").acall("wait")
            error = caught.value

        assert type(error) is CallTimeoutError
        assert error.plugin == "back"
        assert str(error) == (
            "plugin execution timeout: plugin 'back' did not finish service:Store.hang within 100ms"
        )
        assert errors(manager) == {"front": 0, "middle": 0, "back": 1}
        assert blame(error) == "back"


@asynctest
async def test_an_event_handler_failing_on_a_dependencys_refusal_is_a_failed_delivery(
    chain_of_three, state
):
    async with running(state, *chain_of_three) as manager:
        await manager.disable_plugin("back", force=True)
        [subscription] = manager.runtime.events.subscriptions("front")
        await manager.runtime.events.publish("front.go", "user:1")
        await poll_until(lambda: subscription.failed + subscription.dropped == 1)

        # front's gate is open and its handler ran: back refused, not front
        assert (subscription.delivered, subscription.failed, subscription.dropped) == (0, 1, 0)


# --------------------------------------------------------------------------- exact signatures

SIGNATURES = """\
class Calculator:
    def compute(self, result, exc=None, *, d=1, k=2, first=False):
        return {"result": result, "exc": exc, "d": d, "k": k, "first": first}

    async def acompute(self, result, exc=None, *, d=1, k=2, first=False):
        return {"result": result, "exc": exc, "d": d, "k": k, "first": first}


class Plugin:
    def initialize(self, ctx):
        ctx.export_service("Calculator", Calculator())

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

USER = """\
class Plugin:
    def initialize(self, ctx):
        self.calculator = ctx.import_service("calc", "Calculator")

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""


@pytest.fixture
def calculator(plugin):
    return (
        plugin("calc", SIGNATURES, exports=[{"name": "Calculator"}]),
        plugin("user", USER, dependencies=[{"name": "calc"}]),
    )


async def invoke(method: Callable[..., object], *args: object, **kwargs: object) -> object:
    result = method(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


@pytest.mark.parametrize("method", ["compute", "acompute"])
@asynctest
async def test_a_service_method_is_callable_by_keyword_with_its_defaults(calculator, state, method):
    async with running(state, *calculator) as manager:
        proxied = getattr(manager.get_plugin("user").calculator, method)

        everything = await invoke(proxied, result=1, exc=2, d=3, k=4, first=True)
        defaults = await invoke(proxied, 5)

        assert everything == {"result": 1, "exc": 2, "d": 3, "k": 4, "first": True}
        assert defaults == {"result": 5, "exc": None, "d": 1, "k": 2, "first": False}
        assert [
            (p.name, p.kind, p.default) for p in inspect.signature(proxied).parameters.values()
        ] == [
            ("result", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
            ("exc", inspect.Parameter.POSITIONAL_OR_KEYWORD, None),
            ("d", inspect.Parameter.KEYWORD_ONLY, 1),
            ("k", inspect.Parameter.KEYWORD_ONLY, 2),
            ("first", inspect.Parameter.KEYWORD_ONLY, False),
        ]


@pytest.mark.parametrize("method", ["compute", "acompute"])
@asynctest
async def test_keyword_only_parameters_stay_keyword_only_through_the_proxy(
    calculator, state, method
):
    async with running(state, *calculator) as manager:
        proxied = getattr(manager.get_plugin("user").calculator, method)
        with pytest.raises(TypeError, match="positional"):
            await invoke(proxied, 1, 2, 3)
        assert manager.get_handle("calc").error_count == 0  # the caller's mistake


# --------------------------------------------------------------------------- tracing

TRACE_B = """\
class Svc:
    def double(self, x):
        return 2 * x


class Plugin:
    def initialize(self, ctx):
        self.seen = []
        ctx.export_service("Svc", Svc())
        ctx.subscribe_event("a.done", self.seen.append)

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

TRACE_A = """\
from opentelemetry import trace


class Plugin:
    def initialize(self, ctx):
        self.ctx = ctx
        self.svc = ctx.import_service("b", "Svc")
        self.spans_seen = []
        ctx.register_hook("pre_request", 1, self.hook)

    def hook(self, arg):
        self.spans_seen.append(getattr(trace.get_current_span(), "name", None))
        value = self.svc.double(arg)
        self.ctx.publish_event_nowait("a.done", value)
        return value

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

# Run by a fresh interpreter: configure (or not) an SDK, run A's hook inside a host span,
# wait for B to handle A's event, and print what was recorded as JSON.
TRACE_SCRIPT = """\
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
with_sdk = sys.argv[1] == "sdk"
if with_sdk:
    trace.set_tracer_provider(provider)

from tether import PluginManager


async def main():
    manager = PluginManager(state_directory=Path(sys.argv[4]))
    try:
        await manager.load_plugin(sys.argv[3])
        await manager.load_plugin(sys.argv[2])
        await manager.initialize_all()
        await manager.start_all()
        results = []
        if not with_sdk:
            results += manager.runtime.hooks.call("pre_request", 1).results
            trace.set_tracer_provider(provider)  # too late: not compiled into the plugins
        with provider.get_tracer("host").start_as_current_span("request"):
            results += manager.runtime.hooks.call("pre_request", 2).results
        b = manager.get_plugin("b")
        for _ in range(1000):
            if len(b.seen) == len(results):
                break
            await asyncio.sleep(0.005)
        return results, len(b.seen), manager.get_plugin("a").spans_seen
    finally:
        await manager.aclose()


results, delivered, spans_seen = asyncio.run(main())
spans = [
    {
        "name": span.name,
        "trace": span.context.trace_id,
        "id": span.context.span_id,
        "parent": span.parent.span_id if span.parent is not None else None,
        "plugin": span.attributes.get("tether.plugin"),
        "version": span.attributes.get("tether.version"),
    }
    for span in exporter.get_finished_spans()
]
print(json.dumps({"results": results, "delivered": delivered, "spans_seen": spans_seen,
                  "spans": spans}))
"""


def run_traced(tmp_path: Path, plugin: PluginWriter, mode: str) -> dict[str, object]:
    a = plugin("a", TRACE_A, dependencies=[{"name": "b"}], events={"publishes": ["a.done"]})
    b = plugin("b", TRACE_B, exports=[{"name": "Svc"}], events={"subscribes": ["a.done"]})
    script = tmp_path / "traced.py"
    script.write_text(textwrap.dedent(TRACE_SCRIPT), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), mode, str(a), str(b), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_spans_follow_a_request_through_a_hook_a_service_and_an_event(tmp_path, plugin):
    seen = run_traced(tmp_path, plugin, "sdk")
    assert seen["results"] == [4]
    assert seen["delivered"] == 1
    assert seen["spans_seen"] == ["a hook:pre_request"]  # the hook ran inside its own span
    spans = {span["name"]: span for span in seen["spans"]}
    assert set(spans) == {
        "request",
        "a hook:pre_request",
        "b service:Svc.double",
        "b event:a.done",
    }
    request, hook = spans["request"], spans["a hook:pre_request"]
    service, event = spans["b service:Svc.double"], spans["b event:a.done"]
    assert len({span["trace"] for span in spans.values()}) == 1  # one trace
    assert hook["parent"] == request["id"]  # the caller's span
    assert service["parent"] == hook["id"]  # hook -> service
    assert event["parent"] == hook["id"]  # published in the hook: the delivery continues it
    assert (hook["plugin"], service["plugin"], event["plugin"]) == ("a", "b", "b")
    assert {span["version"] for span in (hook, service, event)} == {"1.0.0"}


def test_without_an_sdk_when_plugins_load_no_span_is_made(tmp_path, plugin):
    seen = run_traced(tmp_path, plugin, "no-sdk")
    assert seen["results"] == [2, 4]
    assert seen["delivered"] == 2
    # without an SDK the hook has no span; with one set up after loading, only the host's
    assert seen["spans_seen"] == [None, "request"]
    assert [span["name"] for span in seen["spans"]] == ["request"]  # only the host's own
