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
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import MethodType
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether import (
    Contract,
    PluginEntry,
    PluginManager,
    PluginScope,
    Router,
    TetherError,
    blame,
    describe_error,
    error_text,
    is_async_callable,
)
from tether.errors import PluginUnavailableError
from tether.hosts.web._admin import admin_app
from tether.hosts.web._errors import (
    counts_against_plugin,
    error_response,
    response_for,
    to_response,
)
from tether.hosts.web._request import SCOPE_KEY, RequestContext
from tether.hosts.web._routers import PluginRouter
from tether.hosts.web._routing import RESERVED_PATHS, Endpoint, Route, RouteTable
from tether.hosts.web._wire import wire_middleware

__all__ = ["REQUEST_HOOKS", "WEB_CONTRACT", "WebApp"]

log = logging.getLogger("tether.web")

REQUEST_HOOKS = ("pre_request", "post_request", "pre_response", "post_response", "error")
_RESERVED = frozenset(RESERVED_PATHS)

WEB_CONTRACT = Contract(
    "web",
    "a plugin of tether serve: routes (ctx.router), middleware and request hooks "
    "(pre_request, post_request, pre_response, post_response, error)",
    host="tether serve",
)


def _is_answer(exc: BaseException) -> bool:
    """An ``HTTPException`` below 500 is the plugin's answer, not its failure."""
    return isinstance(exc, HTTPException) and not counts_against_plugin(exc)


def _respond(handler: Callable[..., Any], what: str) -> Callable[[object], Awaitable[Response]]:
    """What a route's entry calls: the handler, its result made a response.

    Always a coroutine function, so the seam around it lives on the event loop: a plain
    handler runs in a worker thread inside it (a held gate makes the request wait on
    the loop, not in a thread), and a result no response can be made of is counted
    against the handler's plugin.
    """
    if is_async_callable(handler):

        async def respond(request: object) -> Response:
            return to_response(await handler(request), what=what)

        return respond

    async def respond_in_thread(request: object) -> Response:
        result = await run_in_threadpool(handler, request)
        if inspect.isawaitable(result):  # a plain function that returned a coroutine
            result = await result
        return to_response(result, what=what)

    return respond_in_thread


class WebApp:
    """The ASGI app serving a manager's plugins; install it before ``initialize_all``.

    Creating it gives the manager's runtime the router plugins reach as ``ctx.router``
    (permission ``router``)::

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
        if runtime.has_router:
            raise TetherError(
                "this plugin manager already has a web app",
                hint="create one WebApp per PluginManager",
            )
        self.manager = manager
        self.table = RouteTable(prepare=self._prepare)
        runtime.provide_router(self.router_for)
        runtime.middleware.adapter = wire_middleware
        runtime.add_registrar(self.table)
        runtime.errors.add_answer(_is_answer)
        manager.contracts.register(WEB_CONTRACT)
        self._hooks = runtime.hooks
        self._middleware = runtime.middleware
        self._hooks_seen = -1  # the hook registry's version the flags below were read at
        self._has: dict[str, bool] = {}
        self._host = host_app if host_app is not None else admin_app(manager, token=admin_token)

    def router_for(self, scope: PluginScope) -> Router:
        """The router of one plugin version (the runtime's router factory)."""
        return PluginRouter(self.table, scope)

    def routes(self) -> list[Route]:
        """Every plugin route served now, in the order their paths were added."""
        return self.table.routes()

    def _prepare(self, route: Route) -> None:
        table = self.table

        def counterpart(live: PluginScope) -> PluginEntry | None:
            found = table.counterpart(route, live)
            return found.entry if found is not None else None

        what = f"route {route.label} of plugin '{route.plugin}'"
        entry = route.owner.entry(
            _respond(route.handler, what), f"route:{route.label}", redirect=counterpart
        )
        route.entry = entry
        route.endpoint = entry.acall

    def _runner(self, route: Route) -> Endpoint:
        """The route's middleware around its endpoint, rebuilt when the middleware change."""
        snapshot = self._middleware.all()
        runner = route.runner
        if runner is None or route.runner_snapshot is not snapshot:
            endpoint = route.endpoint
            if endpoint is None:  # pragma: no cover - every route is prepared when added
                raise RuntimeError(f"route {route.label} has no endpoint")
            runner = route.runner = self._middleware.runner(route.path, endpoint)
            route.runner_snapshot = snapshot
        return runner

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

    def _hook_flags(self) -> dict[str, bool]:
        """Which request hooks have handlers, read again only when the registry changed."""
        hooks = self._hooks
        if hooks.version != self._hooks_seen:
            self._hooks_seen = hooks.version
            self._has = {name: hooks.has_handlers(name) for name in REQUEST_HOOKS}
        return self._has

    async def _serve(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:  # noqa: C901, PLR0912 - the whole pipeline in one frame: a frame saved is per request
        route, params, allowed = self.table.match(path, scope["method"])
        if params:
            scope["path_params"] = params
        _RECEIVE.set((scope, receive))
        request = Request(scope, MethodType(_pull, scope))
        if route is None:
            context = RequestContext(request)
        else:
            context = RequestContext(request, route=route.path, plugin=route.plugin)
        scope[SCOPE_KEY] = context
        has = self._hook_flags()
        if has["pre_request"]:
            await self._run_hooks("pre_request", context)
        if context.response is None:
            if route is None:
                context.response = _no_route(scope["method"], path, allowed)
            else:
                try:
                    result = await self._runner(route)(request)
                    context.response = (
                        result
                        if isinstance(result, Response)
                        else to_response(result, what=f"the middleware of route {route.label}")
                    )
                except Exception as exc:
                    await self._fail(context, exc, blame(exc))
                else:
                    if has["post_request"]:
                        await self._run_hooks("post_request", context)
        if has["pre_response"]:
            await self._run_hooks("pre_response", context)
        response = context.response
        if response is None:  # a hook set it back to None
            response = context.response = Response(status_code=204)
        await response(scope, receive, send)
        if has["post_response"]:
            await self._run_hooks("post_response", context)

    async def _run_hooks(self, hook_type: str, context: RequestContext) -> None:
        outcome = await self._hooks.run(hook_type, context)
        if not outcome.failures:
            return
        for failure in outcome.failures:
            error = failure.error
            if self._is_skipped(failure.plugin, error):
                continue
            if hook_type != "error":  # a failing error hook was logged; nothing more to do
                replace = hook_type != "post_response"  # after sending, nothing to replace
                # named as it was counted: the innermost plugin the error left
                who = blame(error) or failure.plugin
                await self._fail(context, error, who, logged=True, replace=replace)
            return

    def _is_skipped(self, plugin: str, error: BaseException) -> bool:
        """A hook refused at its closed gate (plugin stopped, disabled, unloading) is
        skipped; one that waited for a reload until the queue timed out fails closed."""
        if not isinstance(error, PluginUnavailableError) or error.plugin != plugin:
            return False
        try:
            return self.manager.get_handle(plugin).state != "held"
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
        if self._hook_flags()["error"]:
            await self._run_hooks("error", context)


def _log_failure(exc: BaseException, plugin: str | None, request: str) -> None:
    who = f"plugin '{plugin}'" if plugin else "the web host"
    if isinstance(exc, PluginUnavailableError):
        log.warning("%s refused %s: %s", who, request, error_text(exc))
    elif not counts_against_plugin(exc):  # an HTTPException below 500: an answer
        log.debug("%s answered %s with %s", who, request, error_text(exc))
    else:
        log.error("%s failed on %s: %s", who, request, describe_error(exc), exc_info=exc)


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


# The request being served in this context: its scope, and the server's receive.
_RECEIVE: ContextVar[tuple[Scope, Receive]] = ContextVar("tether_web_receive")


async def _pull(scope: Scope) -> Message:
    """A request's ``receive``, bound to its scope. The server's own is a bound method of
    the connection, whose ``__self__`` reaches the server and this app, so it is kept in
    the context of the task serving the request instead of on the request; a request
    read from anywhere else (kept past its answer) has nothing more to receive."""
    served = _RECEIVE.get(None)
    if served is None or served[0] is not scope:
        return {"type": "http.disconnect"}
    return await served[1]()


async def _lifespan(receive: Receive, send: Send) -> None:
    """Plugins are started and stopped by whoever owns the manager (``serve``)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
