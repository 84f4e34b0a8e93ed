"""Plugin statuses and the transitions allowed between them (pure).

::

    unloaded ──► loading ──► initialized ──► running ◄──► stopped ──► unloaded
                    │             │             │            │
                    └─────────────┴──── error ◄─┴────────────┘

``loading`` covers the time from the start of a load until ``initialize``
succeeds: the plugin's code is imported but it has not been initialized yet.
``error`` is reachable from every active state; from it a plugin can only be
loaded again (reload) or unloaded.
"""

from __future__ import annotations

from enum import StrEnum

from tether.errors import InvalidTransitionError

__all__ = ["TRANSITIONS", "PluginStatus", "check_transition"]


class PluginStatus(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    INITIALIZED = "initialized"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"


_S = PluginStatus

TRANSITIONS: dict[PluginStatus, frozenset[PluginStatus]] = {
    _S.UNLOADED: frozenset({_S.LOADING}),
    _S.LOADING: frozenset({_S.INITIALIZED, _S.ERROR, _S.UNLOADED}),
    _S.INITIALIZED: frozenset({_S.RUNNING, _S.STOPPED, _S.ERROR, _S.UNLOADED}),
    _S.RUNNING: frozenset({_S.STOPPED, _S.ERROR}),
    _S.STOPPED: frozenset({_S.RUNNING, _S.UNLOADED, _S.ERROR}),
    _S.ERROR: frozenset({_S.LOADING, _S.UNLOADED}),
}


def check_transition(plugin: str, current: PluginStatus, target: PluginStatus) -> None:
    """Raise ``InvalidTransitionError`` naming both states unless current -> target is allowed."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransitionError(plugin, current.value, target.value)
