"""Public value types and the contract a plugin object fulfils.

A plugin is any object with ``initialize(ctx)``, ``start()``, ``stop()`` and
``cleanup()``; each may be a plain method or ``async def``. Subclassing
:class:`tether.Plugin` is optional and only supplies no-op defaults.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tether._lifecycle import PluginStatus

if TYPE_CHECKING:
    from tether._context import PluginContext

__all__ = [
    "CONTRACTS",
    "LIFECYCLE_METHODS",
    "WORKLOAD_METHODS",
    "PluginInfo",
    "PluginProtocol",
    "PluginStatus",
    "Router",
    "WorkloadProtocol",
    "contract_of",
]

LIFECYCLE_METHODS = ("initialize", "start", "stop", "cleanup")
WORKLOAD_METHODS = ("initialize", "setup", "cleanup", "execute_operation", "get_operation_types")

# What the entry object must provide, by what the manifest says the plugin provides.
CONTRACTS: dict[str, tuple[str, ...]] = {
    "plugin": LIFECYCLE_METHODS,
    "workload": WORKLOAD_METHODS,
}


def contract_of(provides: tuple[str, ...]) -> str:
    """``workload`` for plugins whose manifest lists ``provides: [workload]``, else ``plugin``."""
    return "workload" if "workload" in provides else "plugin"


@runtime_checkable
class PluginProtocol(Protocol):
    def initialize(self, ctx: PluginContext, /) -> Awaitable[None] | None: ...
    def start(self) -> Awaitable[None] | None: ...
    def stop(self) -> Awaitable[None] | None: ...
    def cleanup(self) -> Awaitable[None] | None: ...


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What ``PluginManager.list_plugins`` reports for each plugin (the reference's PluginInfo)."""

    name: str
    version: str
    description: str
    author: str
    loaded: bool
    enabled: bool
    load_time: datetime | None
    status: PluginStatus
    path: str | None = None
    isolation: str = "inprocess"


Handler = Callable[..., object]


@runtime_checkable
class Router(Protocol):
    """Routes a plugin adds through ``ctx.router`` (permission ``router``).

    Host-neutral: the web host implements it; what a handler receives and returns
    is the host's business (``tether serve`` passes a Starlette request).
    """

    def get(self, path: str, handler: Handler) -> None: ...
    def post(self, path: str, handler: Handler) -> None: ...
    def put(self, path: str, handler: Handler) -> None: ...
    def patch(self, path: str, handler: Handler) -> None: ...
    def delete(self, path: str, handler: Handler) -> None: ...
    def group(self, prefix: str) -> Router: ...


@runtime_checkable
class WorkloadProtocol(Protocol):
    """A workload plugin for ``tether bench`` (the reference's WorkloadPlugin, in Python).

    ``initialize`` receives the plugin's config (the ``plugin_config`` of the bench
    config, checked against the manifest's schema). ``db`` is a database connection
    the host owns. Every method may be ``async def``. ``get_info`` and
    ``get_metrics`` are optional.
    """

    def initialize(self, config: dict[str, object], /) -> Awaitable[None] | None: ...
    def setup(self, db: object, /) -> Awaitable[None] | None: ...
    def cleanup(self, db: object, /) -> Awaitable[None] | None: ...
    def execute_operation(self, db: object, operation_type: str, /) -> object: ...
    def get_operation_types(self) -> dict[str, int]: ...
