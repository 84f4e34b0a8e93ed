"""Events as values: the ``Event`` record, names and patterns, and the backend seam.

The bus (``tether._events``) owns plugins, queues and delivery; this module holds what
it and a backend agree on. See ``tether._events`` for the guarantees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal, Protocol

from tether.errors import EventError
from tether.types import Event

__all__ = [
    "HOST",
    "Event",
    "EventBackend",
    "EventHandler",
    "EventReceiver",
    "EventStats",
    "InProcessBackend",
    "Policy",
    "check_name",
    "pattern_covers",
    "pattern_matches",
    "wildcard_prefix",
]

Policy = Literal["wait", "drop_oldest"]
EventHandler = Callable[["Event"], object]

HOST = ""
"""The ``plugin`` part of a ``stats()`` key for events published without a source."""


@dataclass(slots=True)
class EventStats:
    """Counts for one (plugin, event name): published by it, or delivered/failed/dropped to it."""

    published: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0


# --------------------------------------------------------------------------- patterns


def check_name(name: str) -> None:
    if not name or "*" in name or name.strip() != name:
        raise EventError(
            f"invalid event name {name!r}: publish a dotted name like 'user.created' "
            "(wildcards are for subscriptions)"
        )


def wildcard_prefix(pattern: str) -> str | None:
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
    prefix = wildcard_prefix(pattern)
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
