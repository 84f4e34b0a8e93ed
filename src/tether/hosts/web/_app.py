"""``WebApp``: the ASGI application of ``tether serve``, written as plain ASGI.

For each request to a plugin route::

    pre_request hooks            may answer the request themselves (ctx.respond/refuse)
      plugin middleware          the route's chain: priority order, filtered by globs
        route handler            through its plugin's gate (held: wait; closed: 503)
    post_request hooks           after the handler (not when a hook answered)
    pre_response hooks           every response, just before it is sent
    -> send
    post_response hooks          every response, after it was sent (access logs)
    error hooks                  whenever a handler, middleware or hook raised

A request no route matches still passes the hooks (a 404 is still logged); the host's
own paths (``/admin/...``, ``/healthz``, ``/readyz``, ``/metrics``) go straight to the
admin app, so a broken plugin cannot lock the operator out. A failure answers that one
request with the JSON error shape (see ``_errors``), is counted against the plugin that
raised it and runs the ``error`` hooks; the next request is served as usual.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tether import PluginManager
from tether.errors import PluginUnavailableError, TetherError
from tether.hosts.web._admin import admin_app
from tether.hosts.web._chain import ChainBuilder, note_failure
from tether.hosts.web._errors import (
    counts_against_plugin,
    error_response,
    response_for,
    to_response,
)
from tether.hosts.web._request import SCOPE_KEY, RequestContext
from tether.hosts.web._routers import WebRouter
from tether.hosts.web._routing import RESERVED_PATHS, Route, RouteTable

__all__ = ["REQUEST_HOOKS", "WebApp"]

log = logging.getLogger("tether.web")

REQUEST_HOOKS = ("pre_request", "post_request", "pre_response", "post_response", "error")
_RESERVED = frozenset(RESERVED_PATHS)


class _Endpoint:
    """Calls one route's handler through its plugin's gate; what the middleware wraps.

    A handler that returns is a success of its plugin (``record_success``: error
    thresholds with ``reset_on_success`` start over); one that raises is counted
    against it, unless it raised an ``HTTPException`` below 500 (an answer).
    """

    __slots__ = ("record_success", "route", "what")

    def __init__(self, route: Route, record_success: Callable[[str], None]) -> None:
        self.route = route
        self.what = f"route {route.label} of plugin '{route.plugin}'"
        self.record_success = record_success

    async def __call__(self, request: Any) -> Response:
        route = self.route
        gate = route.gate
        await gate.enter_async()  # held: waits; closed: PluginUnavailableError (a 503)
        try:
            if route.is_async:
                result = await route.handler(request)  # type: ignore[misc]
            else:
                result = await run_in_threadpool(route.handler, request)
                if inspect.isawaitable(result):
                    result = await result
            response = to_response(result, what=self.what)
        except Exception as exc:
            if note_failure(request, exc, route.plugin) and counts_against_plugin(exc):
                gate.record_error(exc, source=f"route:{route.label}")
            raise
        finally:
            gate.exit()
        self.record_success(route.plugin)
        return response


class WebApp:
    """The ASGI app serving a manager's plugins; install it before ``initialize_all``.

    Creating it installs its router as ``manager.runtime.router``, which plugins reach as
    ``ctx.router`` (permission ``router``)::

        manager = tether.PluginManager(config=config)
        app = WebApp(manager, admin_token=token)
        await manager.load_plugins_from_config(config)
        await manager.initialize_all()   # plugins add routes, middleware and hooks
        await manager.start_all()
        # serve `app` with uvicorn (tether.hosts.web.serve does all of this)

    ``host_app`` replaces the app serving the reserved paths (by default the admin API
    of ``tether.admin``, when installed).
    """

    def __init__(
        self,
        manager: PluginManager,
        *,
        admin_token: str | None = None,
        host_app: ASGIApp | None = None,
    ) -> None:
        runtime = manager.runtime
        if isinstance(runtime.router, WebRouter):
            raise TetherError(
                "this plugin manager already has a web app",
                hint="create one WebApp per PluginManager",
            )
        self.manager = manager
        record_success = manager.record_success
        self.table = RouteTable(prepare=lambda route: _prepare(route, record_success))
        self.router = WebRouter(manager, self.table)
        runtime.router = self.router
        self._hooks = runtime.hooks
        self._chains = ChainBuilder(runtime.middleware)
        self._host = host_app if host_app is not None else admin_app(manager, token=admin_token)

    def routes(self) -> list[Route]:
        """Every plugin route, in the order their paths were added."""
        return self.table.routes()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path in _RESERVED or path.startswith("/admin/"):
                await self._host(scope, receive, send)
            else:
                await self._serve(scope, receive, send, path)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        else:  # websockets: not served
            await send({"type": "websocket.close", "code": 1003})

    async def _serve(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        route, params, allowed = self.table.match(path, scope["method"])
        if params:
            scope["path_params"] = params
        request = Request(scope, receive)
        if route is None:
            context = RequestContext(request)
        else:
            context = RequestContext(request, route=route.path, plugin=route.plugin)
        scope[SCOPE_KEY] = context
        handlers = self._hooks.handlers
        if handlers("pre_request"):
            await self._run_hooks("pre_request", context)
        if context.response is None:
            if route is None:
                context.response = _no_route(scope["method"], path, allowed)
            else:
                await self._handle(context, route, request)
        if handlers("pre_response"):
            await self._run_hooks("pre_response", context)
        response = context.response
        if response is None:  # a hook set it back to None
            response = context.response = Response(status_code=204)
        await response(scope, receive, send)
        if handlers("post_response"):
            await self._run_hooks("post_response", context)

    async def _handle(self, context: RequestContext, route: Route, request: Request) -> None:
        try:
            result = await self._chains.chain(route)(request)
            context.response = (
                result
                if isinstance(result, Response)
                else to_response(result, what=f"the middleware of route {route.label}")
            )
        except Exception as exc:
            await self._fail(context, exc, _blame(context, exc))
            return
        if self._hooks.handlers("post_request"):
            await self._run_hooks("post_request", context)

    async def _run_hooks(self, hook_type: str, context: RequestContext) -> None:
        outcome = await self._hooks.run(hook_type, context)
        for failure in outcome.failures:
            error = failure.error
            if self._is_skipped(failure.plugin, error):
                continue
            if hook_type != "error":  # a failing error hook was logged; nothing more to do
                replace = hook_type != "post_response"  # after sending, nothing to replace
                await self._fail(context, error, failure.plugin, logged=True, replace=replace)
            return

    def _is_skipped(self, plugin: str, error: BaseException) -> bool:
        """A hook refused at its closed gate (plugin stopped, disabled, unloading) is
        skipped; one that waited for a reload until the queue timed out fails closed."""
        if not isinstance(error, PluginUnavailableError) or error.plugin != plugin:
            return False
        try:
            return self.manager.get_gate(plugin).state != "held"
        except TetherError:  # unloaded meanwhile
            return True

    async def _fail(
        self,
        context: RequestContext,
        exc: BaseException,
        plugin: str | None,
        *,
        logged: bool = False,
        replace: bool = True,
    ) -> None:
        """Answer this request with the error, tell the error hooks, and carry on."""
        context.error = exc
        context.error_plugin = plugin
        request = context.request
        if not logged:
            _log_failure(exc, plugin, f"{request.method} {request.url.path}")
        if replace:
            context.response = response_for(exc, plugin)
        if self._hooks.handlers("error"):
            await self._run_hooks("error", context)


def _blame(context: RequestContext, exc: BaseException) -> str | None:
    """The plugin whose code raised ``exc``: the handler's or a middleware's (both note
    it on the context), the unavailable plugin's, or none (the host's own)."""
    if context.error is exc:
        return context.error_plugin
    if isinstance(exc, PluginUnavailableError):
        return exc.plugin
    return None


def _prepare(route: Route, record_success: Callable[[str], None]) -> None:
    route.endpoint = _Endpoint(route, record_success)


def _log_failure(exc: BaseException, plugin: str | None, request: str) -> None:
    who = f"plugin '{plugin}'" if plugin else "the web host"
    if isinstance(exc, PluginUnavailableError):
        log.warning("%s refused %s: %s", who, request, exc)
    elif not counts_against_plugin(exc):  # an HTTPException below 500: an answer
        log.debug("%s answered %s with %s", who, request, exc)
    else:
        log.error("%s failed on %s: %s: %s", who, request, type(exc).__name__, exc, exc_info=exc)


def _no_route(method: str, path: str, allowed: set[str]) -> Response:
    if allowed:
        methods = ", ".join(sorted(allowed))
        return error_response(
            405,
            "MethodNotAllowed",
            f"{method} is not allowed on {path}",
            hint=f"allowed: {methods}",
            headers={"Allow": methods},
        )
    return error_response(
        404,
        "NotFound",
        f"no route for {method} {path}",
        hint="routes come from plugins; `tether serve` lists them when it starts",
    )


async def _lifespan(receive: Receive, send: Send) -> None:
    """Plugins are started and stopped by whoever owns the manager (``serve``)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
