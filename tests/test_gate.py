"""The per-plugin gate: in-flight counting, holding, refusing, draining; and how the
manager drives it (open after initialize, closed and drained before stop, closed on
failure and unload, registrations released on unload)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable

import pytest

from helpers import PluginWriter
from tether import PluginManager, PluginStatus
from tether._gate import Gate, GateState
from tether.errors import PluginLifecycleError, PluginUnavailableError

TIMEOUT_MESSAGE = "request timeout: plugin reload exceeded queue timeout (50ms)"


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


def wait_until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Poll until ``predicate()`` holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        time.sleep(0.001)


async def wait_until_async(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.001)


class Caller(threading.Thread):
    """Enter ``gate`` from another thread; remember what happened."""

    def __init__(self, gate: Gate) -> None:
        super().__init__(daemon=True)
        self.gate = gate
        self.entered = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.gate.enter()
        except PluginUnavailableError as exc:
            self.error = exc
        else:
            self.entered = True
            self.gate.exit()


def enter(gate: Gate, style: str) -> None:
    """Enter ``gate`` the ``sync`` or the ``async`` way."""
    if style == "sync":
        gate.enter()
    else:
        asyncio.run(gate.enter_async())


def open_gate(name: str = "p", **options: float) -> Gate:
    gate = Gate(name, **options)  # type: ignore[arg-type]
    gate.open()
    return gate


# --------------------------------------------------------------------------- states


def test_a_new_gate_is_closed_and_refuses_with_the_plugin_and_reason():
    gate = Gate("auth-plugin")
    assert gate.state is GateState.CLOSED
    assert not gate.is_open
    with pytest.raises(PluginUnavailableError) as caught:
        gate.enter()
    assert str(caught.value) == "plugin 'auth-plugin' is unavailable: it is not running"
    assert caught.value.plugin == "auth-plugin"
    assert caught.value.reason == "it is not running"
    assert gate.in_flight == 0


def test_an_open_gate_counts_calls_in_flight():
    gate = open_gate()
    gate.enter()
    gate.enter()
    assert gate.in_flight == 2
    gate.exit()
    assert gate.in_flight == 1
    gate.exit()
    assert gate.in_flight == 0


@asynctest
async def test_enter_async_counts_like_enter():
    gate = open_gate()
    await gate.enter_async()
    assert gate.in_flight == 1
    gate.exit()
    assert gate.in_flight == 0


@pytest.mark.parametrize("style", ["sync", "async"])
def test_close_refuses_with_its_reason(style):
    gate = open_gate("cache-plugin")
    gate.close("it is stopping")
    assert gate.state is GateState.CLOSED
    assert gate.closed_reason == "it is stopping"
    with pytest.raises(
        PluginUnavailableError, match="'cache-plugin' is unavailable: it is stopping"
    ):
        enter(gate, style)
    assert gate.in_flight == 0


def test_state_listeners_hear_every_change_in_order():
    gate = Gate("p")
    heard: list[GateState] = []
    gate.state_listeners.append(heard.append)
    gate.open()
    gate.hold()
    gate.open()
    gate.close("bye")
    assert heard == [GateState.OPEN, GateState.HELD, GateState.OPEN, GateState.CLOSED]


def test_probes_add_calls_the_gate_does_not_see_itself():
    gate = open_gate()
    outside = [2]
    gate.probes.append(lambda: outside[0])
    gate.enter()
    assert gate.in_flight == 3
    outside[0] = 0
    gate.exit()
    assert gate.in_flight == 0


def test_counting_is_exact_with_many_threads():
    gate = open_gate()
    threads, rounds = 8, 2000
    inside = threading.Barrier(threads + 1)
    leave = threading.Event()

    def work() -> None:
        for _ in range(rounds):
            gate.enter()
            gate.exit()
        gate.enter()
        inside.wait()
        leave.wait(5)
        gate.exit()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    inside.wait(5)
    assert gate.in_flight == threads
    leave.set()
    for worker in workers:
        worker.join(5)
    assert gate.in_flight == 0


# --------------------------------------------------------------------------- holding


def test_a_held_gate_makes_a_sync_caller_wait_until_it_opens():
    gate = open_gate()
    gate.hold()
    assert gate.state is GateState.HELD
    assert not gate.is_open
    caller = Caller(gate)
    caller.start()
    wait_until(lambda: gate.waiting == 1)
    assert not caller.entered
    gate.open()
    caller.join(5)
    assert caller.entered
    assert caller.error is None
    assert gate.waiting == 0
    assert gate.in_flight == 0


@asynctest
async def test_a_held_gate_makes_an_async_caller_wait_until_it_opens():
    gate = open_gate()
    gate.hold()
    task = asyncio.create_task(gate.enter_async())
    await wait_until_async(lambda: gate.waiting == 1)
    assert not task.done()
    gate.open()
    await asyncio.wait_for(task, 5)
    assert gate.in_flight == 1
    assert gate.waiting == 0
    gate.exit()


@asynctest
async def test_opening_from_another_thread_wakes_an_async_caller():
    gate = open_gate()
    gate.hold()
    task = asyncio.create_task(gate.enter_async())
    await wait_until_async(lambda: gate.waiting == 1)
    opener = threading.Thread(target=gate.open)
    opener.start()
    await asyncio.wait_for(task, 5)
    opener.join(5)
    assert gate.in_flight == 1
    gate.exit()


@pytest.mark.parametrize("style", ["sync", "async"])
def test_a_hold_longer_than_hold_timeout_refuses_with_the_reference_message(style):
    gate = open_gate("auth-plugin", hold_timeout=0.05)
    gate.hold()
    with pytest.raises(PluginUnavailableError) as caught:
        enter(gate, style)
    assert caught.value.reason == TIMEOUT_MESSAGE
    assert str(caught.value) == f"plugin 'auth-plugin' is unavailable: {TIMEOUT_MESSAGE}"
    assert gate.waiting == 0
    assert gate.in_flight == 0


@pytest.mark.parametrize("style", ["sync", "async"])
def test_max_waiting_bounds_the_queue(style):
    gate = open_gate("p", max_waiting=1)
    gate.hold()
    first = Caller(gate)
    first.start()
    wait_until(lambda: gate.waiting == 1)
    with pytest.raises(PluginUnavailableError, match="1 callers are already queued"):
        enter(gate, style)
    assert gate.waiting == 1
    gate.open()
    first.join(5)
    assert first.entered


def test_close_wakes_held_sync_callers_and_refuses_them():
    gate = open_gate()
    gate.hold()
    callers = [Caller(gate) for _ in range(3)]
    for caller in callers:
        caller.start()
    wait_until(lambda: gate.waiting == 3)
    gate.close("it was unloaded")
    for caller in callers:
        caller.join(5)
        assert not caller.entered
        assert isinstance(caller.error, PluginUnavailableError)
        assert caller.error.reason == "it was unloaded"
    assert gate.waiting == 0
    assert gate.in_flight == 0


@asynctest
async def test_close_wakes_held_async_callers_and_refuses_them():
    gate = open_gate()
    gate.hold()
    task = asyncio.create_task(gate.enter_async())
    await wait_until_async(lambda: gate.waiting == 1)
    gate.close("it is stopped")
    with pytest.raises(PluginUnavailableError, match="it is stopped"):
        await asyncio.wait_for(task, 5)
    assert gate.in_flight == 0


# --------------------------------------------------------------------------- draining


@asynctest
async def test_drain_returns_at_once_when_nothing_is_in_flight():
    gate = open_gate()
    assert await gate.drain(5.0)


@asynctest
async def test_drain_waits_for_calls_in_flight():
    gate = open_gate()
    gate.enter()
    asyncio.get_running_loop().call_later(0.01, gate.exit)
    assert await gate.drain(5.0)
    assert gate.in_flight == 0


@asynctest
async def test_drain_gives_up_after_its_timeout():
    gate = open_gate()
    gate.enter()
    assert not await gate.drain(0.02)
    assert gate.in_flight == 1
    gate.exit()


@asynctest
async def test_drain_counts_probes():
    gate = open_gate()
    busy = [1]
    gate.probes.append(lambda: busy[0])
    assert not await gate.drain(0.02)
    busy[0] = 0
    assert await gate.drain(1.0)


# --------------------------------------------------------------------------- errors


def test_record_error_counts_and_tells_the_listeners():
    gate = open_gate()
    heard: list[tuple[str, BaseException]] = []
    gate.error_listeners.append(lambda source, error: heard.append((source, error)))
    first, second = ValueError("one"), KeyError("two")
    gate.record_error(first)
    gate.record_error(second, source="service:Cache")
    assert gate.error_count == 2
    assert gate.last_error is second
    assert gate.last_error_at is not None
    assert heard == [("call", first), ("service:Cache", second)]


# --------------------------------------------------------------------------- the manager

WATCHER = """
import threading

import tether


class Plugin(tether.Plugin):
    def __init__(self):
        self.seen = []
        self.release = threading.Event()

    def initialize(self, ctx):
        super().initialize(ctx)
        self.seen.append(("initialize", ctx.gate.state))
        ctx.export_service("Slow", self)
        ctx.on_release(lambda: self.seen.append(("released", ctx.gate.state)))
        ctx.register_hook("pre_request", 100, lambda request: "watched")

    def start(self):
        self.seen.append(("start", self.ctx.gate.state))
        if self.ctx.plugin_config.get("fail_start"):
            raise RuntimeError("start exploded")

    def stop(self):
        self.seen.append(("stop", self.ctx.gate.state, self.ctx.gate.in_flight))

    def block(self):
        self.seen.append(("call-begins",))
        self.release.wait(5)
        self.seen.append(("call-ends",))
        return "done"
"""


@pytest.fixture
def watcher(tmp_path):
    return PluginWriter(tmp_path / "plugins")(
        "watcher",
        WATCHER,
        exports=[{"name": "Slow"}],
        config={"fail_start": {"type": "boolean", "default": False}},
    )


@pytest.fixture
def manager(tmp_path):
    manager = PluginManager(stop_timeout=2.0, state_directory=tmp_path / "state")
    yield manager
    asyncio.run(manager.aclose())


@asynctest
async def test_the_manager_opens_the_gate_after_initialize_and_closes_it_around_stop(
    manager, watcher
):
    await manager.load_plugin(watcher)
    gate = manager.get_gate("watcher")
    assert gate.state is GateState.CLOSED
    await manager.initialize_all()
    assert gate.state is GateState.OPEN
    await manager.start_all()
    assert gate.state is GateState.OPEN
    await manager.stop_all()
    assert gate.state is GateState.CLOSED
    assert gate.closed_reason == "it is stopped"
    seen = manager.get_plugin("watcher").seen
    assert seen == [
        ("initialize", GateState.CLOSED),
        ("start", GateState.OPEN),
        ("stop", GateState.CLOSED, 0),
    ]


@asynctest
async def test_stop_waits_for_a_service_call_in_flight_on_another_thread(manager, watcher):
    await manager.load_plugin(watcher)
    await manager.initialize_all()
    await manager.start_all()
    plugin = manager.get_plugin("watcher")
    proxy = manager.runtime.services.import_("host", "watcher", "Slow")
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(proxy.block()))
    caller.start()
    await wait_until_async(lambda: ("call-begins",) in plugin.seen)
    gate = manager.get_gate("watcher")
    assert gate.in_flight == 1
    stopping = asyncio.create_task(manager.stop_all())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # stop() is not called while the call is in flight
    assert gate.state is GateState.CLOSED
    plugin.release.set()
    await asyncio.wait_for(stopping, 5)
    await asyncio.to_thread(caller.join, 5)
    assert results == ["done"]
    assert plugin.seen[-2:] == [("call-ends",), ("stop", GateState.CLOSED, 0)]


@asynctest
async def test_a_failed_start_closes_the_gate_and_counts_the_error(manager, watcher):
    await manager.load_plugin(watcher, {"config": {"fail_start": True}})
    await manager.initialize_all()
    with pytest.raises(PluginLifecycleError, match="start exploded"):
        await manager.start_all()
    gate = manager.get_gate("watcher")
    assert manager.get_status("watcher") is PluginStatus.ERROR
    assert gate.state is GateState.CLOSED
    assert gate.closed_reason == "its start failed"
    assert gate.error_count == 1
    with pytest.raises(PluginUnavailableError, match="its start failed"):
        gate.enter()


@asynctest
async def test_unload_closes_the_gate_and_releases_what_the_plugin_registered(manager, watcher):
    await manager.load_plugin(watcher)
    await manager.initialize_all()
    await manager.start_all()
    plugin = manager.get_plugin("watcher")
    gate = manager.get_gate("watcher")
    proxy = manager.runtime.services.import_("host", "watcher", "Slow")
    assert (await manager.runtime.hooks.run("pre_request")).results == ["watched"]

    await manager.unload_plugin("watcher")

    assert gate.state is GateState.CLOSED
    assert gate.closed_reason == "it was unloaded"
    assert ("released", GateState.CLOSED) in plugin.seen
    assert (await manager.runtime.hooks.run("pre_request")).results == []
    with pytest.raises(PluginUnavailableError):
        proxy.block()
    assert manager.runtime.services.exports_of("watcher") == []
