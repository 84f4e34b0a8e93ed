"""Observability: Prometheus metrics, the state tables, and the background checks.

Health (:class:`PluginHealth`), error thresholds (:class:`ErrorThreshold`) and the
enabled flags are the manager's own (``manager.get_plugin_health``,
``manager.set_error_threshold``); they are re-exported here with what builds on them:
``observe(manager)`` gives the manager's :class:`Observability` (its background task,
its Prometheus registry, its state-table writer). docs/operations.md describes the
whole of it. ``prometheus_client`` is imported on the first scrape, not with this
package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether._health import HealthCheckResult, PluginHealth
from tether._state_tables import REFERENCE_QUERIES, PersistedFlag, PluginRow, PluginStateStore
from tether._thresholds import (
    DISABLED_REASON,
    THRESHOLD_EVENT,
    ErrorThreshold,
    ThresholdAction,
    ThresholdStatus,
)
from tether.observability._hub import Observability, observe

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from tether._manager import PluginManager
    from tether.observability._prometheus import TetherCollector

__all__ = [
    "DISABLED_REASON",
    "REFERENCE_QUERIES",
    "THRESHOLD_EVENT",
    "ErrorThreshold",
    "HealthCheckResult",
    "Observability",
    "PersistedFlag",
    "PluginHealth",
    "PluginRow",
    "PluginStateStore",
    "TetherCollector",
    "ThresholdAction",
    "ThresholdStatus",
    "create_registry",
    "observe",
]


def create_registry(manager: PluginManager, *, process: bool = True) -> CollectorRegistry:
    """A fresh Prometheus registry reading ``manager`` (plus process, platform, GC metrics)."""
    from tether.observability._prometheus import create_registry as create

    return create(manager, process=process)


def __getattr__(name: str) -> object:
    if name == "TetherCollector":
        from tether.observability._prometheus import TetherCollector

        return TetherCollector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
