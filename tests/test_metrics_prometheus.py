"""Prometheus metrics: a per-manager registry whose collector reads live state."""

from __future__ import annotations

import asyncio
import contextlib

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from ops_support import start_plugins, write_plugin
from tether import PluginManager
from tether.errors import PluginImportError
from tether.observability import create_registry, observe

EVENTS = """\
class Plugin:
    def initialize(self, ctx):
        self.ctx = ctx
        self.seen = []
        ctx.subscribe_event("order.*", self.seen.append)
        ctx.register_hook("pre_request", 10, self.on_request)
        ctx.metrics.increment_counter("orders.placed", 2, region="eu")
        ctx.metrics.increment_counter("orders.placed", 1, region="us")
        ctx.metrics.record_gauge("queue_depth", 7)
        for value in (0.003, 0.2, 4.0):
            ctx.metrics.record_histogram("checkout.seconds", value, buckets=(0.01, 1.0))

    def on_request(self, arg):
        self.ctx.publish_event_nowait("order.created", {"id": arg})

    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass
"""


def scrape(manager: PluginManager) -> dict[str, list]:
    text = observe(manager).render_metrics().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return {name: family.samples for name, family in families.items()} | {
        "__types__": {name: family.type for name, family in families.items()}
    }


def value(samples, name: str, **labels: str) -> float:
    found = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


async def delivered(seen: list, count: int, timeout: float = 10.0) -> None:
    """Wait until a subscriber has seen ``count`` events (deliveries are asynchronous)."""
    async with asyncio.timeout(timeout):
        while len(seen) < count:  # noqa: ASYNC110 - the plugin's list has no event to wait on
            await asyncio.sleep(0.01)


def test_load_and_status_metrics(tmp_path):
    broken = write_plugin(tmp_path, "broken", code="raise ImportError('no such thing')\n")

    async def main():
        async with PluginManager(state_directory=tmp_path / "state") as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            with contextlib.suppress(PluginImportError):
                await manager.load_plugin(broken)
            return scrape(manager)

    m = asyncio.run(main())
    types = m["__types__"]
    attempts = m["tether_plugin_load_attempts"]
    assert types["tether_plugin_load_attempts"] == "counter"
    assert (
        value(
            attempts,
            "tether_plugin_load_attempts_total",
            plugin="auth-plugin",
            status="success",
        )
        == 1
    )
    assert (
        value(attempts, "tether_plugin_load_attempts_total", plugin="broken", status="failure") == 1
    )
    assert (
        value(m["tether_plugin_load_success"], "tether_plugin_load_success", plugin="auth-plugin")
        == 1
    )
    assert (
        value(m["tether_plugin_load_success"], "tether_plugin_load_success", plugin="broken") == 0
    )
    assert (
        value(
            m["tether_plugin_load_duration_seconds"],
            "tether_plugin_load_duration_seconds",
            plugin="auth-plugin",
        )
        >= 0
    )
    status = m["tether_plugin_status"]
    assert value(status, "tether_plugin_status", plugin="auth-plugin", status="running") == 1
    assert value(status, "tether_plugin_status", plugin="auth-plugin", status="error") == 0
    assert len([s for s in status if s.labels["plugin"] == "auth-plugin"]) == 6
    assert value(m["tether_plugin_enabled"], "tether_plugin_enabled", plugin="auth-plugin") == 1
    assert value(m["tether_plugin_degraded"], "tether_plugin_degraded", plugin="auth-plugin") == 0
    assert (
        value(
            m["tether_plugin_calls_in_flight"],
            "tether_plugin_calls_in_flight",
            plugin="auth-plugin",
        )
        == 0
    )
    assert (
        value(m["tether_plugin_info"], "tether_plugin_info", plugin="auth-plugin", version="1.0.0")
        == 1
    )
    assert "process_cpu_seconds" in types or "python_info" in types  # process metrics ride along


def test_hook_error_and_event_metrics(tmp_path):
    async def main():
        async with PluginManager(state_directory=tmp_path / "state") as manager:
            await start_plugins(
                manager,
                write_plugin(tmp_path, "auth-plugin"),
                write_plugin(tmp_path, "shop", code=EVENTS),
            )
            manager.runtime.hooks.call("pre_request", 1)
            manager.get_plugin("auth-plugin").fail_hooks = True
            manager.runtime.hooks.call("pre_request", 2)
            manager._slot("auth-plugin").gate.record_error(TimeoutError("slow"))
            await delivered(manager.get_plugin("shop").seen, 2)
            return scrape(manager)

    m = asyncio.run(main())
    types = m["__types__"]
    assert types["tether_plugin_hook_executions"] == "counter"
    assert (
        value(
            m["tether_plugin_hook_executions"],
            "tether_plugin_hook_executions_total",
            plugin="auth-plugin",
            hook="pre_request",
        )
        == 2
    )
    assert (
        value(
            m["tether_plugin_hook_errors"],
            "tether_plugin_hook_errors_total",
            plugin="auth-plugin",
            hook="pre_request",
        )
        == 1
    )
    durations = m["tether_plugin_hook_duration_seconds"]
    assert types["tether_plugin_hook_duration_seconds"] == "summary"
    # over the timed calls: one in 16, the first always (of two calls, one)
    assert (
        value(
            durations,
            "tether_plugin_hook_duration_seconds_count",
            plugin="shop",
            hook="pre_request",
        )
        == 1
    )
    assert (
        value(
            durations, "tether_plugin_hook_duration_seconds_sum", plugin="shop", hook="pre_request"
        )
        >= 0
    )
    errors = m["tether_plugin_errors"]
    assert (
        value(errors, "tether_plugin_errors_total", plugin="auth-plugin", error_type="ValueError")
        == 1
    )
    assert (
        value(errors, "tether_plugin_errors_total", plugin="auth-plugin", error_type="TimeoutError")
        == 1
    )
    assert (
        value(m["tether_plugin_error_count"], "tether_plugin_error_count", plugin="auth-plugin")
        == 2
    )
    assert value(m["tether_plugin_error_count"], "tether_plugin_error_count", plugin="shop") == 0
    assert (
        value(
            m["tether_plugin_events_published"],
            "tether_plugin_events_published_total",
            plugin="shop",
            event="order.created",
        )
        == 2
    )
    assert (
        value(
            m["tether_plugin_events_delivered"],
            "tether_plugin_events_delivered_total",
            plugin="shop",
            event="order.created",
        )
        == 2
    )
    # the plugin's own metrics, labelled with the plugin, names made valid
    assert types["orders_placed"] == "counter"
    assert value(m["orders_placed"], "orders_placed_total", plugin="shop", region="eu") == 2
    assert value(m["queue_depth"], "queue_depth", plugin="shop") == 7
    assert types["checkout_seconds"] == "histogram"
    hist = m["checkout_seconds"]
    assert value(hist, "checkout_seconds_bucket", plugin="shop", le="0.01") == 1
    assert value(hist, "checkout_seconds_bucket", plugin="shop", le="1.0") == 2
    assert value(hist, "checkout_seconds_bucket", plugin="shop", le="+Inf") == 3
    assert value(hist, "checkout_seconds_count", plugin="shop") == 3
    assert abs(value(hist, "checkout_seconds_sum", plugin="shop") - 4.203) < 1e-9


def test_call_metrics_by_plugin_version_and_source(tmp_path):
    async def main():
        async with PluginManager(state_directory=tmp_path / "state") as manager:
            await start_plugins(
                manager,
                write_plugin(tmp_path, "auth-plugin"),
                write_plugin(tmp_path, "shop", code=EVENTS),
            )
            manager.runtime.hooks.call("pre_request", 1)
            manager.get_plugin("auth-plugin").fail_hooks = True
            manager.runtime.hooks.call("pre_request", 2)
            await delivered(manager.get_plugin("shop").seen, 2)
            return scrape(manager)

    m = asyncio.run(main())
    types = m["__types__"]
    assert types["tether_plugin_calls"] == "counter"
    assert types["tether_plugin_call_errors"] == "counter"
    assert types["tether_plugin_call_duration_seconds"] == "summary"
    auth = {"plugin": "auth-plugin", "version": "1.0.0", "source": "hook:pre_request"}
    calls, errors = m["tether_plugin_calls"], m["tether_plugin_call_errors"]
    assert value(calls, "tether_plugin_calls_total", **auth) == 2
    assert value(errors, "tether_plugin_call_errors_total", **auth) == 1
    shop = {"plugin": "shop", "version": "1.0.0", "source": "event:order.*"}
    assert value(calls, "tether_plugin_calls_total", **shop) == 2
    assert value(errors, "tether_plugin_call_errors_total", **shop) == 0
    durations = m["tether_plugin_call_duration_seconds"]
    # one call in 16 is timed, the first always: of two calls, one
    assert value(durations, "tether_plugin_call_duration_seconds_count", **auth) == 1
    assert value(durations, "tether_plugin_call_duration_seconds_sum", **auth) >= 0
    assert value(durations, "tether_plugin_call_duration_seconds_count", **shop) == 1
    assert {s.labels["source"] for s in calls if s.labels["plugin"] == "shop"} == {
        "hook:pre_request",
        "event:order.*",
    }


def test_each_manager_has_its_own_registry_and_the_global_one_stays_clean(tmp_path):
    async def main():
        first = PluginManager(state_directory=tmp_path / "one")
        second = PluginManager(state_directory=tmp_path / "two")
        async with first, second:
            await start_plugins(first, write_plugin(tmp_path / "a", "alpha"))
            await start_plugins(second, write_plugin(tmp_path / "b", "beta"))
            return scrape(first), scrape(second), observe(first).registry()

    one, two, registry = asyncio.run(main())
    assert {s.labels["plugin"] for s in one["tether_plugin_info"]} == {"alpha"}
    assert {s.labels["plugin"] for s in two["tether_plugin_info"]} == {"beta"}
    assert registry is not prometheus_client.REGISTRY
    global_names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("tether_") for name in global_names)


def test_unloaded_plugins_leave_no_series_and_clashing_plugin_metrics_are_skipped(tmp_path, caplog):
    gauge = """\
class Plugin:
    def initialize(self, ctx):
        ctx.metrics.record_gauge("orders.placed", 1)
        ctx.metrics.record_gauge("tether_plugin_status", 1)
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass
"""

    async def main():
        async with PluginManager(state_directory=tmp_path / "state") as manager:
            await start_plugins(
                manager,
                write_plugin(tmp_path, "shop", code=EVENTS),
                write_plugin(tmp_path, "rival", code=gauge),
            )
            both = scrape(manager)
            await manager.unload_plugin("rival")
            return both, scrape(manager)

    both, after = asyncio.run(main())
    assert {s.labels["plugin"] for s in both["orders_placed"]} == {"shop"}
    assert "rival" in {s.labels["plugin"] for s in both["tether_plugin_status"]}
    assert "rival" not in {s.labels["plugin"] for s in after["tether_plugin_info"]}
    logged = caplog.text
    assert "is a gauge, but another plugin's is a counter" in logged
    assert "uses the reserved prefix tether_" in logged


def test_a_registry_without_process_metrics(tmp_path):
    registry = create_registry(PluginManager(state_directory=tmp_path), process=False)
    text = prometheus_client.generate_latest(registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "tether_plugin_status" in names
    assert not any(n.startswith("process_") for n in names)


def test_every_family_names_the_plugin_by_one_label(tmp_path):
    """One label name for the plugin across every tether family (`plugin`)."""

    async def main() -> str:
        async with PluginManager(state_directory=tmp_path / "state") as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            return observe(manager).render_metrics().decode()

    text = asyncio.run(main())
    labels = {
        name
        for family in text_string_to_metric_families(text)
        if family.name.startswith("tether_")
        for sample in family.samples
        for name in sample.labels
    }
    assert "plugin" in labels
    assert not {name for name in labels if "plugin" in name} - {"plugin"}
