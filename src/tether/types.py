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

__all__ = ["LIFECYCLE_METHODS", "PluginInfo", "PluginProtocol", "PluginStatus", "Router"]

LIFECYCLE_METHODS = ("initialize", "start", "stop", "cleanup")


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
