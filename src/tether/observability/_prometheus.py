"""Prometheus metrics: one collector that reads a manager's live state at every scrape.

Nothing here keeps a metric of its own: each scrape walks the manager (statuses,
gates, load attempts), the hook registry (counts and total time), the event bus
(statistics) and the plugins' own metrics store, so there is no global mutable state
and two managers in one process (two tests) never see each other's series. Each
manager has its own ``CollectorRegistry`` (``observe(manager).registry()``). The one
exception is reloads: a reload is an event, not a state, so the manager's hub counts
them as they finish (``observe(manager).reloads``, fed by ``manager.on_reload``) and
the scrape reads that tally.

The names follow the reference's, with the ``tether_`` prefix and Prometheus'
conventions: base units (seconds, not milliseconds) and ``_total`` on counters
(``plugin.hook.execution_count`` is ``tether_plugin_hook_executions_total``).
docs/operations.md has the full table.

Hook durations are a *summary without quantiles* (``_count`` and ``_sum``): the hook
fast path adds each call's time to a running total and keeps no per-call samples
(that is what makes it cheap), so there are no buckets to expose. The average is
``rate(tether_plugin_hook_duration_seconds_sum[5m]) /
rate(tether_plugin_hook_duration_seconds_count[5m])``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from tether._events import HOST
from tether._lifecycle import PluginStatus
from tether._metrics import MetricSample
from tether.isolation import RemotePlugin
from tether.observability._hub import observe

if TYPE_CHECKING:
    from tether._manager import PluginManager

__all__ = ["TetherCollector", "create_registry", "families"]

log = logging.getLogger("tether.observability")

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def _metric_name(name: str) -> str:
    cleaned = _INVALID.sub("_", name)
    return f"_{cleaned}" if cleaned[:1].isdigit() else cleaned


def _label_name(name: str) -> str:
    cleaned = _INVALID_LABEL.sub("_", name)
    return f"_{cleaned}" if cleaned[:1].isdigit() or cleaned.startswith("__") else cleaned


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


class TetherCollector(Collector):
    """Yields every ``tether_*`` family, and the plugins' own metrics, from live state."""

    def __init__(self, manager: PluginManager) -> None:
        self._manager = manager
        self._warned: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        yield from self._plugins()
        yield from self._loads()
        yield from self._reloads()
        yield from self._hooks()
        yield from self._calls()
        yield from self._errors()
        yield from self._events()
        yield from self._plugin_metrics()
        yield from self._workers()

    # ------------------------------------------------------------------ plugins

    def _plugins(self) -> Iterator[Metric]:
        manager = self._manager
        info_family = GaugeMetricFamily(
            "tether_plugin_info", "Loaded plugins (always 1).", labels=["plugin", "version"]
        )
        status = GaugeMetricFamily(
            "tether_plugin_status",
            "1 for the plugin's lifecycle status, 0 for the others.",
            labels=["plugin", "status"],
        )
        enabled = GaugeMetricFamily(
            "tether_plugin_enabled", "1 if the plugin is enabled.", labels=["plugin"]
        )
        degraded = GaugeMetricFamily(
            "tether_plugin_degraded", "1 if its last health check failed.", labels=["plugin"]
        )
        in_flight = GaugeMetricFamily(
            "tether_plugin_calls_in_flight", "Calls inside the plugin now.", labels=["plugin"]
        )
        waiting = GaugeMetricFamily(
            "tether_plugin_calls_waiting",
            "Callers held at the plugin's gate (it is reloading).",
            labels=["plugin"],
        )
        for info in manager.list_plugins():
            name = info.name
            handle = manager.get_handle(name)
            info_family.add_metric([name, info.version], 1)
            for value in PluginStatus:
                status.add_metric([name, value.value], 1 if info.status is value else 0)
            enabled.add_metric([name], 1 if info.enabled else 0)
            degraded.add_metric([name], 1 if manager.is_degraded(name) else 0)
            in_flight.add_metric([name], handle.in_flight)
            waiting.add_metric([name], handle.waiting)
        yield from (info_family, status, enabled, degraded, in_flight, waiting)

    def _workers(self) -> Iterator[Metric]:
        """Process plugins' workers: up, restarts, crashes, memory and CPU."""
        up = GaugeMetricFamily(
            "tether_plugin_worker_up", "1 if the plugin's worker process is running.",
            labels=["plugin"],
        )  # fmt: skip
        restarts = CounterMetricFamily(
            "tether_plugin_restarts", "Restarts of the plugin's worker process after a crash.",
            labels=["plugin"],
        )  # fmt: skip
        crashes = CounterMetricFamily(
            "tether_plugin_worker_crashes",
            "Crashes of the plugin's worker process within the crash window (an hour).",
            labels=["plugin"],
        )
        rss = GaugeMetricFamily(
            "tether_plugin_worker_rss_bytes", "Resident memory of the plugin's worker process.",
            labels=["plugin"],
        )  # fmt: skip
        cpu = CounterMetricFamily(
            "tether_plugin_worker_cpu_seconds",
            "CPU time (user and system) of the plugin's current worker process.",
            labels=["plugin"],
        )
        for info in self._manager.list_plugins():
            plugin = self._manager.get_plugin(info.name)
            if not isinstance(plugin, RemotePlugin):
                continue
            remote = plugin.tether_worker
            state = remote.describe()
            up.add_metric([info.name], 1 if state["state"] == "running" else 0)
            restarts.add_metric([info.name], float(remote.restarts))
            crashes.add_metric([info.name], float(len(remote.crashes)))
            if "rss_bytes" in state:
                rss.add_metric([info.name], float(state["rss_bytes"]))  # type: ignore[arg-type]
                cpu.add_metric([info.name], float(state["cpu_seconds"]))  # type: ignore[arg-type]
        yield from (up, restarts, crashes, rss, cpu)

    def _loads(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "tether_plugin_load_attempts",
            "Plugin load attempts (imports), by outcome.",
            labels=["plugin", "status"],
        )
        duration = GaugeMetricFamily(
            "tether_plugin_load_duration_seconds",
            "How long the plugin's last successful load took.",
            labels=["plugin"],
        )
        success = GaugeMetricFamily(
            "tether_plugin_load_success",
            "1 if the plugin's last load attempt succeeded, 0 if it failed.",
            labels=["plugin"],
        )
        stamp = GaugeMetricFamily(
            "tether_plugin_load_timestamp_seconds",
            "When the plugin was loaded (Unix time).",
            labels=["plugin"],
        )
        counts: dict[tuple[str, str], int] = {}
        last: dict[str, str] = {}
        took: dict[str, float] = {}
        for attempt in self._manager.load_attempts:
            key = (attempt.plugin, attempt.status)
            counts[key] = counts.get(key, 0) + 1
            last[attempt.plugin] = attempt.status
            if attempt.status == "success":
                took[attempt.plugin] = attempt.duration
        for (plugin, outcome), count in sorted(counts.items()):
            attempts.add_metric([plugin, outcome], count)
        for plugin, outcome in sorted(last.items()):
            success.add_metric([plugin], 1 if outcome == "success" else 0)
        for plugin, seconds in sorted(took.items()):
            duration.add_metric([plugin], seconds)
        for info in self._manager.list_plugins():
            if info.load_time is not None:
                stamp.add_metric([info.name], info.load_time.timestamp())
        yield from (attempts, duration, success, stamp)

    def _reloads(self) -> Iterator[Metric]:
        tally = observe(self._manager).reloads
        reloads = CounterMetricFamily(
            "tether_plugin_reloads",
            "Reloads and rollbacks of the plugin, by outcome (reloaded, rolled_back, failed); "
            "an automatic rollback in a grace period counts as one more, rolled_back.",
            labels=["plugin", "outcome"],
        )
        durations = HistogramMetricFamily(
            "tether_plugin_reload_duration_seconds",
            "How long the plugin's reloads and rollbacks took, whatever their outcome.",
            labels=["plugin"],
        )
        for plugin, counts in tally.outcomes().items():
            for outcome, count in counts.items():
                reloads.add_metric([plugin, outcome], count)
        for plugin, buckets in tally.durations().items():
            durations.add_metric([plugin], buckets.cumulative(), buckets.total)
        yield from (reloads, durations)

    def _hooks(self) -> Iterator[Metric]:
        executions = CounterMetricFamily(
            "tether_plugin_hook_executions",
            "Calls of the plugin's handlers for a hook type.",
            labels=["plugin", "hook"],
        )
        errors = CounterMetricFamily(
            "tether_plugin_hook_errors",
            "Calls of the plugin's handlers for a hook type that raised.",
            labels=["plugin", "hook"],
        )
        durations = SummaryMetricFamily(
            "tether_plugin_hook_duration_seconds",
            "Time spent in the timed calls of the plugin's handlers for a hook type (count "
            "and sum; one call in 16 is timed).",
            labels=["plugin", "hook"],
        )
        hooks = self._manager.runtime.hooks
        for info in self._manager.list_plugins():
            for hook, m in sorted(hooks.metrics(info.name).items()):
                labels = [info.name, hook]
                executions.add_metric(labels, m.execution_count)
                errors.add_metric(labels, m.error_count)
                durations.add_metric(labels, m.timed_count, m.timed_duration.total_seconds())
        yield from (executions, errors, durations)

    def _calls(self) -> Iterator[Metric]:
        labels = ["plugin", "version", "source"]
        calls = CounterMetricFamily(
            "tether_plugin_calls",
            "Calls into the plugin through its seam, by version and source (hook:..., "
            "service:..., event:..., route:..., middleware:..., call:...).",
            labels=labels,
        )
        errors = CounterMetricFamily(
            "tether_plugin_call_errors",
            "Calls into the plugin that raised, by version and source.",
            labels=labels,
        )
        durations = SummaryMetricFamily(
            "tether_plugin_call_duration_seconds",
            "Time spent in the timed calls into the plugin (one in 16), by version and source "
            "(count and sum).",
            labels=labels,
        )
        for info in self._manager.list_plugins():
            for row in self._manager.get_handle(info.name).metric_rows():
                key = [info.name, row.version, row.source]
                calls.add_metric(key, row.calls)
                errors.add_metric(key, row.errors)
                durations.add_metric(key, row.timed, row.seconds)
        yield from (calls, errors, durations)

    def _errors(self) -> Iterator[Metric]:
        manager = self._manager
        by_type = CounterMetricFamily(
            "tether_plugin_errors",
            "Errors recorded against the plugin (hooks, events, services, routes, health "
            "checks, lifecycle), by exception type.",
            labels=["plugin", "error_type"],
        )
        count = GaugeMetricFamily(
            "tether_plugin_error_count",
            "Errors recorded against the plugin since it was loaded (the reference's "
            "plugin.error.count).",
            labels=["plugin"],
        )
        last = GaugeMetricFamily(
            "tether_plugin_last_error_timestamp_seconds",
            "When the plugin's last error was recorded (Unix time).",
            labels=["plugin"],
        )
        window = GaugeMetricFamily(
            "tether_plugin_error_threshold_window_errors",
            "Errors in the plugin's error threshold window.",
            labels=["plugin"],
        )
        exceeded = CounterMetricFamily(
            "tether_plugin_error_threshold_exceeded",
            "Times the plugin's error threshold was exceeded.",
            labels=["plugin"],
        )
        for info in manager.list_plugins():
            name = info.name
            handle = manager.get_handle(name)
            count.add_metric([name], handle.error_count)
            if handle.last_error_at is not None:
                last.add_metric([name], handle.last_error_at.timestamp())
            for kind, n in sorted(handle.errors_by_type().items()):
                by_type.add_metric([name, kind], n)
            threshold = manager.threshold_status(name)
            if threshold is not None:
                window.add_metric([name], threshold.errors_in_window)
                exceeded.add_metric([name], threshold.exceeded_count)
        yield from (by_type, count, last, window, exceeded)

    def _events(self) -> Iterator[Metric]:
        labels = ["plugin", "event"]
        families = {
            "published": CounterMetricFamily(
                "tether_plugin_events_published",
                'Events the plugin published (plugin "" is the host).',
                labels=labels,
            ),
            "delivered": CounterMetricFamily(
                "tether_plugin_events_delivered",
                "Events delivered to the plugin's handlers.",
                labels=labels,
            ),
            "failed": CounterMetricFamily(
                "tether_plugin_events_failed",
                "Events whose delivery to the plugin's handler raised.",
                labels=labels,
            ),
            "dropped": CounterMetricFamily(
                "tether_plugin_events_dropped",
                "Events dropped for the plugin (full queue, closed gate).",
                labels=labels,
            ),
        }
        for (plugin, event), stats in sorted(self._manager.runtime.events.stats().items()):
            owner = "" if plugin == HOST else plugin
            for field, family in families.items():
                value = getattr(stats, field)
                if value:
                    family.add_metric([owner, event], value)
        yield from families.values()

    # ------------------------------------------------------------------ the plugins' own

    def _plugin_metrics(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for sample in self._manager.runtime.metrics.samples():
            name = _metric_name(sample.name)
            if sample.kind == "counter":
                name = name.removesuffix("_total")
            if name.startswith("tether_"):
                self._warn(name, f"metric '{sample.name}' of plugin '{sample.plugin}' uses "
                           "the reserved prefix tether_; it is not exported")  # fmt: skip
                continue
            family = families.get(name)
            if family is None:
                family = families[name] = Metric(name, f"Plugin metric {sample.name}.", sample.kind)
            elif family.type != sample.kind:
                self._warn(name, f"metric '{sample.name}' of plugin '{sample.plugin}' is a "
                           f"{sample.kind}, but another plugin's is a {family.type}; "
                           "only the first is exported")  # fmt: skip
                continue
            _add_samples(family, name, sample)
        yield from families.values()

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)


def _add_samples(family: Metric, name: str, sample: MetricSample) -> None:
    labels = {_label_name(k): v for k, v in sample.labels.items()}
    labels["plugin"] = sample.plugin
    if sample.kind == "counter":
        family.add_sample(f"{name}_total", labels, sample.value)
    elif sample.kind == "gauge":
        family.add_sample(name, labels, sample.value)
    else:
        for bound, cumulative in sample.buckets:
            family.add_sample(f"{name}_bucket", {**labels, "le": _bound(bound)}, cumulative)
        family.add_sample(f"{name}_count", labels, sample.count)
        family.add_sample(f"{name}_sum", labels, sample.value)


def create_registry(manager: PluginManager, *, process: bool = True) -> CollectorRegistry:
    """A fresh registry with the manager's collector (and the process, platform and GC ones)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TetherCollector(manager))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def families(manager: PluginManager) -> Iterable[Metric]:
    """The manager's families, without a registry (for tests and embedding)."""
    return TetherCollector(manager).collect()
