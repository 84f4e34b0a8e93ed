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
    delays only itself. A delivery enters the subscriber through the seam
    (``tether._seam``): a held gate makes it wait, a closed one drops the event for
    that subscriber. A handler may be a plain
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
    is dropped and counted, and nobody waits. (Under ``wait``, a handler that awaits
    ``publish`` of an event its own full queue must take waits for itself until
    ``stop`` gives up: publish follow-ups from a task, or use ``drop_oldest``.)

Declarations
    Given the manifest (``declared=``), a publish or subscribe is checked against
    ``events.publishes`` / ``events.subscribes``. A pattern is declared if a declared
    entry equals it or a declared wildcard covers it. Undeclared use logs one warning
    per (plugin, kind, event), or raises ``UndeclaredEventError`` in strict mode. A
    manifest without an ``events`` section declares nothing.

Versions
    A subscription belongs to one version of its plugin; events are routed only to
    committed versions. When a new version is committed, the events still queued for
    the old version's subscriptions move, in order and ahead of newer ones, to the new
    version's subscriptions whose patterns match them; an event a worker was holding at
    the gate follows the same way once the gate opens.

Backends
    The bus owns everything about plugins (declarations, gates, errors, statistics,
    per-subscriber queues and workers). Getting an event from the publisher to the
    subscribers' process is the job of an :class:`EventBackend`; only the in-process
    one exists, and a NATS or Redis one can implement the same four methods.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tether._chain import CallChain
from tether._event_model import (
    HOST,
    Event,
    EventBackend,
    EventHandler,
    EventReceiver,
    EventStats,
    InProcessBackend,
    Policy,
    check_name,
    pattern_covers,
    pattern_matches,
    wildcard_prefix,
)
from tether._inbox import Inbox, Subscription, Waiting, wake
from tether._manifest import Events, Manifest
from tether._seam import ONE_ARGUMENT, Entry
from tether._tracing import trace_context, tracing_configured
from tether.errors import EventError, UndeclaredEventError

if TYPE_CHECKING:
    from tether._gate import Door

__all__ = [
    "HOST",
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

_ROUTE_CACHE_SIZE = 4096


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
        self.backend: EventBackend = backend if backend is not None else InProcessBackend()
        self.tracing = False  # carry trace context with events (an OpenTelemetry SDK is on)
        self._stats: dict[tuple[str, str], EventStats] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._drop_oldest = policy == "drop_oldest"
        self._accepting = False  # started and not yet stopped
        self._loop: asyncio.AbstractEventLoop | None = None
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._inboxes: dict[Subscription, Inbox] = {}
        self._exact: dict[str, list[Inbox]] = {}
        self._wildcards: list[Inbox] = []
        self._routes: dict[str, tuple[Inbox, ...]] = {}
        self._checks: dict[tuple[str, str, str], tuple[Events, bool]] = {}
        self._warned: set[tuple[str, str, str]] = set()
        self._backlog: deque[Waiting] = deque()
        self._backlog_task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[int] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_running(self) -> bool:
        return self._accepting

    async def start(self) -> None:
        """Bind to the running loop. Each subscription's worker starts with its first event.

        A bus whose loop has closed (``asyncio.run`` returned) counts as stopped: what it
        still held is lost (and logged), and ``start`` binds it to the current loop.
        """
        loop = asyncio.get_running_loop()
        if self._accepting and self._loop is not None and self._loop.is_closed():
            self._abandon()
        if self._accepting:
            if loop is not self._loop:
                raise EventError("the event bus is already running on another event loop")
            return
        self._loop = loop
        self.tracing = tracing_configured()
        self.backend.open(self)
        self.backend.watch(self._patterns())
        self._accepting = True

    async def stop(self, *, timeout: float = 5.0) -> int:
        """Deliver what was published (for at most ``timeout`` seconds), then stop.

        Events published while ``stop`` waits (by handlers, say) are delivered too if
        time allows. Returns how many (event, subscriber) deliveries were left undone.
        A second ``stop`` while one runs waits for the first and returns its answer.
        """
        loop = self._loop
        if self._stopping is not None and self._stopping.get_loop().is_closed():
            self._stopping = None  # a stop cut short when its loop closed
        if self._stopping is None:
            if not self._accepting or loop is None:
                return 0
            if loop.is_closed():
                lost = self._abandon()
                await self.backend.close()
                return lost
            if loop is not asyncio.get_running_loop():  # the bus runs in another thread
                done = asyncio.run_coroutine_threadsafe(self.stop(timeout=timeout), loop)
                return await asyncio.wrap_future(done)
            self._stopping = loop.create_task(self._stop(timeout))
            self._stopping.add_done_callback(self._stopped)
        return await asyncio.shield(self._stopping)

    def _stopped(self, _task: asyncio.Task[int]) -> None:
        self._stopping = None

    async def _stop(self, timeout: float) -> int:
        # asyncio.wait, not asyncio.timeout: only the drain is cancelled, never the caller.
        drain = asyncio.get_running_loop().create_task(self._drained())
        if not (await asyncio.wait([drain], timeout=timeout))[0]:
            drain.cancel()
            await asyncio.wait([drain])
        elif (exc := drain.exception()) is not None:
            _log.error("event bus: waiting for deliveries failed", exc_info=exc)
        self._accepting = False
        undelivered = await self._halt()
        await self.backend.close()
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
            busy = [inbox for inbox in self._inboxes.values() if inbox.pending]
            if not busy and not self._backlog:
                return
            for inbox in busy:
                await inbox.wait_idle()

    async def _halt(self) -> int:
        """Cancel every task; return how many deliveries were left undone."""
        left = sum(inbox.pending for inbox in self._inboxes.values())
        for waiting in self._backlog:
            left += sum(1 for inbox in waiting.targets[waiting.next :] if inbox.sub.is_active)
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
        for inbox in self._inboxes.values():
            inbox.reset()
        return left

    def _abandon(self) -> int:
        """The bus's loop closed under it: its tasks are gone; count and forget the rest."""
        lost = sum(inbox.pending for inbox in self._inboxes.values())
        for waiting in self._backlog:
            lost += sum(1 for inbox in waiting.targets[waiting.next :] if inbox.sub.is_active)
        self._backlog.clear()
        self._workers.clear()
        self._backlog_task = None
        for inbox in self._inboxes.values():
            inbox.reset()
        self._accepting = False
        if lost:
            _log.warning(
                "event bus: its event loop closed with %d deliveries pending; they are lost", lost
            )
        return lost

    # ------------------------------------------------------------------ subscribing

    def subscribe(
        self,
        door: Door,
        pattern: str,
        handler: EventHandler,
        *,
        declared: Manifest | None = None,
        chain: CallChain | None = None,
    ) -> Subscription:
        """Deliver every event matching ``pattern`` to ``handler`` of ``door``'s version.

        Staged until the version is committed: no event is routed to it before.
        """
        wildcard_prefix(pattern)
        plugin = door.plugin
        if declared is not None:
            self._check_declared(plugin, declared.events, "subscribe", pattern)
        if not callable(handler):
            raise EventError(
                f"plugin '{plugin}' subscribed to '{pattern}' with a handler that is not "
                f"callable: {handler!r}",
                plugin=plugin,
            )
        entry = Entry(door, handler, f"event:{pattern}", chain=chain, params=ONE_ARGUMENT)
        inbox = Inbox(
            bus=self,
            entry=entry,
            pattern=pattern,
            seq=next(self._seq),
            workers=self._workers,
            all_stats=self._stats,
        )
        self._inboxes[inbox.sub] = inbox
        if inbox.prefix is None:
            self._exact.setdefault(pattern, []).append(inbox)
        else:
            self._wildcards.append(inbox)
        self._routes.clear()
        self.backend.watch(self._patterns())
        _log.debug("plugin '%s' subscribed to '%s'", plugin, pattern)
        return inbox.sub

    def refresh(self) -> None:
        """A version was committed or dropped: route events to the committed ones."""
        self._routes.clear()

    def version_committed(self, old: Door | None, new: Door) -> None:
        """Move what is queued for ``old``'s subscriptions to ``new``'s, in order."""
        self._routes.clear()
        if old is None:
            return
        for inbox in [i for i in self._inboxes.values() if i.sub.door is old]:
            held, inbox.holding = inbox.holding, None  # the oldest: its worker waits at the gate
            events = ([held] if held is not None else []) + list(inbox.buffer)
            inbox.buffer.clear()
            wake(inbox.space)
            if events:
                self.hand_over(events, new)

    def hand_over(self, events: Sequence[Event], live: Door) -> None:
        """Queue ``events`` (oldest first) ahead of everything in ``live``'s matching inboxes."""
        targets = [i for i in self._inboxes.values() if i.sub.door is live]
        for inbox in targets:
            mine = [e for e in events if pattern_matches(inbox.sub.pattern, e.name)]
            if mine:
                inbox.buffer.extendleft(reversed(mine))
                inbox.nudge()
        if not targets:
            for event in events:
                _log.debug("event '%s' dropped: plugin '%s' %s no longer subscribes to it",
                           event.name, live.plugin, live.version)  # fmt: skip

    def remove_door(self, door: Door) -> int:
        """End every subscription of one version (discarded or retired); return how many."""
        mine = [s for s in self._inboxes if s.door is door]
        for sub in mine:
            self.unsubscribe(sub)
        return len(mine)

    def unsubscribe(self, subscription: Subscription) -> None:
        """End one subscription; events still queued for it are dropped. Idempotent."""
        inbox = self._inboxes.pop(subscription, None)
        if inbox is None:
            return
        subscription.is_active = False
        if inbox.prefix is None:
            exact = self._exact[subscription.pattern]
            exact.remove(inbox)
            if not exact:
                del self._exact[subscription.pattern]
        else:
            self._wildcards.remove(inbox)
        self._routes.clear()
        inbox.close()
        self.backend.watch(self._patterns())

    def remove_plugin(self, plugin: str) -> int:
        """End every subscription of ``plugin`` (it is unloading); return how many."""
        mine = self.subscriptions(plugin)
        for sub in mine:
            self.unsubscribe(sub)
        self._warned = {key for key in self._warned if key[0] != plugin}
        self._checks = {key: v for key, v in self._checks.items() if key[0] != plugin}
        return len(mine)

    def subscriptions(self, plugin: str | None = None) -> list[Subscription]:
        return [s for s in self._inboxes if plugin is None or s.plugin == plugin]

    def _patterns(self) -> frozenset[str]:
        return frozenset(s.pattern for s in self._inboxes)

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
        if self._loop is asyncio.get_running_loop():
            await self._publish_here(event)
        elif self._accepting and self._loop is not None and not self._loop.is_closed():
            done = asyncio.run_coroutine_threadsafe(self._publish_here(event), self._loop)
            await asyncio.wrap_future(done)
        else:
            raise self._not_running(name)
        return event

    async def _publish_here(self, event: Event) -> None:
        if not self._accepting:
            raise self._not_running(event.name)
        self._count_published(event)
        waiter = self.backend.send(event, wait=True)
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

        On the bus's running loop, a full queue under the ``wait`` policy raises
        ``EventError``. Anywhere else (another thread) the event is handed to the bus's
        loop and queued there in order (waiting for room there if it must, never dropped).
        """
        event = self._event(name, data, source, declared)
        if not self._accepting or self._loop is None or self._loop.is_closed():
            raise self._not_running(name)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._count_published(event)
            self.backend.send(event, wait=False)
        else:
            try:
                self._loop.call_soon_threadsafe(self._publish_handed_over, event)
            except RuntimeError:  # the loop is closed
                raise self._not_running(name) from None
        return event

    def _publish_handed_over(self, event: Event) -> None:
        if not self._accepting:
            _log.warning("event '%s' (%s) arrived after the bus stopped", event.name, event.id)
            return
        self._count_published(event)
        waiter = self.backend.send(event, wait=True)
        if waiter is not None:
            waiter.add_done_callback(_consume)

    def _event(
        self, name: str, data: object, source: str | None, declared: Manifest | None
    ) -> Event:
        if name not in self._routes:  # a cached route means a valid name
            check_name(name)
        if declared is not None:
            source = source or declared.name
            self._check_declared(source, declared.events, "publish", name)
        event_id = f"{self._id_prefix}-{next(self._ids)}"
        if self.tracing:
            trace = tuple(trace_context().items())
            return Event(event_id, name, data, source, datetime.now(UTC), trace)
        return Event(event_id, name, data, source, datetime.now(UTC))

    def _not_running(self, name: str) -> EventError:
        closed = self._loop is not None and self._loop.is_closed()
        return EventError(
            f"cannot publish '{name}': the event bus is not running"
            + (" (its event loop has closed)" if closed else ""),
            hint="await bus.start() on the event loop first (the plugin manager does this)",
        )

    # ------------------------------------------------------------------ receiving

    def receive(self, event: Event, *, wait: bool) -> asyncio.Future[None] | None:
        """Queue ``event`` for every local subscription it matches (called by backends)."""
        targets = self._routes.get(event.name)
        if targets is None:
            targets = self._route(event.name)
        size = self.queue_size
        if self._drop_oldest:
            for inbox in targets:
                if len(inbox.buffer) >= size:
                    inbox.push_out_oldest(size)
                inbox.put(event)
            return None
        if not self._backlog:
            for inbox in targets:
                if len(inbox.buffer) >= size:
                    break
            else:
                for inbox in targets:
                    inbox.put(event)
                return None
        if not wait:
            raise self._full_error(event, targets)
        return self._wait_in_line(event, targets)

    def _route(self, name: str) -> tuple[Inbox, ...]:
        found = [i for i in self._exact.get(name, ()) if i.sub.door.committed]
        found += [
            i for i in self._wildcards if i.sub.door.committed and name.startswith(i.prefix or "")
        ]
        found.sort(key=lambda inbox: inbox.seq)
        if not found:
            _log.debug("event '%s' has no subscribers (names are case-sensitive)", name)
        if len(self._routes) >= _ROUTE_CACHE_SIZE:
            self._routes.clear()
        route = self._routes[name] = tuple(found)
        return route

    def _full_error(self, event: Event, targets: Sequence[Inbox]) -> EventError:
        full = next((i for i in targets if len(i.buffer) >= self.queue_size), None)
        if full is None:  # there is room, but earlier publishes wait in line
            head = self._backlog[0]
            full = head.targets[head.next]
        return EventError(
            f"cannot publish '{event.name}' without waiting: the event queue of plugin "
            f"'{full.sub.plugin}' (subscription '{full.sub.pattern}') is full "
            f"({self.queue_size} events) and the policy is 'wait'",
            plugin=full.sub.plugin,
            hint="use `await bus.publish(...)` to wait for room, raise queue_size, or "
            "choose the 'drop_oldest' policy",
        )

    def _wait_in_line(self, event: Event, targets: Sequence[Inbox]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        waiting = Waiting(event, targets, loop.create_future())
        self._backlog.append(waiting)
        if self._backlog_task is None:
            self._backlog_task = loop.create_task(self._serve_backlog())
        return waiting.future

    async def _serve_backlog(self) -> None:
        backlog, size = self._backlog, self.queue_size
        try:
            while backlog:
                waiting = backlog[0]
                while waiting.next < len(waiting.targets):
                    inbox = waiting.targets[waiting.next]
                    await inbox.wait_for_space(size)
                    if inbox.sub.is_active:
                        inbox.put(waiting.event)
                    waiting.next += 1
                backlog.popleft()
                wake(waiting.future)
        finally:
            self._backlog_task = None

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

    def _count_published(self, event: Event) -> None:
        key = (event.source or HOST, event.name)
        found = self._stats.get(key)
        if found is None:
            found = self._stats[key] = EventStats()
        found.published += 1


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
