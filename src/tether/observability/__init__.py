"""Observability: plugin health, error thresholds, Prometheus metrics and the state tables.

Every manager has one :class:`Observability` (``manager.observability``); the
manager's ``get_plugin_health``, ``get_all_health``, ``set_error_threshold``,
``enable_plugin`` and ``disable_plugin`` go through it. docs/operations.md
describes the whole of it. ``prometheus_client`` is imported on the first scrape,
not with this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether.observability._health import HealthCheckResult, PluginHealth
from tether.observability._hub import Observability
from tether.observability._thresholds import (
    DISABLED_REASON,
    THRESHOLD_EVENT,
    ErrorThreshold,
    ThresholdAction,
    ThresholdStatus,
)
from tether.observability.state import REFERENCE_QUERIES, PluginStateStore

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
    "PluginHealth",
    "PluginStateStore",
    "TetherCollector",
    "ThresholdAction",
    "ThresholdStatus",
    "create_registry",
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
