"""Call statistics: calls, time and errors per (plugin, version, source).

The seam updates these lists in place on every call (``tether._seam``); readers get
them summed per source (``CallMetrics``) or per version and source (``CallRow``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["CallMetrics", "CallRow", "CallStats"]


@dataclass(frozen=True, slots=True)
class CallMetrics:
    """The calls into a plugin from one source (``hook:pre_request``, ``call:execute``...).

    ``calls`` counts every call; ``timed`` of them were timed (the seam times one call
    in 16, the first always; so do the hook chains), taking ``timed_duration``
    together. ``total_duration`` estimates all calls' time from the timed ones.
    """

    source: str
    calls: int
    errors: int
    timed: int
    timed_duration: timedelta
    by_version: dict[str, int]

    @property
    def average_duration(self) -> timedelta:
        return self.timed_duration / self.timed if self.timed else timedelta(0)

    @property
    def total_duration(self) -> timedelta:
        return self.average_duration * self.calls

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "calls": self.calls,
            "errors": self.errors,
            "timed_calls": self.timed,
            "total_duration_seconds": self.total_duration.total_seconds(),
            "average_duration_seconds": self.average_duration.total_seconds(),
            "by_version": dict(self.by_version),
        }


@dataclass(frozen=True, slots=True)
class CallRow:
    """One version's calls from one source: ``seconds`` over the ``timed`` calls."""

    version: str
    source: str
    calls: int
    errors: int
    timed: int
    seconds: float


class CallStats:
    """``[calls, nanoseconds, errors, timed calls]`` per (plugin, version, source).

    The seam and the hook chains add to these lists in place (no lock: an update can
    be lost now and then under threads, which metrics allow). They outlive versions and
    plugins, so a plugin's history survives a reload or an unload and load.
    """

    __slots__ = ("__weakref__", "_drainers", "_lists", "_lock")

    def __init__(self) -> None:
        self._lists: dict[tuple[str, str, str], list[int]] = {}
        self._lock = threading.Lock()
        self._drainers: list[weakref.WeakMethod[Callable[[], None]]] = []

    def add_drainer(self, drain: Callable[[], None]) -> None:
        """``drain()`` (a bound method) adds deferred counts (the hook chains' clock logs)
        to these lists; it runs before every read, so a read is never behind."""
        with self._lock:
            if not any(ref() == drain for ref in self._drainers):
                self._drainers.append(weakref.WeakMethod(drain))

    def _drain(self) -> None:
        for ref in list(self._drainers):
            drain = ref()
            if drain is not None:
                drain()

    def list_for(self, plugin: str, version: str, source: str) -> list[int]:
        key = (plugin, version, source)
        found = self._lists.get(key)
        if found is None:
            with self._lock:
                found = self._lists.setdefault(key, [0, 0, 0, 0])
        return found

    def of(self, plugin: str, *, prefix: str = "") -> dict[str, CallMetrics]:
        """Per source (those starting with ``prefix``): every version of ``plugin`` together."""
        self._drain()
        totals: dict[str, list[int]] = {}
        versions: dict[str, dict[str, int]] = {}
        for (owner, version, source), stats in list(self._lists.items()):
            if owner != plugin or not source.startswith(prefix):
                continue
            total = totals.setdefault(source, [0, 0, 0, 0])
            for k in range(4):
                total[k] += stats[k]
            served = versions.setdefault(source, {})
            served[version] = served.get(version, 0) + stats[0]
        return {
            source: CallMetrics(
                source, calls, errors, timed, timedelta(microseconds=nanos / 1000), versions[source]
            )
            for source, (calls, nanos, errors, timed) in sorted(totals.items())
        }

    def rows(self, plugin: str) -> list[CallRow]:
        """Every (version, source) of ``plugin`` with its counts, for exporters."""
        self._drain()
        return [
            CallRow(version, source, stats[0], stats[2], stats[3], stats[1] / 1e9)
            for (owner, version, source), stats in sorted(self._lists.items())
            if owner == plugin
        ]

    def forget(self, plugin: str) -> None:
        with self._lock:
            for key in [k for k in self._lists if k[0] == plugin]:
                del self._lists[key]
