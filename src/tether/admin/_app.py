"""The admin API (``/admin/...``) and the ops routes (``/healthz``, ``/readyz``, ``/metrics``).

Authentication: ``Authorization: Bearer <token>`` on every ``/admin`` route except
``/admin/openapi.json``; the token is compared in constant time. No header (or not a
bearer one) answers 401, a wrong token 403. Without a token configured, the admin
API answers 403 to everything (it is *locked*) unless ``insecure`` is set. The
operations routes need no token; ``/metrics`` does when ``protect_metrics`` is set.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from tether import PluginConfig, PluginManager, PluginStatus, TetherConfig, __version__
from tether.admin._errors import ApiError, error_response, tether_error_response
from tether.admin._openapi import openapi_document
from tether.errors import DependentsRunningError, PluginNotFoundError, TetherError
from tether.observability import observe

__all__ = [
    "AdminSettings",
    "admin_settings",
    "create_admin_app",
    "create_admin_routes",
    "create_ops_routes",
    "reload_plugin",
]

log = logging.getLogger("tether.admin")

TOKEN_ENV = "TETHER_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
Endpoint = Callable[[Request], Awaitable[Response]]
_Model = TypeVar("_Model", bound=BaseModel)


class AdminSettings(BaseModel):
    """The ``admin`` section of the framework config."""

    model_config = ConfigDict(frozen=True, extra="allow")

    token: StrictStr | None = None
    insecure: StrictBool = False
    protect_metrics: StrictBool = False


def admin_settings(config: TetherConfig) -> AdminSettings:
    try:
        return AdminSettings.model_validate(config.section("admin"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TetherError(
            f"invalid config: admin.{where}: {first['msg']}",
            path=config.path,
            hint="admin: {token: ..., insecure: false, protect_metrics: false}",
        ) from None


def _resolve_token(token: str | None, settings: AdminSettings) -> str | None:
    return token or settings.token or os.environ.get(TOKEN_ENV) or None


# --------------------------------------------------------------------------- plumbing


class _Auth:
    """Checks the bearer token of a request; ``token=None`` locks everything but ``insecure``."""

    def __init__(self, token: str | None, *, insecure: bool) -> None:
        self._token = None if token is None else token.encode("utf-8")
        self.insecure = insecure and token is None

    def check(self, request: Request) -> None:
        if self.insecure:
            return
        if self._token is None:
            raise ApiError(
                403,
                "Forbidden",
                "the admin API is locked: no admin token is configured",
                hint=f"set admin.token in the config or {TOKEN_ENV} (or admin.insecure: true "
                "for a trusted network only)",
            )
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(
                401,
                "Unauthorized",
                "the admin API needs a bearer token",
                hint="send 'Authorization: Bearer <token>' (admin.token / TETHER_ADMIN_TOKEN)",
                headers={"WWW-Authenticate": 'Bearer realm="tether-admin"'},
            )
        if not hmac.compare_digest(given.strip().encode("utf-8"), self._token):
            raise ApiError(
                403,
                "Forbidden",
                "the admin token is wrong",
                hint="use the token the server was started with (admin.token / TETHER_ADMIN_TOKEN)",
            )


def _endpoint(auth: _Auth | None, handler: Endpoint) -> Endpoint:
    """Wrap a handler: authenticate, then map every error to the JSON error shape."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            if auth is not None:
                auth.check(request)
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except TetherError as exc:
            return tether_error_response(exc)
        except Exception:
            log.exception("admin API: %s %s failed", request.method, request.url.path)
            return error_response(
                500,
                "InternalError",
                f"{request.method} {request.url.path} failed unexpectedly",
                hint="see the server's log for the traceback",
            )

    return endpoint


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value in {"true", "1", "yes"}:
        return True
    if value in {"false", "0", "no", ""}:
        return False
    raise ApiError(400, "BadRequest", f"query parameter '{name}' must be true or false")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "BadRequest", f"the request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "BadRequest", "the request body must be a JSON object")
    return data


def _validated(model: type[_Model], data: dict[str, Any]) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise ApiError(400, "BadRequest", f"invalid request body: {problems}") from None


class LoadRequest(BaseModel):
    """``POST /admin/plugins``: the plugin at ``path`` (on the server), with its settings."""

    model_config = ConfigDict(extra="forbid")

    path: StrictStr
    name: StrictStr | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    permissions: dict[str, StrictBool] | None = None
    priority: StrictInt = 0
    error_threshold: dict[str, Any] | None = None
    start: StrictBool = True


class DisableRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: StrictStr | None = None


# --------------------------------------------------------------------------- views


def _summary(manager: PluginManager, name: str) -> dict[str, object]:
    health = manager.get_plugin_health(name)
    info = manager.get_info(name)
    return {
        "name": name,
        "version": info.version,
        "status": info.status.value,
        "state": health.state,
        "enabled": info.enabled,
        "ready": health.is_ready,
        "degraded": health.degraded,
        "error_count": health.error_count,
        "path": info.path,
    }


def _detail(manager: PluginManager, name: str) -> dict[str, object]:
    info = manager.get_info(name)
    manifest = manager.get_manifest(name)
    graph = manager.get_dependency_graph()
    return {
        **_summary(manager, name),
        "description": info.description,
        "author": info.author,
        "isolation": info.isolation,
        "load_time": None if info.load_time is None else info.load_time.isoformat(),
        "dependencies": [
            {
                "name": d.name,
                "version": d.version,
                "optional": d.optional,
                "loaded": manager.is_loaded(d.name),
            }
            for d in manifest.dependencies
        ],
        "dependents": [plugin for plugin, deps in graph.items() if name in deps],
        "health": manager.get_plugin_health(name).to_dict(),
    }


class _AdminViews:
    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    async def list_plugins(self, _request: Request) -> Response:
        manager = self.manager
        return JSONResponse(
            {"plugins": [_summary(manager, i.name) for i in manager.list_plugins()]}
        )

    async def get_plugin(self, request: Request) -> Response:
        return JSONResponse(_detail(self.manager, request.path_params["name"]))

    async def plugin_health(self, request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse(self.manager.get_plugin_health(name).to_dict())

    async def all_health(self, _request: Request) -> Response:
        health = self.manager.get_all_health()
        return JSONResponse({"plugins": {name: h.to_dict() for name, h in health.items()}})

    async def graph(self, _request: Request) -> Response:
        manager = self.manager
        graph = manager.get_dependency_graph()
        nodes = [
            {"name": i.name, "version": i.version, "status": i.status.value, "enabled": i.enabled}
            for i in manager.list_plugins()
        ]
        edges = [
            {"from": plugin, "to": d.name, "version": d.version, "optional": d.optional}
            for plugin in graph
            for d in manager.get_manifest(plugin).dependencies
            if d.name in graph
        ]
        return JSONResponse({"graph": graph, "order": list(graph), "nodes": nodes, "edges": edges})

    async def load(self, request: Request) -> Response:
        body = _validated(LoadRequest, await _body(request))
        try:
            settings = PluginConfig.model_validate(body.model_dump(exclude={"path", "start"}))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(
                400, "BadRequest", f"invalid plugin settings: {where}: {first['msg']}"
            ) from None

        try:
            info = await self.manager.load_plugin(body.path, settings)
        except PluginNotFoundError as exc:  # a path that is not there is bad input here
            raise ApiError(
                400, "BadRequest", str(exc), plugin=exc.plugin,
                hint="give the path of a plugin directory (or manifest file) on the server",
            ) from exc  # fmt: skip
        if body.start and info.enabled:
            await self.manager.enable_plugin(info.name)
        return JSONResponse(_detail(self.manager, info.name), status_code=201)

    async def unload(self, request: Request) -> Response:
        name = request.path_params["name"]
        await self.manager.unload_plugin(name, force=_flag(request, "force"))
        return JSONResponse({"name": name, "unloaded": True})

    async def enable(self, request: Request) -> Response:
        name = request.path_params["name"]
        await self.manager.enable_plugin(name)
        return JSONResponse(_detail(self.manager, name))

    async def disable(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = _validated(DisableRequest, await _body(request))
        await self.manager.disable_plugin(name, force=_flag(request, "force"), reason=body.reason)
        return JSONResponse(_detail(self.manager, name))

    async def reload(self, request: Request) -> Response:
        name = request.path_params["name"]
        await reload_plugin(self.manager, name, force=_flag(request, "force"))
        return JSONResponse(_detail(self.manager, name))

    async def openapi(self, _request: Request) -> Response:
        return JSONResponse(openapi_document())


async def reload_plugin(manager: PluginManager, name: str, *, force: bool = False) -> None:
    """Reload ``name`` by unloading it and loading it again from its path, with its settings.

    This is the stand-in until hot reload arrives (which swaps versions behind the gate
    without dropping calls): calls made meanwhile are refused, and it needs the
    plugin's directory (plugins from entry points cannot be reloaded this way).
    """
    hot = getattr(manager, "reload_plugin", None)
    if callable(hot):  # hot reload has landed: use it
        await hot(name)
        return
    info = manager.get_info(name)
    settings = manager.get_plugin_settings(name)
    path = Path(info.path) if info.path else None
    if path is None or not path.exists():
        raise ApiError(
            501,
            "NotImplemented",
            f"cannot reload plugin '{name}': it was not loaded from a directory ({info.path})",
            plugin=name,
            hint="reloading plugins from entry points comes with hot reload; restart the "
            "server to pick up a new version",
        )
    running = [d for d in manager.dependents(name) if manager.get_status(d) is PluginStatus.RUNNING]
    if running and not force:
        raise DependentsRunningError(name, running, action="reload")
    await manager.unload_plugin(name, force=True)
    loaded = await manager.load_plugin(path, settings)
    if loaded.enabled:
        await manager.enable_plugin(name)


# --------------------------------------------------------------------------- ops routes


def create_ops_routes(
    manager: PluginManager, *, metrics_token: str | None = None
) -> list[BaseRoute]:
    """``/healthz``, ``/readyz`` and ``/metrics``, for a host to add to its own app.

    ``metrics_token`` makes ``/metrics`` ask for that bearer token.
    """
    started = time.monotonic()

    async def healthz(_request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "uptime_seconds": round(time.monotonic() - started, 3),
                "plugins": len(manager.list_plugins()),
            }
        )

    async def readyz(_request: Request) -> Response:
        ready, waiting = manager.readiness()
        if ready:
            names = [i.name for i in manager.list_plugins()]
            return JSONResponse({"status": "ready", "plugins": names})
        listed = ", ".join(f"{name} ({reason})" for name, reason in waiting.items())
        return error_response(
            503,
            "NotReady",
            f"{len(waiting)} plugin(s) not ready: {listed}",
            hint="`tether plugins health` or GET /admin/health shows why; "
            "POST /admin/plugins/NAME/enable brings a disabled one back",
            extra={"status": "not ready", "not_ready": waiting},
        )

    async def metrics(_request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        body = observe(manager).render_metrics()
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    metrics_auth = None if metrics_token is None else _Auth(metrics_token, insecure=False)
    return [
        Route("/healthz", _endpoint(None, healthz), methods=["GET"]),
        Route("/readyz", _endpoint(None, readyz), methods=["GET"]),
        Route("/metrics", _endpoint(metrics_auth, metrics), methods=["GET"]),
    ]


def create_admin_routes(
    manager: PluginManager, *, token: str | None, insecure: bool = False
) -> list[BaseRoute]:
    """The ``/admin`` routes alone (mounted at ``/admin``), for a host that composes its app."""
    auth = _Auth(token, insecure=insecure)
    views = _AdminViews(manager)

    def route(path: str, handler: Endpoint, method: str, *, guarded: bool = True) -> Route:
        return Route(path, _endpoint(auth if guarded else None, handler), methods=[method])

    return [
        Mount(
            "/admin",
            routes=[
                route("/openapi.json", views.openapi, "GET", guarded=False),
                route("/plugins", views.list_plugins, "GET"),
                route("/plugins", views.load, "POST"),
                route("/plugins/{name}", views.get_plugin, "GET"),
                route("/plugins/{name}", views.unload, "DELETE"),
                route("/plugins/{name}/health", views.plugin_health, "GET"),
                route("/plugins/{name}/enable", views.enable, "POST"),
                route("/plugins/{name}/disable", views.disable, "POST"),
                route("/plugins/{name}/reload", views.reload, "POST"),
                route("/health", views.all_health, "GET"),
                route("/graph", views.graph, "GET"),
            ],
        )
    ]


async def _not_found(request: Request, _exc: Exception) -> Response:
    return error_response(
        404,
        "NotFound",
        f"no route {request.method} {request.url.path}",
        hint="GET /admin/openapi.json lists the admin API's routes",
    )


async def _not_allowed(request: Request, _exc: Exception) -> Response:
    return error_response(
        405,
        "MethodNotAllowed",
        f"{request.method} is not allowed on {request.url.path}",
        hint="GET /admin/openapi.json lists the admin API's routes",
    )


def create_admin_app(
    manager: PluginManager,
    *,
    token: str | None = None,
    insecure: bool | None = None,
    protect_metrics: bool | None = None,
) -> Starlette:
    """The admin API with ``/healthz``, ``/readyz`` and ``/metrics``, as one Starlette app.

    It serves full paths (``/admin/plugins``...), so a host passes reserved paths to it
    unchanged. ``token`` (else ``admin.token`` in the config, else ``$TETHER_ADMIN_TOKEN``)
    is the bearer token the admin routes require; without any, the admin routes are
    locked (403) unless ``insecure`` (``admin.insecure``). ``protect_metrics``
    (``admin.protect_metrics``) puts ``/metrics`` behind the token too. Bind the server
    to loopback (127.0.0.1, the default of ``tether serve``) unless a proxy in front
    does TLS and access control.
    """
    settings = admin_settings(manager.config)
    chosen = _resolve_token(token, settings)
    open_access = settings.insecure if insecure is None else insecure
    if chosen is None and not open_access:
        log.warning("the admin API is locked: no admin token (set admin.token or %s)", TOKEN_ENV)
    elif chosen is None:
        log.warning("the admin API is open to anyone who can reach it (admin.insecure: true)")
    guard_metrics = settings.protect_metrics if protect_metrics is None else protect_metrics
    routes = [
        *create_admin_routes(manager, token=chosen, insecure=open_access),
        *create_ops_routes(manager, metrics_token=chosen if guard_metrics else None),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
