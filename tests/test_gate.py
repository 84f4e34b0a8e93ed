"""The per-plugin gate and its per-version doors: in-flight counting (per door), holding,
refusing, draining, swapping the live version; and how the manager drives the gate (open
after initialize, closed and drained before stop, closed on failure and unload,
registrations released on unload)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable

import pytest

from helpers import PluginWriter
from tether import PluginManager, PluginStatus
from tether._gate import Door, Gate, GateState
from tether._seam import Entry
from tether._watchdog import RECORDS_TASKS, _tasks_of
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
    """Enter ``gate`` from another thread; remember what happened and which door it got."""

    def __init__(self, gate: Gate) -> None:
        super().__init__(daemon=True)
        self.gate = gate
        self.entered = False
        self.door: Door | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            door = self.gate.enter()
        except PluginUnavailableError as exc:
            self.error = exc
        else:
            self.entered = True
            self.door = door
            Gate.exit(door)


def enter(gate: Gate, style: str) -> Door:
    """Enter ``gate`` the ``sync`` or the ``async`` way; the door entered."""
    if style == "sync":
        return gate.enter()
    return asyncio.run(gate.enter_async())


def open_gate(name: str = "p", **options: float) -> Gate:
    """A gate whose one version (``gate.live``, version 1.0.0) is live and open."""
    gate = Gate(name, **options)  # type: ignore[arg-type]
    door = gate.add_door("1.0.0")
    door.committed = True
    gate.open(door)
    return gate


def swap(gate: Gate, version: str) -> tuple[Door, Door]:
    """Bring in a new version and make it the live one: ``(old, new)``."""
    old = gate.live
    assert old is not None
    new = gate.add_door(version)
    old.committed, new.committed = False, True
    gate.open(new)
    return old, new


def blocking_entry(door: Door) -> tuple[Entry, asyncio.Event]:
    """An async call into ``door`` that has a deadline (the default chain) and waits for
    the returned event: it sits in its entry's deadlines until then."""
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done"

    return Entry(door, work, "call:work"), release


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


def test_a_gate_without_a_version_cannot_open():
    gate = Gate("empty")
    with pytest.raises(ValueError, match=r"^plugin 'empty' has no version to open$"):
        gate.open()
    assert gate.state is GateState.CLOSED


def test_an_open_gate_counts_calls_in_flight_on_the_door_entered():
    gate = open_gate()
    first = gate.enter()
    second = gate.enter()
    assert first is second is gate.live
    assert (first.in_flight, gate.in_flight) == (2, 2)
    first.calls.pop()
    assert gate.in_flight == 1
    Gate.exit(second)
    assert (first.in_flight, gate.in_flight) == (0, 0)


@asynctest
async def test_enter_async_counts_like_enter():
    gate = open_gate()
    door = await gate.enter_async()
    assert door is gate.live
    assert (door.in_flight, gate.in_flight) == (1, 1)
    Gate.exit(door)
    assert gate.in_flight == 0


@pytest.mark.parametrize("style", ["sync", "async"])
def test_close_refuses_with_its_reason(style):
    gate = open_gate("cache-plugin")
    gate.close("it is stopping")
    assert gate.state is GateState.CLOSED
    assert gate.closed_reason == "it is stopping"
    assert not gate.live.is_open
    with pytest.raises(
        PluginUnavailableError, match="'cache-plugin' is unavailable: it is stopping"
    ):
        enter(gate, style)
    assert gate.in_flight == 0


def test_state_listeners_hear_every_change_in_order():
    gate = Gate("p")
    door = gate.add_door("1.0.0")
    heard: list[GateState] = []
    gate.state_listeners.append(heard.append)
    gate.open(door)
    gate.hold()
    gate.open()
    gate.close("bye")
    assert heard == [GateState.OPEN, GateState.HELD, GateState.OPEN, GateState.CLOSED]


def test_only_the_live_door_is_open_and_only_while_the_gate_is_open():
    gate = open_gate()
    old, new = swap(gate, "2.0.0")
    assert gate.live is new
    assert (old.is_open, new.is_open) == (False, True)
    assert (old.is_live, new.is_live) == (False, True)
    gate.hold()
    assert (old.is_open, new.is_open) == (False, False)
    gate.open()  # reopens the live version
    assert (old.is_open, new.is_open) == (False, True)
    gate.close()
    assert (old.is_open, new.is_open) == (False, False)
    gate.remove_door(new)
    assert gate.live is None
    assert gate.doors == (old,)


@asynctest
async def test_in_flight_counts_async_calls_with_a_deadline_too():
    gate = open_gate()
    door = gate.live
    entry, release = blocking_entry(door)
    task = asyncio.create_task(entry.acall())
    await wait_until_async(lambda: door.in_flight == 1)
    assert entry.deadlines is not None
    (key,) = entry.deadlines.tasks
    # kept where the watchdog looks: the task itself from 3.12, on 3.11 found by its frames
    assert entry.deadlines.tasks[key] is (task if RECORDS_TASKS else None)
    assert _tasks_of([(entry.deadlines, key)]) == {key: task}
    assert len(door.calls) == 0
    inside = gate.enter()
    assert gate.in_flight == 2
    Gate.exit(inside)
    release.set()
    assert await asyncio.wait_for(task, 5) == "done"
    assert (door.in_flight, gate.in_flight) == (0, 0)


def test_counting_is_exact_with_many_threads():
    gate = open_gate()
    threads, rounds = 8, 2000
    inside = threading.Barrier(threads + 1)
    leave = threading.Event()

    def work() -> None:
        for _ in range(rounds):
            Gate.exit(gate.enter())
        door = gate.enter()
        inside.wait()
        leave.wait(5)
        Gate.exit(door)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    inside.wait(5)
    assert gate.in_flight == threads
    leave.set()
    for worker in workers:
        worker.join(5)
    assert gate.in_flight == 0


# --------------------------------------------------------------------------- versions


def test_in_flight_is_counted_per_door():
    gate = open_gate()
    in_old = gate.enter()  # a call inside version 1 when version 2 goes live
    old, new = swap(gate, "2.0.0")
    in_new = gate.enter()
    assert (in_old, in_new) == (old, new)
    assert (old.in_flight, new.in_flight, gate.in_flight) == (1, 1, 2)
    Gate.exit(in_old)
    assert (old.in_flight, new.in_flight, gate.in_flight) == (0, 1, 1)
    Gate.exit(in_new)
    assert gate.in_flight == 0


@asynctest
async def test_drain_of_one_door_waits_for_exactly_its_calls():
    gate = open_gate()
    in_old = gate.enter()
    old, new = swap(gate, "2.0.0")
    in_new = gate.enter()

    draining = asyncio.create_task(gate.drain(5.0, door=old))
    assert not await gate.drain(0.02, door=old)  # the old version's call is still inside
    assert not draining.done()
    Gate.exit(in_old)
    assert await asyncio.wait_for(draining, 5)  # the new version's call is still inside
    assert new.in_flight == 1
    assert not await gate.drain(0.02)  # the whole gate is not drained yet
    Gate.exit(in_new)
    assert await gate.drain(5.0)


def test_a_sync_caller_held_during_a_swap_enters_the_new_version():
    gate = open_gate()
    gate.hold()
    caller = Caller(gate)
    caller.start()
    wait_until(lambda: gate.waiting == 1)
    _old, new = swap(gate, "2.0.0")
    caller.join(5)
    assert caller.entered
    assert caller.door is new
    assert gate.in_flight == 0


@asynctest
async def test_an_async_caller_held_during_a_swap_enters_the_new_version():
    gate = open_gate()
    gate.hold()
    task = asyncio.create_task(gate.enter_async())
    await wait_until_async(lambda: gate.waiting == 1)
    old, new = swap(gate, "2.0.0")
    door = await asyncio.wait_for(task, 5)
    assert door is new
    assert (old.in_flight, new.in_flight) == (0, 1)
    Gate.exit(door)


def test_wait_returns_the_live_door_not_the_one_asked_for():
    gate = open_gate()
    old, new = swap(gate, "2.0.0")
    assert gate.wait(old) is new
    assert gate.in_flight == 0  # waiting does not enter


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
    assert caller.door is gate.live
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
    door = await asyncio.wait_for(task, 5)
    assert door is gate.live
    assert gate.in_flight == 1
    assert gate.waiting == 0
    Gate.exit(door)


@asynctest
async def test_opening_from_another_thread_wakes_an_async_caller():
    gate = open_gate()
    gate.hold()
    task = asyncio.create_task(gate.enter_async())
    await wait_until_async(lambda: gate.waiting == 1)
    opener = threading.Thread(target=gate.open)
    opener.start()
    door = await asyncio.wait_for(task, 5)
    opener.join(5)
    assert gate.in_flight == 1
    Gate.exit(door)


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
    door = gate.enter()
    asyncio.get_running_loop().call_later(0.01, Gate.exit, door)
    assert await gate.drain(5.0)
    assert gate.in_flight == 0


@asynctest
async def test_drain_gives_up_after_its_timeout():
    gate = open_gate()
    door = gate.enter()
    assert not await gate.drain(0.02)
    assert gate.in_flight == 1
    Gate.exit(door)


@asynctest
async def test_drain_waits_for_async_calls_with_a_deadline():
    gate = open_gate()
    entry, release = blocking_entry(gate.live)
    task = asyncio.create_task(entry.acall())
    await wait_until_async(lambda: gate.in_flight == 1)
    assert not await gate.drain(0.02)
    release.set()
    assert await gate.drain(5.0)
    assert await task == "done"


# --------------------------------------------------------------------------- errors


def test_record_error_counts_and_tells_the_listeners():
    gate = open_gate()
    heard: list[tuple[str, BaseException]] = []
    gate.error_listeners.append(lambda source, error: heard.append((source, error)))
    first, second, third = ValueError("one"), KeyError("two"), ValueError("three")
    gate.record_error(first)
    gate.record_error(second, source="service:Cache")
    gate.record_error(third, source="hook:pre_request")
    assert gate.error_count == 3
    assert gate.errors_by_type == {"ValueError": 2, "KeyError": 1}
    assert gate.last_error is third
    assert gate.last_error_at is not None
    assert heard == [("call", first), ("service:Cache", second), ("hook:pre_request", third)]


# --------------------------------------------------------------------------- the manager

WATCHER = """
import threading

import tether


class Plugin(tether.Plugin):
    def __init__(self):
        self.seen = []
        self.release = threading.Event()
        self.gate = None  # the test hands the plugin its own gate (contexts do not show it)

    def initialize(self, ctx):
        super().initialize(ctx)
        self.seen.append(("initialize", self.gate.state))
        ctx.export_service("Slow", self)
        ctx.on_release(lambda: self.seen.append(("released", self.gate.state)))
        ctx.register_hook("pre_request", 100, lambda request: "watched")

    def start(self):
        self.seen.append(("start", self.gate.state))
        if self.ctx.plugin_config.get("fail_start"):
            raise RuntimeError("start exploded")

    def stop(self):
        self.seen.append(("stop", self.gate.state, self.gate.in_flight))

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


async def load_watcher(manager: PluginManager, path, config=None) -> Gate:
    """Load the watcher and let it see its own gate; the gate of its slot."""
    await manager.load_plugin(path, config)
    gate = manager._slot("watcher").gate
    manager.get_plugin("watcher").gate = gate
    return gate


@asynctest
async def test_the_manager_opens_the_gate_after_initialize_and_closes_it_around_stop(
    manager, watcher
):
    gate = await load_watcher(manager, watcher)
    handle = manager.get_handle("watcher")
    assert gate.state is GateState.CLOSED
    assert handle.state is GateState.CLOSED
    await manager.initialize_all()
    assert gate.state is GateState.OPEN
    assert handle.state is GateState.OPEN
    await manager.start_all()
    assert gate.state is GateState.OPEN
    await manager.stop_all()
    assert gate.state is GateState.CLOSED
    assert gate.closed_reason == "it is stopped"
    assert handle.closed_reason == "it is stopped"
    seen = manager.get_plugin("watcher").seen
    assert seen == [
        ("initialize", GateState.CLOSED),
        ("start", GateState.OPEN),
        ("stop", GateState.CLOSED, 0),
    ]


@asynctest
async def test_stop_waits_for_a_service_call_in_flight_on_another_thread(manager, watcher):
    gate = await load_watcher(manager, watcher)
    await manager.initialize_all()
    await manager.start_all()
    plugin = manager.get_plugin("watcher")
    proxy = manager.runtime.services.import_("host", "watcher", "Slow")
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(proxy.block()))
    caller.start()
    await wait_until_async(lambda: ("call-begins",) in plugin.seen)
    door = gate.live
    assert (door.in_flight, gate.in_flight) == (1, 1)  # a sync service call, on its door
    assert manager.get_handle("watcher").in_flight == 1
    stopping = asyncio.create_task(manager.stop_all())
    await wait_until_async(lambda: gate.state is GateState.CLOSED)  # stopping: draining
    assert not stopping.done()
    assert not any(step[0] == "stop" for step in plugin.seen)  # not while the call is inside
    plugin.release.set()
    await asyncio.wait_for(stopping, 5)
    await asyncio.to_thread(caller.join, 5)
    assert results == ["done"]
    assert plugin.seen[-2:] == [("call-ends",), ("stop", GateState.CLOSED, 0)]


@asynctest
async def test_a_failed_start_closes_the_gate_and_counts_the_error(manager, watcher):
    gate = await load_watcher(manager, watcher, {"config": {"fail_start": True}})
    await manager.initialize_all()
    with pytest.raises(PluginLifecycleError, match="start exploded"):
        await manager.start_all()
    handle = manager.get_handle("watcher")
    assert manager.get_status("watcher") is PluginStatus.ERROR
    assert gate.state is GateState.CLOSED
    assert gate.closed_reason == "its start failed"
    assert gate.error_count == 1
    assert (handle.error_count, handle.errors_by_type()) == (1, {"RuntimeError": 1})
    assert str(handle.last_error) == "start exploded"
    with pytest.raises(PluginUnavailableError, match="its start failed"):
        gate.enter()


@asynctest
async def test_unload_closes_the_gate_and_releases_what_the_plugin_registered(manager, watcher):
    gate = await load_watcher(manager, watcher)
    await manager.initialize_all()
    await manager.start_all()
    plugin = manager.get_plugin("watcher")
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


def test_the_watchdog_scans_less_often_once_short_timeouts_are_gone():
    import gc

    from tether._watchdog import Deadlines, _Watchdog

    watchdog = _Watchdog()  # its own: other tests' entries do not count
    long = Deadlines(object(), 10.0)
    watchdog.watch(long)
    assert watchdog.tick == pytest.approx(0.05)
    short = Deadlines(object(), 0.02)
    watchdog.watch(short)
    watchdog.scan()
    assert watchdog.tick == pytest.approx(0.005)
    del short
    gc.collect()
    watchdog.scan()
    assert watchdog.tick == pytest.approx(0.05)
