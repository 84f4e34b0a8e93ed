"""Plugin-defined metrics: counters, gauges and histograms, labelled with the plugin.

Each plugin's ``ctx.metrics`` writes into one shared :class:`MetricsStore`; hosts read
``store.samples()`` (the web host exposes them in Prometheus text format).
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["DEFAULT_BUCKETS", "MetricSample", "MetricsCollector", "MetricsStore"]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]*$")

_Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int]
    count: int = 0
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.total += value


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One series: ``kind`` is counter, gauge or histogram."""

    plugin: str
    name: str
    kind: str
    labels: Mapping[str, str]
    value: float
    buckets: tuple[tuple[float, int], ...] = field(default=())  # cumulative, histograms only
    count: int = 0


class MetricsStore:
    """All plugins' metrics. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, str], str] = {}
        self._values: dict[tuple[str, str, _Labels], float] = {}
        self._histograms: dict[tuple[str, str, _Labels], _Histogram] = {}

    def _check(self, plugin: str, name: str, kind: str) -> None:
        if not _NAME.match(name):
            raise ValueError(
                f"invalid metric name {name!r} (plugin '{plugin}'): use letters, digits, "
                "'_', '.' or ':'"
            )
        known = self._kinds.setdefault((plugin, name), kind)
        if known != kind:
            raise ValueError(f"metric '{name}' of plugin '{plugin}' is a {known}, not a {kind}")

    def add(self, plugin: str, name: str, value: float, labels: _Labels, *, kind: str) -> None:
        if kind == "counter" and value < 0:
            raise ValueError(f"counter '{name}' can only go up, got {value}")
        with self._lock:
            self._check(plugin, name, kind)
            key = (plugin, name, labels)
            if kind == "counter":
                self._values[key] = self._values.get(key, 0.0) + value
            else:
                self._values[key] = value

    def observe(
        self, plugin: str, name: str, value: float, labels: _Labels, buckets: tuple[float, ...]
    ) -> None:
        with self._lock:
            self._check(plugin, name, "histogram")
            key = (plugin, name, labels)
            histogram = self._histograms.get(key)
            if histogram is None:
                histogram = _Histogram(buckets, [0] * len(buckets))
                self._histograms[key] = histogram
            histogram.observe(value)

    def remove_plugin(self, plugin: str) -> None:
        with self._lock:
            self._values = {k: v for k, v in self._values.items() if k[0] != plugin}
            self._histograms = {k: v for k, v in self._histograms.items() if k[0] != plugin}
            self._kinds = {k: v for k, v in self._kinds.items() if k[0] != plugin}

    def samples(self, plugin: str | None = None) -> Iterator[MetricSample]:
        with self._lock:
            values = list(self._values.items())
            histograms = [(k, h.buckets, list(h.counts), h.count, h.total)
                          for k, h in self._histograms.items()]  # fmt: skip
            kinds = dict(self._kinds)
        for (owner, name, labels), value in values:
            if plugin is None or owner == plugin:
                yield MetricSample(owner, name, kinds[(owner, name)], dict(labels), value)
        for (owner, name, labels), bounds, counts, count, total in histograms:
            if plugin is None or owner == plugin:
                running = 0
                cumulative = []
                for bound, n in zip(bounds, counts, strict=True):
                    running += n
                    cumulative.append((bound, running))
                yield MetricSample(
                    owner, name, "histogram", dict(labels), total, tuple(cumulative), count
                )


def _labels(labels: Mapping[str, object]) -> _Labels:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


class MetricsCollector:
    """``ctx.metrics``: one plugin's view of the store; every series carries the plugin."""

    def __init__(self, store: MetricsStore, plugin: str) -> None:
        self._store = store
        self._plugin = plugin

    def increment_counter(self, name: str, value: float = 1.0, **labels: object) -> None:
        self._store.add(self._plugin, name, value, _labels(labels), kind="counter")

    def record_gauge(self, name: str, value: float, **labels: object) -> None:
        self._store.add(self._plugin, name, value, _labels(labels), kind="gauge")

    def record_histogram(
        self,
        name: str,
        value: float,
        *,
        buckets: Sequence[float] | None = None,
        **labels: object,
    ) -> None:
        """Observe ``value``; ``buckets`` are the upper bounds (default ``DEFAULT_BUCKETS``)."""
        bounds = tuple(sorted(DEFAULT_BUCKETS if buckets is None else buckets))
        if not bounds:
            raise ValueError(f"histogram '{name}' needs at least one bucket")
        if bounds[-1] != math.inf:
            bounds = (*bounds, math.inf)
        self._store.observe(self._plugin, name, value, _labels(labels), bounds)

    def samples(self) -> list[MetricSample]:
        return list(self._store.samples(self._plugin))
