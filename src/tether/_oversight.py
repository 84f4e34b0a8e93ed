"""The manager's watch over its plugins: error thresholds, health checks, and successes.

One :class:`Oversight` per manager. It gives each loaded plugin its error threshold
(the config's, or one set for it explicitly, which outlives a reload), hears every
error recorded on a plugin's gate, notices successful calls (from the call metrics)
for thresholds that reset on success, runs the plugins' ``health_check()`` through
their seams, and builds the reference's ``PluginHealth`` from a slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from tether._config import ErrorThresholdSettings, PluginConfig
from tether._gate import GateState
from tether._health import HealthCheckResult, HealthChecks, PluginHealth
from tether._hooks import HookMetrics
from tether._lifecycle import PluginStatus
from tether._slots import PluginSlot
from tether._thresholds import ErrorThreshold, ErrorThresholds, ThresholdStatus, merge_settings
from tether.types import PluginInfo

__all__ = ["Oversight"]


class Oversight:
    """Thresholds and health of one manager's plugins (see the module docstring).

    ``disable(name, reason)``, ``enable(name) -> bool`` and ``alert(name, data)`` are
    what a threshold does when it trips, retries or alerts (the manager's).
    """

    def __init__(
        self,
        *,
        disable: Callable[[str, str], None],
        enable: Callable[[str], bool],
        alert: Callable[[str, dict[str, object]], None],
        health_timeout: float,
    ) -> None:
        self.thresholds = ErrorThresholds(disable=disable, enable=enable, alert=alert)
        self.health = HealthChecks(timeout=health_timeout)
        self._explicit: dict[str, ErrorThreshold | None] = {}
        self._successes: dict[str, int] = {}

    # ------------------------------------------------------------------ thresholds

    def plugin_loaded(
        self, slot: PluginSlot, settings: PluginConfig, section: ErrorThresholdSettings | None
    ) -> None:
        """Give a newly loaded plugin its threshold."""
        name = slot.name
        if name in self._explicit:
            threshold = self._explicit[name]
        else:
            threshold = merge_settings(section, settings.error_threshold)
        self.thresholds.set(name, threshold)
        self._successes[name] = slot.handle.successes()  # call metrics outlive a reload

    def plugin_gone(self, name: str) -> None:
        self.health.forget(name)
        self.thresholds.set(name, None)

    def set_threshold(self, name: str, threshold: ErrorThreshold | None) -> None:
        self._explicit[name] = threshold
        self.thresholds.set(name, threshold)

    def status(self, name: str) -> ThresholdStatus | None:
        return self.thresholds.status(name)

    def check(self, slots: Iterable[PluginSlot]) -> list[str]:
        """Notice successful calls, retry plugins whose cooldown passed; those reopened."""
        for slot in slots:
            if self.thresholds.get(slot.name) is None:
                continue
            succeeded = slot.handle.successes()
            if succeeded > self._successes.get(slot.name, 0):
                self.thresholds.record_success(slot.name)
            self._successes[slot.name] = succeeded
        return self.thresholds.check_cooldowns()

    # ------------------------------------------------------------------ health

    async def check_health(
        self, slots: Iterable[PluginSlot], *, timeout: float
    ) -> dict[str, HealthCheckResult]:
        """Run the ``health_check()`` of each running plugin among ``slots``."""
        self.health.timeout = timeout
        running = [
            (slot.name, slot.current) for slot in slots
            if slot.current.status is PluginStatus.RUNNING
        ]  # fmt: skip
        results = await asyncio.gather(
            *(self.health.check(version.door, version.instance) for _, version in running)
        )
        return {
            plugin: result
            for (plugin, _), result in zip(running, results, strict=True)
            if result is not None
        }

    def health_of(
        self,
        slot: PluginSlot,
        info: PluginInfo,
        *,
        hook_metrics: dict[str, HookMetrics],
        load_duration: float | None,
    ) -> PluginHealth:
        """The reference's ``PluginHealth`` of one plugin, from its slot."""
        name = slot.name
        gate = slot.gate
        return PluginHealth(
            name=name,
            version=info.version,
            status=info.status,
            enabled=info.enabled,
            error_count=gate.error_count,
            last_error=gate.last_error,
            last_error_at=gate.last_error_at,
            hook_metrics=hook_metrics,
            load_time=info.load_time,
            load_duration=load_duration,
            gate=gate.state,
            unavailable_reason=gate.closed_reason if gate.state is GateState.CLOSED else None,
            in_flight=gate.in_flight,
            degraded=self.health.is_degraded(name),
            last_check=self.health.result(name),
            threshold=self.thresholds.status(name),
            errors_by_type=dict(gate.errors_by_type),
            calls=slot.handle.metrics(),
        )
