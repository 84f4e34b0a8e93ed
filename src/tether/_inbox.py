"""Subscriptions and their inboxes: one bounded queue and one worker per subscription.

The bus (``tether._events``) routes each published event to the inboxes of the
subscriptions it matches; an inbox's worker delivers its events in order, through the
subscriber's seam entry. See ``tether._events`` for the guarantees.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tether._attribution import fail
from tether._describe import error_text
from tether._event_model import Event, EventStats, wildcard_prefix
from tether._gate import Door
from tether._seam import Entry
from tether._tracing import attach_trace, detach_trace
from tether.errors import PluginUnavailableError


class Bus(Protocol):
    """What an inbox asks of the event bus it belongs to."""

    def unsubscribe(self, subscription: Subscription, /) -> None: ...
    def hand_over(self, events: Sequence[Event], live: Door, /) -> None: ...


__all__ = ["Bus", "Inbox", "Subscription", "Waiting", "wake"]

_log = logging.getLogger("tether.events")


class Subscription:
    """One plugin's interest in one pattern: a handle with counters. ``remove()`` is idempotent."""

    __slots__ = (
        "_bus",
        "_inbox",
        "delivered",
        "door",
        "dropped",
        "entry",
        "failed",
        "handler",
        "is_active",
        "pattern",
        "plugin",
    )

    def __init__(self, bus: Bus, inbox: Inbox, entry: Entry, pattern: str) -> None:
        self.entry = entry
        self.door = entry.door
        self.plugin = entry.plugin
        self.pattern = pattern
        self.handler = entry.fn
        self.is_active = True
        self.delivered = 0  # the handler returned
        self.failed = 0  # the handler raised
        self.dropped = 0  # refused at a closed gate, pushed out of a full queue, or unsubscribed
        self._bus = bus
        self._inbox = inbox

    @property
    def pending(self) -> int:
        """Events accepted for this subscriber and not yet handled."""
        return self._inbox.pending if self.is_active else 0

    def remove(self) -> None:
        self._bus.unsubscribe(self)

    def __repr__(self) -> str:
        state = "active" if self.is_active else "removed"
        return f"<Subscription {self.plugin!r} {self.pattern!r} {state}>"


def wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class Inbox:
    """One subscription's bounded queue and the worker task that empties it, in order.

    A deque and three one-shot futures rather than an ``asyncio.Queue``: the worker
    takes events in a plain loop (no coroutine per event), and the bus needs to drop
    the oldest entry, clear it on unsubscribe and wait for it to go idle.
    """

    __slots__ = (
        "all_stats",
        "buffer",
        "bus",
        "busy",
        "holding",
        "idle",
        "prefix",
        "seq",
        "space",
        "stats",
        "sub",
        "wakeup",
        "warned_full",
        "worker",
        "workers",
    )

    def __init__(
        self,
        *,
        bus: Bus,
        entry: Entry,
        pattern: str,
        seq: int,
        workers: set[asyncio.Task[None]],
        all_stats: dict[tuple[str, str], EventStats],
    ) -> None:
        self.bus = bus
        self.holding: Event | None = None  # the event the worker holds at a held gate
        self.sub = Subscription(bus, self, entry, pattern)
        self.prefix = wildcard_prefix(pattern)
        self.seq = seq
        self.buffer: deque[Event] = deque()
        self.busy = False
        self.worker: asyncio.Task[None] | None = None
        self.workers = workers
        self.wakeup: asyncio.Future[None] | None = None  # the worker waits for an event
        self.space: asyncio.Future[None] | None = None  # the backlog waits for room
        self.idle: asyncio.Future[None] | None = None  # stop waits for the queue to empty
        self.stats: dict[str, EventStats] = {}
        self.all_stats = all_stats
        self.warned_full = False

    @property
    def pending(self) -> int:
        return len(self.buffer) + self.busy

    # ------------------------------------------------------------------ filling

    def put(self, event: Event) -> None:
        """Append (the caller has checked for room) and wake or start the worker."""
        self.buffer.append(event)
        self.nudge()

    def nudge(self) -> None:
        """Wake the worker, or start it: there is something in the buffer."""
        wakeup = self.wakeup
        if wakeup is not None:
            self.wakeup = None
            wake(wakeup)
        elif self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(
                self.run(), name=f"tether-events:{self.sub.plugin}:{self.sub.pattern}"
            )
            self.workers.add(self.worker)
            self.worker.add_done_callback(self._worker_done)

    def push_out_oldest(self, size: int) -> None:
        """Under ``drop_oldest``: make room for one more by dropping the oldest event."""
        self.count_drop(self.buffer.popleft())
        if not self.warned_full:
            self.warned_full = True
            _log.warning(
                "plugin '%s': event queue of subscription '%s' is full (%d events); "
                "dropping the oldest events",
                self.sub.plugin,
                self.sub.pattern,
                size,
            )

    async def wait_for_space(self, size: int) -> None:
        while self.sub.is_active and len(self.buffer) >= size:
            self.space = asyncio.get_running_loop().create_future()
            await self.space

    async def wait_idle(self) -> None:
        while self.sub.is_active and self.pending:
            if self.idle is None or self.idle.done():
                self.idle = asyncio.get_running_loop().create_future()
            await self.idle

    def close(self) -> None:
        """Unsubscribed: drop what is queued; the worker ends after its current event."""
        while self.buffer:
            self.count_drop(self.buffer.popleft())
        for future in (self.wakeup, self.space, self.idle):
            wake(future)

    def reset(self) -> None:
        """The bus stopped (its tasks are cancelled): forget what is left, and the loop."""
        self.buffer.clear()
        self.busy = False
        self.worker = self.wakeup = self.space = self.idle = None

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self.workers.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("event worker %s crashed", task.get_name(), exc_info=exc)

    # ------------------------------------------------------------------ delivering

    async def run(self) -> None:  # noqa: C901 - the worker loop: no frame per event
        sub, buffer = self.sub, self.buffer
        entry = sub.entry
        door, acall = entry.door, entry.acall
        while sub.is_active:
            if not buffer:
                wake(self.idle)
                self.wakeup = asyncio.get_running_loop().create_future()
                await self.wakeup
                continue
            event = buffer.popleft()
            if self.space is not None:
                wake(self.space)
                self.space = None
            self.busy = True
            if not door.is_open and not await self._through_gate(event):
                self.busy = False
                continue
            token = attach_trace(dict(event.trace)) if event.trace else None
            try:
                # the async entry also for a plain handler: what it returns, if awaitable,
                # is awaited inside the seam (timed, bounded, its error the plugin's)
                await acall(event)
            except PluginUnavailableError as exc:
                self._refused(event, exc)
            except Exception as exc:
                self.count_failure(event, exc)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                    raise  # the worker is stopping: the event stays undone
                fail(entry, exc)  # the seam counts Exceptions only: this is the plugin's
                self.count_failure(event, exc)
            else:
                sub.delivered += 1
                (self.stats.get(event.name) or self.stats_for(event.name)).delivered += 1
            finally:
                if token is not None:
                    detach_trace(token)
            self.busy = False  # stays True if cancelled mid-handler: that event is undone

    async def _through_gate(self, event: Event) -> bool:
        """The door is shut: wait at a held gate; False if the event went elsewhere.

        While it waits the event is ``holding``: a version committed meanwhile takes it
        first, ahead of the events still queued (``EventBus.version_committed``).
        """
        door = self.sub.door
        self.holding = event
        try:
            live = await door.gate.wait_async(door)
        except PluginUnavailableError as exc:
            if self.holding is event:
                self._dropped(event, exc)
            return False
        finally:
            taken = self.holding is not event
            self.holding = None
        if taken:
            return False  # handed to the new version already, in order
        if live is door:
            return True
        self.bus.hand_over([event], live)  # the version was replaced: its successor takes it
        return False

    def _refused(self, event: Event, error: PluginUnavailableError) -> None:
        if error.plugin == self.sub.plugin:  # this plugin's gate closed just now
            self._dropped(event, error)
        else:  # a plugin the handler called refused: the delivery failed
            self.count_failure(event, error)

    def _dropped(self, event: Event, error: PluginUnavailableError) -> None:
        _log.debug("event '%s' dropped for plugin '%s': %s", event.name, self.sub.plugin, error)
        self.count_drop(event)

    def stats_for(self, name: str) -> EventStats:
        key = (self.sub.plugin, name)
        found = self.all_stats.get(key)
        if found is None:
            found = self.all_stats[key] = EventStats()
        self.stats[name] = found
        return found

    def count_drop(self, event: Event) -> None:
        self.sub.dropped += 1
        (self.stats.get(event.name) or self.stats_for(event.name)).dropped += 1

    def count_failure(self, event: Event, exc: BaseException) -> None:
        sub = self.sub
        sub.failed += 1
        (self.stats.get(event.name) or self.stats_for(event.name)).failed += 1
        _log.error(
            "plugin '%s': event handler for '%s' (subscription '%s') raised %s: %s",
            sub.plugin,
            event.name,
            sub.pattern,
            type(exc).__name__,
            error_text(exc),
            exc_info=exc,
        )


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@dataclass(slots=True)
class Waiting:
    """A publish under the ``wait`` policy that found a full queue, in line for room."""

    event: Event
    targets: Sequence[Inbox]
    future: asyncio.Future[None]
    next: int = 0  # targets[:next] have the event already
