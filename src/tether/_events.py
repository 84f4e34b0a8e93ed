"""The event bus: plugins publish named events; subscribers receive them asynchronously.

Names and patterns
    An event name is a dotted string (``user.created``); names are case-sensitive and
    may not contain ``*``. A subscription takes an exact name, a prefix wildcard or
    ``*``: ``user.*`` matches every name that starts with ``user.`` (``user.created``
    *and* ``user.profile.updated``, but not ``user`` or ``users.x``); ``*`` matches
    every event.

Delivery
    Each subscription has its own bounded queue and its own worker task, so every
    subscriber sees events in the order they were published, and a slow subscriber
    delays only itself. A delivery passes the subscriber's :class:`~tether._gate.Gate`;
    a closed gate drops the event for that subscriber. A handler may be a plain
    function (run inline in the worker: keep it short) or ``async def``; one that
    raises is counted against *its* plugin (``gate.record_error``), logged with the
    plugin's name, and the next event is delivered as usual. Every event accepted for
    a subscriber ends as exactly one of ``delivered``, ``failed`` or ``dropped`` (or,
    if ``stop`` runs out of time, undelivered).

Full queues
    ``policy="wait"`` (the default): the publisher waits for space; publishes are
    served in order, so a waiting publisher holds up later ones and no subscriber sees
    them out of order. ``publish_nowait`` cannot wait and raises ``EventError``
    instead. ``policy="drop_oldest"``: the oldest queued event of the full subscriber
    is dropped and counted, and nobody waits.

Declarations
    Given the manifest (``declared=``), a publish or subscribe is checked against
    ``events.publishes`` / ``events.subscribes``. A pattern is declared if a declared
    entry equals it or a declared wildcard covers it. Undeclared use logs one warning
    per (plugin, kind, event), or raises ``UndeclaredEventError`` in strict mode. A
    manifest without an ``events`` section declares nothing.

Backends
    The bus owns everything about plugins (declarations, gates, errors, statistics,
    per-subscriber queues and workers). Getting an event from the publisher to the
    subscribers' process is the job of an :class:`EventBackend`; only the in-process
    one exists, and a NATS or Redis one can implement the same three methods.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Literal, Protocol, cast

from tether._gate import Gate
from tether._manifest import Events, Manifest
from tether.errors import EventError, PluginUnavailableError, UndeclaredEventError

__all__ = [
    "Event",
    "EventBackend",
    "EventBus",
    "EventHandler",
    "EventReceiver",
    "EventStats",
    "InProcessBackend",
    "Policy",
    "Subscription",
    "pattern_covers",
    "pattern_matches",
]

_log = logging.getLogger("tether.events")

Policy = Literal["wait", "drop_oldest"]
EventHandler = Callable[["Event"], object]

HOST = ""
"""The ``plugin`` part of a ``stats()`` key for events published without a source."""

_ROUTE_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Event:
    """One published event. ``id`` is unique: a per-bus random prefix and a counter."""

    id: str
    name: str
    data: object
    source: str | None
    time: datetime


@dataclass(slots=True)
class EventStats:
    """Counts for one (plugin, event name): published by it, or delivered/failed/dropped to it."""

    published: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0


# --------------------------------------------------------------------------- patterns


def _check_name(name: str) -> None:
    if not name or "*" in name or name.strip() != name:
        raise EventError(
            f"invalid event name {name!r}: publish a dotted name like 'user.created' "
            "(wildcards are for subscriptions)"
        )


def _wildcard_prefix(pattern: str) -> str | None:
    """``""`` for ``*``, ``"user."`` for ``user.*``, ``None`` for an exact name."""
    if pattern == "*":
        return ""
    if pattern.endswith(".*") and len(pattern) > 2 and "*" not in pattern[:-2]:  # noqa: PLR2004
        return pattern[:-1]
    if pattern and "*" not in pattern and pattern.strip() == pattern:
        return None
    raise EventError(
        f"invalid event pattern {pattern!r}: use an exact name ('user.created'), "
        "a prefix wildcard ('user.*', matching every name that starts with 'user.') or '*'"
    )


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether a subscription to ``pattern`` receives an event called ``name``."""
    prefix = _wildcard_prefix(pattern)
    return pattern == name if prefix is None else name.startswith(prefix)


def pattern_covers(declared: str, pattern: str) -> bool:
    """Whether every name ``pattern`` matches is matched by ``declared`` as well."""
    if declared in {"*", pattern}:
        return True
    if pattern == "*" or not declared.endswith(".*"):
        return False
    stem = pattern[:-1] if pattern.endswith(".*") else pattern
    return stem.startswith(declared[:-1])


# --------------------------------------------------------------------------- backend seam


class EventReceiver(Protocol):
    """The bus side of a backend: hands an event to the local subscriptions it matches."""

    def receive(self, event: Event, *, wait: bool) -> asyncio.Future[None] | None: ...


class EventBackend(Protocol):
    """Carries published events from publishers to the process(es) that subscribe.

    ``send`` is called on the bus's loop. It returns ``None`` once the event is
    accepted, or a future the publisher awaits when it must wait for space; with
    ``wait=False`` it raises ``EventError`` instead of returning a future. A networked
    backend would publish to its subject in ``send`` and call ``receiver.receive`` for
    each message it gets; ``watch`` tells it which patterns local plugins want.
    """

    def open(self, receiver: EventReceiver) -> None: ...
    def send(self, event: Event, *, wait: bool) -> asyncio.Future[None] | None: ...
    def watch(self, patterns: Collection[str]) -> None: ...
    async def close(self) -> None: ...


class InProcessBackend:
    """Events never leave the process: ``send`` is the local ``receive``."""

    __slots__ = ("_receiver",)

    def __init__(self) -> None:
        self._receiver: EventReceiver | None = None

    def open(self, receiver: EventReceiver) -> None:
        self._receiver = receiver

    def send(self, event: Event, *, wait: bool) -> asyncio.Future[None] | None:
        if self._receiver is None:
            raise EventError("the in-process event backend is not open")
        return self._receiver.receive(event, wait=wait)

    def watch(self, patterns: Collection[str]) -> None:
        pass

    async def close(self) -> None:
        self._receiver = None


# --------------------------------------------------------------------------- subscriptions


class Subscription:
    """One plugin's interest in one pattern. ``remove()`` ends it (idempotent)."""

    __slots__ = (
        "_bus",
        "_busy",
        "_is_async",
        "_prefix",
        "_queue",
        "_seq",
        "_stats",
        "_warned_full",
        "_worker",
        "delivered",
        "dropped",
        "failed",
        "gate",
        "handler",
        "is_active",
        "pattern",
        "plugin",
    )

    def __init__(
        self, bus: EventBus, plugin: str, gate: Gate, pattern: str, handler: EventHandler, seq: int
    ) -> None:
        self.plugin = plugin
        self.gate = gate
        self.pattern = pattern
        self.handler = handler
        self.is_active = True
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._bus = bus
        self._seq = seq
        self._prefix = _wildcard_prefix(pattern)
        self._is_async = inspect.iscoroutinefunction(handler)
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(bus.queue_size)
        self._worker: asyncio.Task[None] | None = None
        self._busy = False
        self._warned_full = False
        self._stats: dict[str, EventStats] = {}

    @property
    def pending(self) -> int:
        """Events accepted for this subscriber and not yet handled."""
        if not self.is_active:
            return 0
        return self._queue.qsize() + self._busy

    def remove(self) -> None:
        self._bus._discard(self)  # noqa: SLF001 - the bus owns the bookkeeping

    def __repr__(self) -> str:
        state = "active" if self.is_active else "removed"
        return f"<Subscription {self.plugin!r} {self.pattern!r} {state}>"


class _Waiting:
    """A publish under the ``wait`` policy that found a full queue, in line for space."""

    __slots__ = ("event", "future", "next", "targets")

    def __init__(
        self, event: Event, targets: Sequence[Subscription], future: asyncio.Future[None]
    ) -> None:
        self.event = event
        self.targets = targets
        self.future = future
        self.next = 0  # targets[:next] have the event already


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


# --------------------------------------------------------------------------- the bus


class EventBus:
    """Publish/subscribe between plugins; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        policy: Policy = "wait",
        strict: bool = False,
        backend: EventBackend | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if policy not in {"wait", "drop_oldest"}:
            raise ValueError(f"policy must be 'wait' or 'drop_oldest', got {policy!r}")
        self.queue_size = queue_size
        self.policy: Policy = policy
        self.strict = strict
        self._drop_oldest = policy == "drop_oldest"
        self._backend: EventBackend = backend if backend is not None else InProcessBackend()
        self._state = _State.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._subs: dict[Subscription, None] = {}  # insertion-ordered set
        self._exact: dict[str, list[Subscription]] = {}
        self._wildcards: list[Subscription] = []
        self._routes: dict[str, tuple[Subscription, ...]] = {}
        self._stats: dict[tuple[str, str], EventStats] = {}
        self._checks: dict[tuple[str, str, str], tuple[Events, bool]] = {}
        self._warned: set[tuple[str, str, str]] = set()
        self._backlog: deque[_Waiting] = deque()
        self._backlog_task: asyncio.Task[None] | None = None
        self._workers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_running(self) -> bool:
        return self._state in {_State.RUNNING, _State.STOPPING}

    async def start(self) -> None:
        """Bind to the running loop. Workers start per subscription, on its first event."""
        loop = asyncio.get_running_loop()
        if self.is_running:
            if loop is not self._loop:
                raise EventError("the event bus is already running on another event loop")
            return
        self._loop = loop
        self._thread = threading.get_ident()
        self._backend.open(self)
        self._backend.watch(self._patterns())
        self._state = _State.RUNNING

    async def stop(self, *, timeout: float = 5.0) -> int:
        """Deliver what was published (for at most ``timeout`` seconds), then stop.

        Returns how many (event, subscriber) deliveries were left undelivered.
        """
        if not self.is_running:
            return 0
        self._state = _State.STOPPING
        try:
            async with asyncio.timeout(timeout):
                await self._drained()
        except TimeoutError:
            pass
        undelivered = self._undelivered()
        await self._halt()
        await self._backend.close()
        self._state = _State.STOPPED
        if undelivered:
            _log.warning(
                "event bus stopped after %ss with %d deliveries still pending; they are lost",
                timeout,
                undelivered,
            )
        return undelivered

    async def _drained(self) -> None:
        while True:
            if self._backlog_task is not None:
                await asyncio.wait([self._backlog_task])
            for sub in list(self._subs):
                await sub._queue.join()  # noqa: SLF001
            if not self._backlog and not any(s.pending for s in self._subs):
                return

    def _undelivered(self) -> int:
        left = sum(s.pending for s in self._subs)
        for waiting in self._backlog:
            left += sum(1 for s in waiting.targets[waiting.next :] if s.is_active)
        return left

    async def _halt(self) -> None:
        tasks = list(self._workers)
        if self._backlog_task is not None:
            tasks.append(self._backlog_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for waiting in self._backlog:
            if not waiting.future.done():
                waiting.future.set_exception(
                    EventError(f"event '{waiting.event.name}' was not delivered: the bus stopped")
                )
        self._backlog.clear()
        for sub in self._subs:
            sub._worker = None  # noqa: SLF001
            sub._busy = False  # noqa: SLF001
            sub._queue = asyncio.Queue(self.queue_size)  # noqa: SLF001 - fresh, loop-free

    # ------------------------------------------------------------------ subscribing

    def subscribe(
        self,
        plugin: str,
        gate: Gate,
        pattern: str,
        handler: EventHandler,
        *,
        declared: Manifest | None = None,
    ) -> Subscription:
        """Deliver every event matching ``pattern`` to ``handler``, through ``gate``."""
        _wildcard_prefix(pattern)
        if declared is not None:
            self._check_declared(plugin, declared.events, "subscribe", pattern)
        sub = Subscription(self, plugin, gate, pattern, handler, next(self._seq))
        self._subs[sub] = None
        if sub._prefix is None:  # noqa: SLF001
            self._exact.setdefault(pattern, []).append(sub)
        else:
            self._wildcards.append(sub)
        self._routes.clear()
        self._backend.watch(self._patterns())
        _log.debug("plugin '%s' subscribed to '%s'", plugin, pattern)
        return sub

    def remove_plugin(self, plugin: str) -> int:
        """End every subscription of ``plugin``; return how many there were."""
        mine = [s for s in self._subs if s.plugin == plugin]
        for sub in mine:
            self._discard(sub)
        self._warned = {key for key in self._warned if key[0] != plugin}
        self._checks = {key: v for key, v in self._checks.items() if key[0] != plugin}
        return len(mine)

    def subscriptions(self, plugin: str | None = None) -> list[Subscription]:
        return [s for s in self._subs if plugin is None or s.plugin == plugin]

    def _discard(self, sub: Subscription) -> None:
        if not sub.is_active:
            return
        sub.is_active = False
        del self._subs[sub]
        if sub._prefix is None:  # noqa: SLF001
            exact = self._exact[sub.pattern]
            exact.remove(sub)
            if not exact:
                del self._exact[sub.pattern]
        else:
            self._wildcards.remove(sub)
        self._routes.clear()
        queue = sub._queue  # noqa: SLF001
        while not queue.empty():
            event = queue.get_nowait()
            queue.task_done()
            if event is not None:
                self._count_drop(sub, event)
        if sub._worker is not None:  # noqa: SLF001
            queue.put_nowait(None)  # the worker ends after its current delivery
        self._backend.watch(self._patterns())

    def _patterns(self) -> frozenset[str]:
        return frozenset(s.pattern for s in self._subs)

    # ------------------------------------------------------------------ publishing

    async def publish(
        self,
        name: str,
        data: object = None,
        *,
        source: str | None = None,
        declared: Manifest | None = None,
    ) -> Event:
        """Publish ``name``; under the ``wait`` policy, wait until every queue took it."""
        event = self._event(name, data, source, declared)
        if self._loop is not asyncio.get_running_loop():
            if not self.is_running or self._loop is None:
                raise self._not_running(name)
            done = asyncio.run_coroutine_threadsafe(self._publish_event(event), self._loop)
            await asyncio.wrap_future(done)
            return event
        await self._publish_event(event)
        return event

    async def _publish_event(self, event: Event) -> None:
        if not self.is_running:
            raise self._not_running(event.name)
        self._count_published(event)
        waiter = self._backend.send(event, wait=True)
        if waiter is not None:
            await waiter

    def publish_nowait(
        self,
        name: str,
        data: object = None,
        *,
        source: str | None = None,
        declared: Manifest | None = None,
    ) -> Event:
        """Publish without waiting; callable from any thread.

        On the bus's own thread, a full queue under the ``wait`` policy raises
        ``EventError``. From another thread the event is handed to the bus's loop and
        queued there in order (waiting for space there if it must, never dropped).
        """
        event = self._event(name, data, source, declared)
        if not self.is_running or self._loop is None:
            raise self._not_running(name)
        if threading.get_ident() == self._thread:
            self._count_published(event)
            self._backend.send(event, wait=False)
        else:
            try:
                self._loop.call_soon_threadsafe(self._publish_handed_off, event)
            except RuntimeError:  # the loop is closed
                raise self._not_running(name) from None
        return event

    def _publish_handed_off(self, event: Event) -> None:
        if not self.is_running:
            _log.warning("event '%s' (%s) arrived after the bus stopped", event.name, event.id)
            return
        self._count_published(event)
        waiter = self._backend.send(event, wait=True)
        if waiter is not None:
            waiter.add_done_callback(_consume)

    def _event(
        self, name: str, data: object, source: str | None, declared: Manifest | None
    ) -> Event:
        _check_name(name)
        if declared is not None:
            source = source or declared.name
            self._check_declared(source, declared.events, "publish", name)
        event_id = f"{self._id_prefix}-{next(self._ids)}"
        return Event(event_id, name, data, source, datetime.now(UTC))

    def _not_running(self, name: str) -> EventError:
        return EventError(
            f"cannot publish '{name}': the event bus is not running",
            hint="await bus.start() on the event loop first (the plugin manager does this)",
        )

    # ------------------------------------------------------------------ receiving

    def receive(self, event: Event, *, wait: bool) -> asyncio.Future[None] | None:
        """Queue ``event`` for every local subscription that matches (for backends)."""
        targets = self._routes.get(event.name)
        if targets is None:
            targets = self._route(event.name)
        if not targets:
            _log.debug("event '%s' from %s has no subscribers", event.name, event.source)
            return None
        if self._drop_oldest:
            for sub in targets:
                self._offer(sub, event)
            return None
        if not self._backlog:
            for sub in targets:
                if sub._queue.full():  # noqa: SLF001
                    break
            else:
                for sub in targets:
                    self._put(sub, event)
                return None
        if not wait:
            raise self._full_error(event, targets)
        return self._wait_in_line(event, targets)

    def _route(self, name: str) -> tuple[Subscription, ...]:
        found = list(self._exact.get(name, ()))
        found += [s for s in self._wildcards if name.startswith(s._prefix or "")]  # noqa: SLF001
        found.sort(key=lambda s: s._seq)  # noqa: SLF001
        if len(self._routes) >= _ROUTE_CACHE_SIZE:
            self._routes.clear()
        route = self._routes[name] = tuple(found)
        return route

    def _put(self, sub: Subscription, event: Event) -> None:
        if sub._worker is None:  # noqa: SLF001
            self._spawn(sub)
        sub._queue.put_nowait(event)  # noqa: SLF001

    def _offer(self, sub: Subscription, event: Event) -> None:
        queue = sub._queue  # noqa: SLF001
        if queue.full():
            oldest = queue.get_nowait()
            queue.task_done()
            if oldest is not None:
                self._count_drop(sub, oldest)
            if not sub._warned_full:  # noqa: SLF001
                sub._warned_full = True  # noqa: SLF001
                _log.warning(
                    "plugin '%s': event queue of subscription '%s' is full (%d events); "
                    "dropping the oldest events",
                    sub.plugin,
                    sub.pattern,
                    self.queue_size,
                )
        self._put(sub, event)

    def _full_error(self, event: Event, targets: Sequence[Subscription]) -> EventError:
        full = next((s for s in targets if s._queue.full()), None)  # noqa: SLF001
        if full is None:  # the queues have room, but earlier publishes wait for some
            full = self._backlog[0].targets[self._backlog[0].next]
        return EventError(
            f"cannot publish '{event.name}' without waiting: the event queue of plugin "
            f"'{full.plugin}' (subscription '{full.pattern}') is full ({self.queue_size} "
            "events) and the policy is 'wait'",
            plugin=full.plugin,
            hint="use `await bus.publish(...)` to wait for space, raise queue_size, or "
            "choose the 'drop_oldest' policy",
        )

    def _wait_in_line(self, event: Event, targets: Sequence[Subscription]) -> asyncio.Future[None]:
        loop = self._loop or asyncio.get_running_loop()
        waiting = _Waiting(event, targets, loop.create_future())
        self._backlog.append(waiting)
        if self._backlog_task is None:
            self._backlog_task = loop.create_task(self._serve_backlog())
        return waiting.future

    async def _serve_backlog(self) -> None:
        backlog = self._backlog
        try:
            while backlog:
                waiting = backlog[0]
                while waiting.next < len(waiting.targets):
                    sub = waiting.targets[waiting.next]
                    if sub.is_active:
                        if sub._worker is None:  # noqa: SLF001
                            self._spawn(sub)
                        await sub._queue.put(waiting.event)  # noqa: SLF001
                    waiting.next += 1
                backlog.popleft()
                if not waiting.future.done():
                    waiting.future.set_result(None)
        finally:
            self._backlog_task = None

    # ------------------------------------------------------------------ delivering

    def _spawn(self, sub: Subscription) -> None:
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self._work(sub), name=f"tether-events:{sub.plugin}:{sub.pattern}")
        sub._worker = task  # noqa: SLF001
        self._workers.add(task)
        task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self._workers.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("event worker %s crashed", task.get_name(), exc_info=exc)

    async def _work(self, sub: Subscription) -> None:
        queue = sub._queue  # noqa: SLF001
        while True:
            event = await queue.get()
            if event is None:
                queue.task_done()
                return
            sub._busy = True  # noqa: SLF001
            try:
                await self._deliver(sub, event)
            finally:
                sub._busy = False  # noqa: SLF001
                queue.task_done()

    async def _deliver(self, sub: Subscription, event: Event) -> None:
        gate = sub.gate
        try:
            await gate.enter_async()
        except PluginUnavailableError as exc:
            _log.debug("event '%s' dropped for plugin '%s': %s", event.name, sub.plugin, exc)
            self._count_drop(sub, event)
            return
        try:
            result = sub.handler(event)
            if sub._is_async or (result is not None and inspect.isawaitable(result)):  # noqa: SLF001
                await cast("Awaitable[object]", result)
        except Exception as exc:
            self._fail(sub, event, exc)
        else:
            sub.delivered += 1
            self._stats_for(sub, event.name).delivered += 1
        finally:
            gate.exit()

    def _fail(self, sub: Subscription, event: Event, exc: Exception) -> None:
        sub.failed += 1
        self._stats_for(sub, event.name).failed += 1
        _log.error(
            "plugin '%s': event handler for '%s' (subscription '%s') raised %s: %s",
            sub.plugin,
            event.name,
            sub.pattern,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        try:
            sub.gate.record_error(exc, source=f"event:{event.name}")
        except Exception:
            _log.exception("plugin '%s': recording an event handler error failed", sub.plugin)

    # ------------------------------------------------------------------ declarations

    def _check_declared(self, plugin: str, events: Events, kind: str, name: str) -> None:
        key = (plugin, kind, name)
        cached = self._checks.get(key)
        if cached is not None and cached[0] is events:
            ok = cached[1]
        else:
            entries = events.publishes if kind == "publish" else events.subscribes
            ok = any(pattern_covers(entry, name) for entry in entries)
            self._checks[key] = (events, ok)
        if ok:
            return
        error = UndeclaredEventError(plugin, name, kind)
        if self.strict:
            raise error
        if key not in self._warned:
            self._warned.add(key)
            _log.warning("%s (%s)", error, error.hint)

    # ------------------------------------------------------------------ statistics

    def stats(self) -> dict[tuple[str, str], EventStats]:
        """A snapshot: (plugin, event name) -> counts. Host publishes use plugin ``""``."""
        return {key: replace(value) for key, value in self._stats.items()}

    def _stats_for(self, sub: Subscription, name: str) -> EventStats:
        found = sub._stats.get(name)  # noqa: SLF001
        if found is None:
            found = sub._stats[name] = self._stats_entry(sub.plugin, name)  # noqa: SLF001
        return found

    def _stats_entry(self, plugin: str, name: str) -> EventStats:
        key = (plugin, name)
        found = self._stats.get(key)
        if found is None:
            found = self._stats[key] = EventStats()
        return found

    def _count_published(self, event: Event) -> None:
        self._stats_entry(event.source or HOST, event.name).published += 1

    def _count_drop(self, sub: Subscription, event: Event) -> None:
        sub.dropped += 1
        self._stats_for(sub, event.name).dropped += 1
