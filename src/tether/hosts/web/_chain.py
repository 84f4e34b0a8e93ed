"""Per-route middleware chains, built once and reused by every request.

The middleware registry decides which middleware apply to a route and in what order
(``MiddlewareRegistry.chain(path_template)``: priority, then registration, filtered by
globs). This module runs them with the semantics of ``MiddlewareRegistry.run``: each
call passes its plugin's gate (held: the request waits; closed: that middleware is
skipped), and an error is counted once, against the plugin whose middleware raised it.
One difference: a request that waited at a held
gate until the reload queue timed out fails (503) instead of skipping the middleware,
so a reload that takes too long never lets requests past a check unchecked. The other
is cost: the ``call_next`` of every position is built with the chain,
so a request allocates nothing for it. A route's chain is rebuilt when the registry
changes (its ``all()`` snapshot is replaced on every register and remove), so
middleware a plugin adds or loses applies from the next request on.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tether.errors import PluginUnavailableError
from tether.hosts.web._request import SCOPE_KEY, RequestContext
from tether.hosts.web._routing import GateLike, Route

__all__ = ["ChainBuilder", "MiddlewareLike", "RegistryLike", "note_failure"]

Next = Callable[[Any], Awaitable[Any]]


class MiddlewareLike(Protocol):
    """What the host reads of a registered middleware."""

    @property
    def plugin(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def handler(self) -> Callable[[Any, Any], object]: ...
    @property
    def gate(self) -> Any: ...


class RegistryLike(Protocol):
    """What the host uses of the middleware registry (``manager.runtime.middleware``)."""

    def chain(self, route: str) -> tuple[Any, ...]: ...
    def all(self) -> tuple[Any, ...]: ...


def note_failure(request: object, exc: BaseException, plugin: str) -> bool:
    """Record on the request's context that ``plugin`` raised ``exc``.

    True the first time ``exc`` is noted (the innermost frame that saw it, the one
    that raised it); False when it is only passing through.
    """
    scope = getattr(request, "scope", None)
    context = scope.get(SCOPE_KEY) if isinstance(scope, dict) else None
    if not isinstance(context, RequestContext):
        return True
    if context.error is exc:
        return False
    context.error = exc
    context.error_plugin = plugin
    return True


class _Layer:
    """One middleware at one position of a chain; ``next`` is the rest of the chain."""

    __slots__ = ("gate", "handler", "is_async", "next", "plugin", "source")

    def __init__(self, item: MiddlewareLike, rest: Next) -> None:
        self.gate: GateLike = item.gate
        self.handler = item.handler
        self.plugin = item.plugin
        self.source = f"middleware:{item.name}"
        self.is_async = inspect.iscoroutinefunction(item.handler)
        self.next = rest

    async def __call__(self, request: Any) -> Any:
        gate = self.gate
        if gate.is_open:
            gate.calls.append(None)
        else:
            try:
                await gate.enter_async()
            except PluginUnavailableError:
                if gate.state == "held":  # a reload outlasted the queue timeout: fail closed
                    raise
                return await self.next(request)  # stopped, disabled or unloading: skip it
        try:
            result: Any = self.handler(request, self.next)
            if self.is_async or inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            if note_failure(request, exc, self.plugin):
                gate.record_error(exc, source=self.source)
            raise
        finally:
            gate.exit()
        return result


class ChainBuilder:
    """Each route's chain, ending in its endpoint; rebuilt when the registry changes."""

    __slots__ = ("_registry",)

    def __init__(self, registry: RegistryLike) -> None:
        self._registry = registry

    def chain(self, route: Route) -> Next:
        snapshot = self._registry.all()
        chain = route.chain
        if chain is not None and route.chain_snapshot is snapshot:
            return chain
        endpoint = route.endpoint
        if endpoint is None:  # pragma: no cover - every route is prepared when added
            raise RuntimeError(f"route {route.label} has no endpoint")
        chain = endpoint
        for item in reversed(self._registry.chain(route.path)):
            chain = _Layer(item, chain)
        route.chain = chain
        route.chain_snapshot = snapshot
        return chain
