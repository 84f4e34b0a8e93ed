"""The event bus: matching, ordering, isolation, full-queue policies, declarations, stop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Collection, Coroutine
from datetime import UTC, datetime

import pytest

from tether._events import (
    Event,
    EventBackend,
    EventBus,
    EventReceiver,
    EventStats,
    InProcessBackend,
    pattern_covers,
    pattern_matches,
)
from tether._gate import Door, Gate
from tether._manifest import Events, Manifest
from tether.errors import EventError, UndeclaredEventError


def open_door(plugin: str, version: str = "1.0.0", *, gate: Gate | None = None) -> Door:
    """A committed, open door: the running version of ``plugin`` (of a fresh gate by default)."""
    gate = gate or Gate(plugin)
    door = gate.add_door(version)
    door.committed = True
    gate.open(door)
    return door


def manifest(name: str, **events: tuple[str, ...]) -> Manifest:
    fields: dict[str, object] = {
        "name": name,
        "version": "1.0.0",
        "description": "d",
        "author": "tests",
        "entry": "m:Plugin",
    }
    if events:
        fields["events"] = Events(**events)
    return Manifest.model_validate(fields)


async def wait_until_async(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.001)


async def settle(rounds: int = 20) -> None:
    """Let every ready task run a few steps (no wall-clock waiting)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# --------------------------------------------------------------------------- matching

MATCHES = [
    ("user.created", "user.created", True),
    ("user.created", "user.deleted", False),
    ("user.created", "User.created", False),
    ("user.*", "user.created", True),
    ("user.*", "user.profile.updated", True),
    ("user.*", "user", False),
    ("user.*", "users.created", False),
    ("user.profile.*", "user.profile.updated", True),
    ("user.profile.*", "user.created", False),
    ("*", "anything.at.all", True),
    ("*", "x", True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), MATCHES, ids=str)
def test_pattern_matches(pattern, name, expected):
    assert pattern_matches(pattern, name) is expected


@pytest.mark.parametrize(("pattern", "name", "expected"), MATCHES, ids=str)
def test_bus_delivers_exactly_what_the_pattern_matches(pattern, name, expected):
    async def main():
        bus = EventBus()
        await bus.start()
        got: list[str] = []
        bus.subscribe(open_door("sub"), pattern, lambda e: got.append(e.name))
        await bus.publish(name)
        await bus.stop()
        return got

    assert asyncio.run(main()) == ([name] if expected else [])


@pytest.mark.parametrize(
    ("declared", "pattern", "expected"),
    [
        ("user.created", "user.created", True),
        ("user.*", "user.created", True),
        ("user.*", "user.profile.*", True),
        ("user.*", "user.*", True),
        ("user.profile.*", "user.*", False),
        ("user.*", "users.created", False),
        ("user.*", "*", False),
        ("*", "*", True),
        ("*", "anything", True),
        ("user.created", "user.*", False),
    ],
    ids=str,
)
def test_pattern_covers(declared, pattern, expected):
    assert pattern_covers(declared, pattern) is expected


@pytest.mark.parametrize("pattern", ["", "user*", "*.created", "user.*.x", "**", " user"])
def test_invalid_pattern_is_refused(pattern):
    bus = EventBus()
    with pytest.raises(EventError, match="invalid event pattern"):
        bus.subscribe(open_door("a"), pattern, print)


@pytest.mark.parametrize("name", ["", "user.*", "*", "user created "])
def test_invalid_event_name_is_refused(name):
    async def main():
        bus = EventBus()
        await bus.start()
        try:
            with pytest.raises(EventError, match="invalid event name"):
                await bus.publish(name)
        finally:
            await bus.stop()

    asyncio.run(main())


def test_each_subscriber_gets_one_copy_in_subscription_order_across_patterns():
    async def main():
        bus = EventBus()
        await bus.start()
        got: list[str] = []
        door = open_door("a")
        bus.subscribe(door, "*", lambda e: got.append("star"))
        bus.subscribe(door, "user.created", lambda e: got.append("exact"))
        bus.subscribe(door, "user.*", lambda e: got.append("prefix"))
        bus.subscribe(door, "order.*", lambda e: got.append("other"))
        await bus.publish("user.created")
        await bus.stop()
        return got

    assert sorted(asyncio.run(main())) == ["exact", "prefix", "star"]


# --------------------------------------------------------------------------- delivery


def test_every_subscriber_sees_events_in_publish_order():
    count = 3000

    async def main():
        bus = EventBus(queue_size=16)
        await bus.start()
        seen: dict[str, list[int]] = {}
        for n in range(5):
            plugin = f"p{n}"
            seen[plugin] = []

            async def handler(event: Event, out: list[int] = seen[plugin], n: int = n) -> None:
                if event.data % (n + 2) == 0:  # type: ignore[operator]
                    await asyncio.sleep(0)
                out.append(event.data)  # type: ignore[arg-type]

            bus.subscribe(open_door(plugin), "tick", handler)
        for i in range(count):
            await bus.publish("tick", i)
        assert await bus.stop() == 0
        return seen

    for values in asyncio.run(main()).values():
        assert values == list(range(count))


def test_sync_async_and_awaitable_returning_handlers_all_run():
    made: list[Coroutine[object, object, None]] = []

    async def main():
        bus = EventBus()
        await bus.start()
        got: list[str] = []

        def sync_handler(event: Event) -> None:
            got.append(f"sync:{event.data}")

        async def async_handler(event: Event) -> None:
            await asyncio.sleep(0)
            got.append(f"async:{event.data}")

        def returns_awaitable(event: Event) -> object:
            made.append(async_handler(Event(event.id, event.name, "wrapped", None, event.time)))
            return made[-1]

        door = open_door("a")
        for handler in (sync_handler, async_handler, returns_awaitable):
            bus.subscribe(door, "x", handler)
        await bus.publish("x", 1)
        await bus.stop()
        return got

    try:
        assert sorted(asyncio.run(main())) == ["async:1", "async:wrapped", "sync:1"]
    finally:
        for coroutine in made:  # never awaited if the bus failed to: no stray warning
            coroutine.close()


def test_a_failing_handler_is_counted_against_its_plugin_and_others_carry_on(caplog):
    async def main():
        bus = EventBus()
        await bus.start()
        bad_door, good_door = open_door("bad"), open_door("good")
        bad_gate, good_gate = bad_door.gate, good_door.gate
        sources: list[str] = []
        bad_gate.error_listeners.append(lambda source, exc: sources.append(source))
        good: list[int] = []

        def explode(event: Event) -> None:
            if event.data == 1:
                raise RuntimeError("boom")

        bad = bus.subscribe(bad_door, "job.*", explode)
        bus.subscribe(good_door, "job.*", lambda e: good.append(e.data))
        for i in range(3):
            await bus.publish("job.done", i, source="pub")
        await bus.stop()
        return bus, bad, bad_gate, good_gate, sources, good

    with caplog.at_level(logging.ERROR, logger="tether.events"):
        bus, bad, bad_gate, good_gate, sources, good = asyncio.run(main())
    assert good == [0, 1, 2]
    assert (bad.delivered, bad.failed, bad.dropped) == (2, 1, 0)
    assert bad_gate.error_count == 1
    assert str(bad_gate.last_error) == "boom"
    assert sources == ["event:job.*"]  # the source is the subscription
    assert good_gate.error_count == 0
    assert bus.stats()[("bad", "job.done")] == EventStats(delivered=2, failed=1)
    assert bus.stats()[("good", "job.done")] == EventStats(delivered=3)
    assert bus.stats()[("pub", "job.done")] == EventStats(published=3)
    [record] = caplog.records
    assert "plugin 'bad'" in record.getMessage()
    assert "'job.done'" in record.getMessage()
    assert record.exc_info is not None


def test_a_raising_error_listener_does_not_stop_delivery(caplog):
    async def main():
        bus = EventBus()
        await bus.start()
        door = open_door("a")
        gate = door.gate

        def broken_listener(source: str, exc: BaseException) -> None:
            raise ValueError("listener broke")

        gate.error_listeners.append(broken_listener)
        got: list[int] = []

        def handler(event: Event) -> None:
            got.append(event.data)  # type: ignore[arg-type]
            if event.data == 0:
                raise RuntimeError("boom")

        bus.subscribe(door, "x", handler)
        for i in range(3):
            await bus.publish("x", i)
        await bus.stop()
        return got, gate

    with caplog.at_level(logging.ERROR, logger="tether.events"):
        got, gate = asyncio.run(main())
    assert got == [0, 1, 2]
    assert gate.error_count == 1
    [record] = [r for r in caplog.records if "error listener failed" in r.getMessage()]
    assert "plugin 'a'" in record.getMessage()
    assert "event:x" in record.getMessage()
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "listener broke"


def test_a_closed_gate_drops_the_event_without_counting_an_error():
    async def main():
        bus = EventBus()
        await bus.start()
        door = open_door("sleepy")
        gate = door.gate
        gate.close("it is stopped")
        got: list[Event] = []
        sub = bus.subscribe(door, "x", got.append)
        await bus.publish("x")
        await bus.stop()
        return bus, sub, gate, got

    bus, sub, gate, got = asyncio.run(main())
    assert got == []
    assert (sub.delivered, sub.failed, sub.dropped) == (0, 0, 1)
    assert gate.error_count == 0
    assert bus.stats()[("sleepy", "x")].dropped == 1


def test_a_held_gate_delays_delivery_until_it_opens():
    async def main():
        bus = EventBus()
        await bus.start()
        door = open_door("a")
        gate = door.gate
        gate.hold()
        got: list[int] = []
        bus.subscribe(door, "x", lambda e: got.append(e.data))
        await bus.publish("x", 1)
        await settle()
        before = list(got)
        gate.open()
        await bus.stop()
        return before, got

    assert asyncio.run(main()) == ([], [1])


def test_event_fields():
    async def main():
        bus = EventBus()
        await bus.start()
        got: list[Event] = []
        bus.subscribe(open_door("a"), "*", got.append)
        before = datetime.now(UTC)
        published = [await bus.publish("user.created", {"n": i}, source="auth") for i in range(50)]
        after = datetime.now(UTC)
        published.append(bus.publish_nowait("user.deleted"))
        await bus.stop()
        return published, got, before, after

    published, got, before, after = asyncio.run(main())
    assert got == published
    assert len({e.id for e in published}) == len(published)
    first = published[0]
    assert (first.name, first.data, first.source) == ("user.created", {"n": 0}, "auth")
    assert first.time.tzinfo is UTC
    assert before <= first.time <= after
    assert first.trace == ()  # no trace context to carry: tracing is off
    assert published[-1].source is None


def test_event_ids_differ_between_buses():
    async def main():
        events = []
        for _ in range(2):
            bus = EventBus()
            await bus.start()
            events.append(await bus.publish("x"))
            await bus.stop()
        return events

    first, second = asyncio.run(main())
    assert first.id != second.id


# --------------------------------------------------------------------------- full queues


def test_drop_oldest_drops_and_counts(caplog):
    async def main():
        bus = EventBus(queue_size=2, policy="drop_oldest")
        await bus.start()
        got: list[int] = []
        sub = bus.subscribe(open_door("slow"), "x", lambda e: got.append(e.data))
        for i in range(5):  # nothing runs in between: the worker has not taken any yet
            bus.publish_nowait("x", i)
        pending = sub.pending
        await bus.stop()
        return bus, sub, got, pending

    with caplog.at_level(logging.WARNING, logger="tether.events"):
        bus, sub, got, pending = asyncio.run(main())
    assert pending == 2
    assert got == [3, 4]
    assert (sub.delivered, sub.dropped) == (2, 3)
    assert bus.stats()[("slow", "x")] == EventStats(delivered=2, dropped=3)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "plugin 'slow'" in warning.getMessage()
    assert "dropping the oldest" in warning.getMessage()


def test_wait_policy_makes_the_publisher_wait_and_loses_nothing():
    async def main():
        bus = EventBus(queue_size=2)
        await bus.start()
        release = asyncio.Event()
        slow: list[int] = []
        fast: list[int] = []

        async def slow_handler(event: Event) -> None:
            await release.wait()
            slow.append(event.data)  # type: ignore[arg-type]

        bus.subscribe(open_door("slow"), "x", slow_handler)
        bus.subscribe(open_door("fast"), "x", lambda e: fast.append(e.data))

        async def publisher() -> None:
            for i in range(10):
                await bus.publish("x", i)

        task = asyncio.create_task(publisher())
        await settle()
        blocked = not task.done()
        got_while_blocked = len(slow)
        release.set()
        await task
        assert await bus.stop() == 0
        return blocked, got_while_blocked, slow, fast

    blocked, got_while_blocked, slow, fast = asyncio.run(main())
    assert blocked
    assert got_while_blocked == 0
    assert slow == list(range(10))
    assert fast == list(range(10))


def test_waiting_publishers_are_served_in_order():
    async def main():
        bus = EventBus(queue_size=1)
        await bus.start()
        release = asyncio.Event()
        got: list[int] = []

        async def handler(event: Event) -> None:
            await release.wait()
            got.append(event.data)  # type: ignore[arg-type]

        bus.subscribe(open_door("a"), "x", handler)
        tasks = [asyncio.create_task(bus.publish("x", i)) for i in range(6)]
        await settle()
        release.set()
        await asyncio.gather(*tasks)
        await bus.stop()
        return got

    assert asyncio.run(main()) == list(range(6))


def test_publish_nowait_under_wait_with_a_full_queue_raises():
    async def main():
        bus = EventBus(queue_size=3)
        await bus.start()
        sub = bus.subscribe(open_door("slow"), "user.*", lambda e: None)
        for i in range(3):
            bus.publish_nowait("user.created", i)
        with pytest.raises(EventError) as caught:
            bus.publish_nowait("user.created", 3)
        pending = sub.pending
        await bus.stop()
        return caught.value, pending

    error, pending = asyncio.run(main())
    assert str(error) == (
        "cannot publish 'user.created' without waiting: the event queue of plugin 'slow' "
        "(subscription 'user.*') is full (3 events) and the policy is 'wait'"
    )
    assert error.plugin == "slow"
    assert "drop_oldest" in (error.hint or "")
    assert pending == 3


def test_publish_nowait_does_not_overtake_a_waiting_publisher():
    async def main():
        bus = EventBus(queue_size=1)
        await bus.start()
        release = asyncio.Event()

        async def stuck(event: Event) -> None:
            await release.wait()

        bus.subscribe(open_door("a"), "x", stuck)
        bus.subscribe(open_door("b"), "y", lambda e: None)
        bus.publish_nowait("x", 0)
        await settle()  # a's worker holds event 0
        bus.publish_nowait("x", 1)  # a's queue is full now
        waiting = asyncio.create_task(bus.publish("x", 2))
        await settle()  # the publisher is in line for space in a's queue
        with pytest.raises(EventError, match="plugin 'a'"):
            bus.publish_nowait("y")  # b has room, but it would overtake the waiting publish
        release.set()
        await waiting
        bus.publish_nowait("y")  # the line is empty again
        assert await bus.stop() == 0

    asyncio.run(main())


def test_publish_nowait_from_another_thread_is_delivered_in_order():
    count = 200

    async def main():
        bus = EventBus(queue_size=4)  # smaller than the burst: the bus waits, nothing is lost
        await bus.start()
        got: list[int] = []
        bus.subscribe(open_door("a"), "tick", lambda e: got.append(e.data))
        ids: list[str] = []

        def produce() -> None:
            ids.extend(bus.publish_nowait("tick", i, source="thread").id for i in range(count))

        thread = threading.Thread(target=produce)
        thread.start()
        await asyncio.to_thread(thread.join)
        assert await bus.stop() == 0
        return got, ids, bus.stats()

    got, ids, stats = asyncio.run(main())
    assert got == list(range(count))
    assert len(set(ids)) == count
    assert stats[("thread", "tick")].published == count


def test_publish_from_another_event_loop_is_handed_to_the_bus_loop():
    async def main():
        bus = EventBus()
        await bus.start()
        got: list[tuple[int, bool]] = []
        bus_thread = threading.get_ident()
        bus.subscribe(
            open_door("a"),
            "x",
            lambda e: got.append((e.data, threading.get_ident() == bus_thread)),
        )
        await asyncio.to_thread(asyncio.run, bus.publish("x", 7))
        await bus.stop()
        return got

    assert asyncio.run(main()) == [(7, True)]


# --------------------------------------------------------------------------- declarations


def test_strict_mode_refuses_an_undeclared_publish_with_the_reference_message():
    async def main():
        bus = EventBus(strict=True)
        await bus.start()
        declared = manifest("auth", publishes=("user.login",))
        try:
            await bus.publish("user.login", declared=declared)
            with pytest.raises(UndeclaredEventError) as caught:
                await bus.publish("user.logout", declared=declared)
        finally:
            await bus.stop()
        return caught.value

    error = asyncio.run(main())
    assert str(error) == (
        "undeclared event: plugin 'auth' tried to publish 'user.logout' but its manifest "
        "does not list it under events.publishes"
    )
    assert error.plugin == "auth"


def test_strict_mode_refuses_an_undeclared_subscription():
    bus = EventBus(strict=True)
    declared = manifest("mailer", subscribes=("user.*", "order.placed"))
    door = open_door("mailer")
    bus.subscribe(door, "user.created", print, declared=declared)
    bus.subscribe(door, "user.profile.*", print, declared=declared)
    bus.subscribe(door, "order.placed", print, declared=declared)
    with pytest.raises(UndeclaredEventError) as caught:
        bus.subscribe(door, "order.*", print, declared=declared)
    assert str(caught.value) == (
        "undeclared event: plugin 'mailer' tried to subscribe 'order.*' but its manifest "
        "does not list it under events.subscribes"
    )
    assert len(bus.subscriptions("mailer")) == 3


def test_strict_mode_treats_a_manifest_without_events_as_declaring_nothing():
    bus = EventBus(strict=True)
    with pytest.raises(UndeclaredEventError):
        bus.subscribe(open_door("quiet"), "x", print, declared=manifest("quiet"))


def test_undeclared_use_warns_once_per_plugin_and_event(caplog):
    async def main():
        bus = EventBus()
        await bus.start()
        declared = manifest("auth")  # no events section at all
        got: list[str] = []
        bus.subscribe(open_door("auth"), "x.*", lambda e: got.append(e.name), declared=declared)
        for _ in range(3):
            await bus.publish("x.a", declared=declared)
        bus.publish_nowait("x.b", declared=declared)
        await bus.stop()
        return got

    with caplog.at_level(logging.WARNING, logger="tether.events"):
        got = asyncio.run(main())
    assert got == ["x.a", "x.a", "x.a", "x.b"]  # a warning does not stop anything
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        warning("subscribe", "x.*", "subscribes"),
        warning("publish", "x.a", "publishes"),
        warning("publish", "x.b", "publishes"),
    ]


def warning(kind: str, event: str, section: str) -> str:
    return (
        f"undeclared event: plugin 'auth' tried to {kind} '{event}' but its manifest does not "
        f"list it under events.{section} (add '{event}' to events.{section} in the manifest of "
        "'auth')"
    )


def test_declared_use_is_silent_and_the_source_defaults_to_the_manifest(caplog):
    async def main():
        bus = EventBus()
        await bus.start()
        declared = manifest("auth", publishes=("user.created",), subscribes=("user.*",))
        bus.subscribe(open_door("auth"), "user.created", print, declared=declared)
        event = await bus.publish("user.created", declared=declared)
        await bus.stop()
        return event

    with caplog.at_level(logging.WARNING, logger="tether.events"):
        event = asyncio.run(main())
    assert event.source == "auth"
    assert caplog.records == []


def test_a_changed_manifest_is_checked_again():
    bus = EventBus(strict=True)
    door = open_door("p")
    bus.subscribe(door, "a", print, declared=manifest("p", subscribes=("a",)))
    with pytest.raises(UndeclaredEventError):
        bus.subscribe(door, "a", print, declared=manifest("p", subscribes=("b",)))


# --------------------------------------------------------------------------- stop and removal


def test_stop_delivers_what_was_already_published():
    async def main():
        bus = EventBus()
        await bus.start()
        got: list[int] = []

        async def handler(event: Event) -> None:
            await asyncio.sleep(0)
            got.append(event.data)  # type: ignore[arg-type]

        bus.subscribe(open_door("a"), "x", handler)
        for i in range(100):
            bus.publish_nowait("x", i)
        undelivered = await bus.stop()
        return undelivered, got

    assert asyncio.run(main()) == (0, list(range(100)))


def test_stop_gives_up_after_the_timeout_and_reports_what_is_left(caplog):
    async def main():
        bus = EventBus(queue_size=2)
        await bus.start()
        never = asyncio.Event()

        async def stuck(event: Event) -> None:
            await never.wait()

        bus.subscribe(open_door("stuck"), "x", stuck)
        bus.publish_nowait("x", 0)
        await settle()  # event 0 is in the handler
        for i in (1, 2):
            bus.publish_nowait("x", i)
        waiting = asyncio.create_task(bus.publish("x", 3))
        await settle()  # two queued, and one publisher waits for space
        undelivered = await bus.stop(timeout=0.01)
        with pytest.raises(EventError, match="the bus stopped"):
            await waiting
        with pytest.raises(EventError, match="not running"):
            await bus.publish("x")
        return undelivered

    with caplog.at_level(logging.WARNING, logger="tether.events"):
        assert asyncio.run(main()) == 4
    assert any("4 deliveries still pending" in r.getMessage() for r in caplog.records)


def test_stop_delivers_events_that_handlers_publish_while_it_waits():
    async def main():
        bus = EventBus()
        await bus.start()
        got: list[str] = []

        async def cascade(event: Event) -> None:
            got.append(event.name)
            if event.name == "order.placed":
                await bus.publish("order.billed")

        bus.subscribe(open_door("shop"), "order.*", cascade)
        bus.publish_nowait("order.placed")
        undelivered = await bus.stop()
        return undelivered, got

    assert asyncio.run(main()) == (0, ["order.placed", "order.billed"])


def test_a_second_stop_waits_for_the_first_and_gets_the_same_answer():
    async def main():
        bus = EventBus()
        await bus.start()
        got: list[int] = []

        async def handler(event: Event) -> None:
            await asyncio.sleep(0)
            got.append(event.data)  # type: ignore[arg-type]

        bus.subscribe(open_door("a"), "x", handler)
        for i in range(20):
            bus.publish_nowait("x", i)
        first, second = await asyncio.gather(bus.stop(), bus.stop())
        return first, second, got, await bus.stop()

    assert asyncio.run(main()) == (0, 0, list(range(20)), 0)


def test_publishing_needs_a_running_bus():
    bus = EventBus()
    with pytest.raises(EventError, match="not running") as caught:
        bus.publish_nowait("x")
    assert "await bus.start()" in (caught.value.hint or "")


def test_the_bus_can_start_again_on_a_new_loop():
    bus = EventBus()
    got: list[int] = []
    bus.subscribe(open_door("a"), "x", lambda e: got.append(e.data))

    async def once(value: int) -> None:
        await bus.start()
        await bus.publish("x", value)
        await bus.stop()

    asyncio.run(once(1))
    asyncio.run(once(2))
    assert got == [1, 2]


def test_remove_plugin_stops_delivery_to_that_plugin_only():
    async def main():
        bus = EventBus()
        await bus.start()
        got: list[str] = []
        gone, kept = open_door("gone"), open_door("kept")
        bus.subscribe(gone, "x", lambda e: got.append("gone:x"))
        bus.subscribe(gone, "*", lambda e: got.append("gone:*"))
        bus.subscribe(kept, "x", lambda e: got.append("kept:x"))
        await bus.publish("x")
        await settle()
        removed = bus.remove_plugin("gone")
        await bus.publish("x")
        await bus.stop()
        return removed, got, bus

    removed, got, bus = asyncio.run(main())
    assert removed == 2
    assert sorted(got) == ["gone:*", "gone:x", "kept:x", "kept:x"]
    assert [s.plugin for s in bus.subscriptions()] == ["kept"]
    assert bus.remove_plugin("gone") == 0


def test_removing_drops_what_was_queued_and_is_idempotent():
    async def main():
        bus = EventBus()
        await bus.start()
        got: list[int] = []
        sub = bus.subscribe(open_door("a"), "x", lambda e: got.append(e.data))
        for i in range(3):
            bus.publish_nowait("x", i)
        sub.remove()
        sub.remove()
        await bus.publish("x", 3)
        assert await bus.stop() == 0
        return sub, got

    sub, got = asyncio.run(main())
    assert got == []
    assert not sub.is_active
    assert (sub.dropped, sub.pending) == (3, 0)


def test_a_handler_may_remove_its_own_subscription():
    async def main():
        bus = EventBus()
        await bus.start()
        got: list[int] = []
        holder: list[object] = []

        def once(event: Event) -> None:
            got.append(event.data)  # type: ignore[arg-type]
            holder[0].remove()  # type: ignore[attr-defined]

        holder.append(bus.subscribe(open_door("a"), "x", once))
        for i in range(3):
            await bus.publish("x", i)
            await settle()
        await bus.stop()
        return got

    assert asyncio.run(main()) == [0]


# --------------------------------------------------------------------------- backend seam


class RecordingBackend:
    """Wraps the in-process backend and records what crosses the seam."""

    def __init__(self) -> None:
        self.inner = InProcessBackend()
        self.sent: list[str] = []
        self.watched: list[frozenset[str]] = []
        self.closed = False

    def open(self, receiver: EventReceiver) -> None:
        self.inner.open(receiver)

    def send(self, event: Event, *, wait: bool) -> asyncio.Future[None] | None:
        self.sent.append(event.name)
        return self.inner.send(event, wait=wait)

    def watch(self, patterns: Collection[str]) -> None:
        self.watched.append(frozenset(patterns))

    async def close(self) -> None:
        self.closed = True
        await self.inner.close()


def test_a_backend_carries_events_and_hears_which_patterns_are_wanted():
    backend = RecordingBackend()
    typed: EventBackend = backend  # the protocol is satisfied structurally

    async def main():
        bus = EventBus(backend=typed)
        await bus.start()
        got: list[str] = []
        sub = bus.subscribe(open_door("a"), "user.*", lambda e: got.append(e.name))
        await bus.publish("user.created")
        await settle()
        sub.remove()
        await bus.stop()
        return got

    assert asyncio.run(main()) == ["user.created"]
    assert backend.sent == ["user.created"]
    assert backend.watched == [frozenset(), frozenset({"user.*"}), frozenset()]
    assert backend.closed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queue_size": 0}, "queue_size must be at least 1, got 0"),
        ({"policy": "drop_newest"}, "policy must be 'wait' or 'drop_oldest', got 'drop_newest'"),
    ],
    ids=["queue_size", "policy"],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EventBus(**kwargs)


def test_start_is_idempotent_on_one_loop():
    async def main():
        bus = EventBus()
        await bus.start()
        await bus.start()
        running = bus.is_running
        await bus.stop()
        return running, bus.is_running, await bus.stop()

    assert asyncio.run(main()) == (True, False, 0)


# --------------------------------------------------------------------------- loops that come and go


def test_a_bus_whose_loop_closed_counts_what_it_lost_and_starts_again(caplog):
    bus = EventBus()
    got: list[int] = []
    never = asyncio.Event()

    async def stuck(event: Event) -> None:
        await never.wait()

    first = bus.subscribe(open_door("a"), "x", stuck)

    async def leave_work_behind() -> None:
        await bus.start()
        for i in range(3):
            bus.publish_nowait("x", i)
        await settle()  # event 0 is in the handler when asyncio.run cancels everything

    asyncio.run(leave_work_behind())
    with pytest.raises(EventError, match=r"not running \(its event loop has closed\)"):
        bus.publish_nowait("x")
    with caplog.at_level(logging.WARNING, logger="tether.events"):
        lost = asyncio.run(bus.stop())
    assert lost == 3  # one interrupted in its handler, two queued
    assert "3 deliveries pending; they are lost" in caplog.text
    first.remove()
    bus.subscribe(open_door("a"), "x", lambda e: got.append(e.data))

    async def again() -> None:
        await bus.start()
        await bus.publish("x", 3)
        await bus.stop()

    asyncio.run(again())
    assert got == [3]


def test_start_on_a_new_loop_replaces_a_closed_one():
    bus = EventBus()
    got: list[int] = []
    bus.subscribe(open_door("a"), "x", lambda e: got.append(e.data))
    asyncio.run(bus.start())

    async def again() -> None:
        await bus.start()
        await bus.publish("x", 1)
        await bus.stop()

    asyncio.run(again())
    assert got == [1]


def test_a_bus_running_in_another_thread_takes_publishes_and_stop_from_here():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        bus = EventBus()
        got: list[int] = []
        bus.subscribe(open_door("a"), "x", lambda e: got.append(e.data))
        asyncio.run_coroutine_threadsafe(bus.start(), loop).result()
        bus.publish_nowait("x", 0)  # no loop runs here: handed over

        async def from_another_loop() -> int:
            await bus.publish("x", 1)
            return await bus.stop()

        assert asyncio.run(from_another_loop()) == 0
        assert got == [0, 1]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


# --------------------------------------------------------------------------- versions


def commit(bus: EventBus, old: Door | None, new: Door) -> None:
    """What a plugin slot does when ``new`` replaces ``old``: swap commits, tell the bus, open."""
    if old is not None:
        old.committed = False
    new.committed = True
    bus.version_committed(old, new)
    new.gate.open(new)


def test_a_subscription_of_an_uncommitted_version_gets_nothing_until_commit_and_refresh():
    async def main():
        bus = EventBus()
        await bus.start()
        gate = Gate("late")
        door = gate.add_door("1.0.0")
        gate.open(door)  # the gate lets calls in; the version is not committed yet
        late: list[int] = []
        early: list[int] = []
        staged = bus.subscribe(door, "x", lambda e: late.append(e.data))
        bus.subscribe(open_door("early"), "x", lambda e: early.append(e.data))
        await bus.publish("x", 1)
        await bus.publish("x", 2)
        await wait_until_async(lambda: early == [1, 2])
        before = (list(late), staged.pending, staged.dropped)
        door.committed = True
        bus.refresh()
        await bus.publish("x", 3)
        assert await bus.stop() == 0
        return before, late, early, staged

    before, late, early, staged = asyncio.run(main())
    assert before == ([], 0, 0)  # not delivered, not queued, not dropped: not routed at all
    assert late == [3]
    assert early == [1, 2, 3]
    assert (staged.delivered, staged.dropped) == (1, 0)


def test_events_queued_for_the_old_version_move_to_the_new_versions_subscriptions_in_order():
    names = ["order.placed", "order.paid", "order.placed", "order.paid", "order.shipped"]

    async def main():
        bus = EventBus()
        await bus.start()
        old = open_door("mailer", "1.0.0")
        release = asyncio.Event()
        old_got: list[int] = []

        async def old_handler(event: Event) -> None:
            old_got.append(event.data)  # type: ignore[arg-type]
            await release.wait()

        old_sub = bus.subscribe(old, "order.*", old_handler)
        for i, name in enumerate(names):
            await bus.publish(name, i)
        await wait_until_async(lambda: old_got == [0])  # 0 in the handler, 1 to 4 queued
        queued = old_sub.pending

        new = old.gate.add_door("2.0.0")
        everything: list[int] = []
        paid: list[int] = []
        all_sub = bus.subscribe(new, "order.*", lambda e: everything.append(e.data))
        paid_sub = bus.subscribe(new, "order.paid", lambda e: paid.append(e.data))
        commit(bus, old, new)
        moved = (old_sub.pending, all_sub.pending, paid_sub.pending)
        await bus.publish("order.placed", 5)  # newer than everything moved
        release.set()
        assert await bus.stop() == 0
        return queued, moved, old_got, everything, paid, (old_sub, all_sub, paid_sub)

    queued, moved, old_got, everything, paid, subs = asyncio.run(main())
    old_sub, all_sub, paid_sub = subs
    assert queued == 5  # one being handled, four waiting
    assert moved == (1, 4, 2)  # only the event in the old handler stays with the old version
    assert old_got == [0]  # the call already inside the old version finishes there
    assert everything == [1, 2, 3, 4, 5]
    assert paid == [1, 3]
    assert (old_sub.delivered, old_sub.dropped, old_sub.failed) == (1, 0, 0)
    assert (all_sub.delivered, all_sub.dropped) == (5, 0)
    assert (paid_sub.delivered, paid_sub.dropped) == (2, 0)


def test_an_event_held_at_the_gate_during_a_swap_goes_to_the_new_version_first():
    async def main():
        bus = EventBus()
        await bus.start()
        old = open_door("mailer", "1.0.0")
        gate = old.gate
        old_got: list[int] = []
        new_got: list[int] = []
        bus.subscribe(old, "order.*", lambda e: old_got.append(e.data))
        gate.hold()  # a reload begins
        await bus.publish("order.placed", 0)
        await bus.publish("order.paid", 1)
        await wait_until_async(lambda: gate.waiting == 1)  # the worker holds 0 at the gate
        new = gate.add_door("2.0.0")
        bus.subscribe(new, "order.*", lambda e: new_got.append(e.data))
        commit(bus, old, new)
        assert await bus.stop() == 0
        return old_got, new_got

    old_got, new_got = asyncio.run(main())
    assert old_got == []
    assert new_got == [0, 1]  # in publish order: the held event is the oldest


def test_remove_door_ends_one_versions_subscriptions_only():
    async def main():
        bus = EventBus()
        await bus.start()
        old = open_door("mailer", "1.0.0")
        new = old.gate.add_door("2.0.0")
        got: list[str] = []
        bus.subscribe(old, "x", lambda e: got.append("v1:x"))
        bus.subscribe(old, "y", lambda e: got.append("v1:y"))
        bus.subscribe(new, "x", lambda e: got.append("v2:x"))
        commit(bus, old, new)
        removed = bus.remove_door(old), bus.remove_door(old)
        await bus.publish("x")
        await bus.publish("y")
        assert await bus.stop() == 0
        return removed, got, bus

    removed, got, bus = asyncio.run(main())
    assert removed == (2, 0)
    assert got == ["v2:x"]
    assert [(s.plugin, s.door.version) for s in bus.subscriptions()] == [("mailer", "2.0.0")]
