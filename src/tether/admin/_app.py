"""The admin API (``/admin/...``) and the ops routes (``/healthz``, ``/readyz``, ``/metrics``).

Authentication: ``Authorization: Bearer <token>`` on every ``/admin`` route except
``/admin/openapi.json``; the token is compared in constant time. No header (or not a
bearer one) answers 401, a wrong token 403. Without a token configured, the admin
API answers 403 to everything (it is *locked*) unless ``insecure`` is set. The
operations routes need no token; ``/metrics`` does when ``protect_metrics`` is set.

Bad requests answer 4xx in the error shape, before any handler runs where they can:
a ``Content-Length`` over the body limit 413 (before the token is checked: nothing is
read), a plugin name longer than any plugin's 404, a method a route does not take 405
with ``Allow``, a path no route has 404. Bodies are read by ``_body`` (see
``tether.admin._body``: 408, 413, 415 and 400 for each way a body can be wrong).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from tether import (
    ConfigSection,
    Expanded,
    PluginConfig,
    PluginManager,
    ReloadConfig,
    ReloadResult,
    TetherConfig,
    __version__,
    convert_expanded,
    error_text,
)
from tether.admin._body import BODY_TIMEOUT, MAX_BODY_SIZE, BodyLimits, read_object
from tether.admin._body import check_declared_size as _check_declared_size

# Every admin answer renders with the response that cannot fail on odd text.
from tether.admin._errors import AdminJSONResponse as JSONResponse
from tether.admin._errors import ApiError, error_response, tether_error_response
from tether.admin._openapi import openapi_document
from tether.errors import ConfigError, PluginNotFoundError, TetherError
from tether.observability import observe

__all__ = [
    "ADMIN_CONFIG_SECTION",
    "BODY_TIMEOUT",
    "MAX_BODY_SIZE",
    "MAX_NAME_LENGTH",
    "AdminSettings",
    "admin_settings",
    "create_admin_app",
    "create_admin_routes",
    "create_ops_routes",
]

log = logging.getLogger("tether.admin")

TOKEN_ENV = "TETHER_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
MAX_NAME_LENGTH = 64
"""No plugin name is longer (the manifest's rule): a longer ``{name}`` is a 404 at once."""
_MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
_MAX_PART_BYTES = 255  # NAME_MAX
Endpoint = Callable[[Request], Awaitable[Response]]
_Model = TypeVar("_Model", bound=BaseModel)


def _from_variable(value: object) -> object:
    return convert_expanded(value, "boolean") if isinstance(value, Expanded) else value


_Flag = Annotated[StrictBool, BeforeValidator(_from_variable)]  # true, or ${VAR} giving it


class AdminSettings(BaseModel):
    """The ``admin`` section of the framework config."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: StrictStr | None = None
    insecure: _Flag = False
    protect_metrics: _Flag = False


ADMIN_CONFIG_SECTION = ConfigSection(
    "admin", "the admin API (tether serve, tether ops)", AdminSettings, "the admin API's token"
)
"""The ``admin:`` section, claimed through the ``tether.config_sections`` entry points."""


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


def _check_name(request: Request) -> None:
    name = request.path_params.get("name")
    if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
        raise ApiError(
            404,
            "PluginNotFoundError",
            f"plugin not found: no plugin name is {len(name)} characters long "
            f"(at most {MAX_NAME_LENGTH}): {name[:MAX_NAME_LENGTH]!r}...",
            hint="`tether plugins list` or GET /admin/plugins shows them",
        )


def _endpoint(auth: _Auth | None, handler: Endpoint, limits: BodyLimits) -> Endpoint:
    """Wrap a handler: refuse a body declared too large, authenticate, refuse a name no
    plugin can have, then map every error to the JSON error shape."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            _check_declared_size(request, limits)
            limits.attach(request)
            if auth is not None:
                auth.check(request)
            _check_name(request)
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
    return await read_object(request)


_SHOWN_PROBLEMS = 5  # a body with 50,000 unknown keys is not answered with 50,000 lines


def _validated(model: type[_Model], data: dict[str, Any]) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(
            f"{'.'.join(str(p)[:80] for p in e['loc']) or 'body'}: {e['msg']}"
            for e in errors[:_SHOWN_PROBLEMS]
        )
        more = len(errors) - _SHOWN_PROBLEMS
        if more > 0:
            problems += f"; and {more} more"
        raise ApiError(400, "BadRequest", f"invalid request body: {problems}") from None


def _server_path(value: str) -> str:
    """A path the server's file system can be asked about: no NUL, not over PATH_MAX,
    and not a FIFO, device or socket (reading one would block)."""
    if "\x00" in value:
        raise ValueError("a path cannot contain a NUL character")
    encoded = value.encode("utf-8", "surrogatepass")
    if len(encoded) > _MAX_PATH_BYTES:
        raise ValueError(f"the path is {len(encoded)} bytes long, over {_MAX_PATH_BYTES}")
    longest = max(len(part) for part in encoded.split(b"/"))
    if longest > _MAX_PART_BYTES:
        raise ValueError(f"a part of the path is {longest} bytes long, over {_MAX_PART_BYTES}")
    try:
        mode = Path(value).stat().st_mode
    except OSError:
        return value  # not there (or not reachable): load_plugin says which
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise ValueError("not a plugin directory or manifest file (a FIFO, device or socket)")
    return value


class LoadRequest(BaseModel):
    """``POST /admin/plugins``: the plugin at ``path`` (on the server), with its settings."""

    model_config = ConfigDict(extra="forbid")

    path: Annotated[StrictStr, Field(min_length=1), AfterValidator(_server_path)]
    name: Annotated[StrictStr, Field(max_length=MAX_NAME_LENGTH)] | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    permissions: dict[str, StrictBool] | None = None
    priority: StrictInt = 0
    error_threshold: dict[str, Any] | None = None
    start: StrictBool = True


class DisableRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[StrictStr, Field(max_length=1000)] | None = None


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

    def _loaded(self, request: Request) -> str:
        """The plugin the path names; one set aside at start (``required: false``) is
        refused saying so, since it is not loaded (a reload brings it up once fixed)."""
        name: str = request.path_params["name"]
        failed = self.manager.failed_plugins().get(name)
        if failed is not None and not self.manager.is_loaded(name):
            raise ApiError(
                404,
                "PluginNotFoundError",
                f"plugin '{name}' is not loaded: it failed ({failed.step}) and is not "
                f"required, so the server started without it: {failed.reason}",
                plugin=name,
                hint=f"fix it, then POST /admin/plugins/{name}/reload (or restart the server) "
                f"to bring it up; GET /admin/plugins/{name}/health shows its error",
            )
        return name

    async def get_plugin(self, request: Request) -> Response:
        return JSONResponse(_detail(self.manager, self._loaded(request)))

    async def plugin_health(self, request: Request) -> Response:
        name = request.path_params["name"]
        failed = self.manager.failed_plugins().get(name)
        if failed is not None and not self.manager.is_loaded(name):
            return JSONResponse(failed.to_dict())
        return JSONResponse(self.manager.get_plugin_health(name).to_dict())

    async def all_health(self, _request: Request) -> Response:
        manager = self.manager
        plugins = {name: h.to_dict() for name, h in manager.get_all_health().items()}
        plugins.update({name: f.to_dict() for name, f in manager.failed_plugins().items()})
        return JSONResponse({"status": manager.health_status(), "plugins": plugins})

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
        name = self._loaded(request)
        await self.manager.unload_plugin(name, force=_flag(request, "force"))
        return JSONResponse({"name": name, "unloaded": True})

    async def enable(self, request: Request) -> Response:
        name = self._loaded(request)
        await self.manager.enable_plugin(name)
        return JSONResponse(_detail(self.manager, name))

    async def disable(self, request: Request) -> Response:
        name = self._loaded(request)
        body = _validated(DisableRequest, await _body(request))
        await self.manager.disable_plugin(name, force=_flag(request, "force"), reason=body.reason)
        return JSONResponse(_detail(self.manager, name))

    async def reload(self, request: Request) -> Response:
        name = request.path_params["name"]  # one set aside at start is brought up, if it can be
        config = _reload_config(await _body(request))
        return _reload_answer(self.manager, await self.manager.reload_plugin(name, config=config))

    async def rollback(self, request: Request) -> Response:
        name = self._loaded(request)
        config = _reload_config(await _body(request))
        return _reload_answer(self.manager, await self.manager.rollback_plugin(name, config=config))

    async def history(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        limit = _limit(request)
        rows = await asyncio.to_thread(self.manager.reload_history, name, limit=limit)
        if not rows and not self.manager.is_loaded(name):
            raise PluginNotFoundError(
                f"plugin not found: {name!r} is not loaded and has no reloads in the state "
                f"store at {self.manager.state_target}",
                plugin=name,
                hint="GET /admin/plugins lists the loaded plugins",
            )
        return JSONResponse({"plugin": name, "reloads": [row.to_dict() for row in rows]})

    async def openapi(self, _request: Request) -> Response:
        return JSONResponse(openapi_document())


HISTORY_LIMIT = 1000
"""The most reload rows ``GET .../history`` answers with (``?limit=``, default 50)."""


def _limit(request: Request) -> int:
    given = request.query_params.get("limit", "50")
    if given.isascii() and given.isdigit() and len(given) <= 4 and 0 < int(given) <= HISTORY_LIMIT:  # noqa: PLR2004 - 4 digits hold the limit
        return int(given)
    raise ApiError(
        400,
        "BadRequest",
        f"query parameter 'limit' must be an integer from 1 to {HISTORY_LIMIT}, got {given[:20]!r}",
    )


def _reload_config(body: dict[str, Any]) -> ReloadConfig | None:
    """The body's ``ReloadConfig`` fields (none given: the config's ``reload:`` section)."""
    if not body:
        return None
    try:
        return ReloadConfig.from_mapping(body)
    except ConfigError as exc:
        raise ApiError(
            400, "BadRequest", f"invalid request body: {error_text(exc)}",
            hint=exc.hint or "the body takes queue_timeout, max_queue_size, strategy "
            "(block or reject) and grace_period, each optional",
        ) from None  # fmt: skip


def _reload_answer(manager: PluginManager, result: ReloadResult) -> Response:
    """200 with the result when a version runs (the new one, or the old one back: a
    rollback is an outcome, not an error); 409 when none does (outcome ``failed``)."""
    if result.outcome != "failed":
        return JSONResponse(result.to_dict())
    name = result.plugin
    if manager.is_loaded(name):  # left in error: only a fresh load brings it back
        hint = (
            f"fix the plugin's files, then DELETE /admin/plugins/{name} and load it again "
            "(POST /admin/plugins), or restart the server"
        )
    else:  # set aside at start, and still failing
        hint = f"fix the plugin's files, then POST /admin/plugins/{name}/reload again"
    return error_response(
        409,
        "ReloadFailed",
        f"plugin '{name}' has no running version: {result.error}",
        plugin=name,
        hint=f"{hint}; GET /admin/plugins/{name}/health shows its errors",
        extra={"result": result.to_dict()},
    )


# --------------------------------------------------------------------------- routes


def _route(path: str, handlers: dict[str, Endpoint]) -> Route:
    """One route for every method ``path`` takes, so a 405 names them all in ``Allow``."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    dispatch.__name__ = next(iter(handlers.values())).__name__
    return Route(path, dispatch, methods=list(handlers))


def create_ops_routes(
    manager: PluginManager,
    *,
    metrics_token: str | None = None,
    max_body_size: int = MAX_BODY_SIZE,
) -> list[BaseRoute]:
    """``/healthz``, ``/readyz`` and ``/metrics``, for a host to add to its own app.

    ``metrics_token`` makes ``/metrics`` ask for that bearer token. A request declaring
    a body over ``max_body_size`` bytes answers 413 (none of them reads a body).
    """
    started = time.monotonic()
    limits = BodyLimits(max_size=max_body_size)
    observe(manager)  # the hub counts reloads from now on, for /metrics

    async def healthz(_request: Request) -> Response:
        failed = manager.failed_plugins()
        body: dict[str, object] = {
            "status": "degraded" if failed else "ok",
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - started, 3),
            "plugins": len(manager.list_plugins()),
        }
        if failed:  # the process is alive (200) without the plugins that failed
            body["failed"] = {name: f.reason for name, f in failed.items()}
        return JSONResponse(body)

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
        _route("/healthz", {"GET": _endpoint(None, healthz, limits)}),
        _route("/readyz", {"GET": _endpoint(None, readyz, limits)}),
        _route("/metrics", {"GET": _endpoint(metrics_auth, metrics, limits)}),
    ]


def create_admin_routes(
    manager: PluginManager,
    *,
    token: str | None,
    insecure: bool = False,
    max_body_size: int = MAX_BODY_SIZE,
    body_timeout: float = BODY_TIMEOUT,
) -> list[BaseRoute]:
    """The ``/admin`` routes alone (mounted at ``/admin``), for a host that composes its app.

    A request body may be ``max_body_size`` bytes at most (413 beyond) and must arrive
    within ``body_timeout`` seconds (408 after).
    """
    auth = _Auth(token, insecure=insecure)
    views = _AdminViews(manager)
    limits = BodyLimits(max_size=max_body_size, timeout=body_timeout)

    def guarded(handler: Endpoint) -> Endpoint:
        return _endpoint(auth, handler, limits)

    return [
        Mount(
            "/admin",
            routes=[
                _route("/openapi.json", {"GET": _endpoint(None, views.openapi, limits)}),
                _route(
                    "/plugins", {"GET": guarded(views.list_plugins), "POST": guarded(views.load)}
                ),
                _route(
                    "/plugins/{name}",
                    {"GET": guarded(views.get_plugin), "DELETE": guarded(views.unload)},
                ),
                _route("/plugins/{name}/health", {"GET": guarded(views.plugin_health)}),
                _route("/plugins/{name}/enable", {"POST": guarded(views.enable)}),
                _route("/plugins/{name}/disable", {"POST": guarded(views.disable)}),
                _route("/plugins/{name}/reload", {"POST": guarded(views.reload)}),
                _route("/plugins/{name}/rollback", {"POST": guarded(views.rollback)}),
                _route("/plugins/{name}/history", {"GET": guarded(views.history)}),
                _route("/health", {"GET": guarded(views.all_health)}),
                _route("/graph", {"GET": guarded(views.graph)}),
            ],
        )
    ]


_SHOWN = 200  # characters of a request's path an error message repeats


def _shown(path: str) -> str:
    return path if len(path) <= _SHOWN else f"{path[:_SHOWN]}... ({len(path)} characters)"


async def _not_found(request: Request, _exc: Exception) -> Response:
    return error_response(
        404,
        "NotFound",
        f"no route {request.method[:20]} {_shown(request.url.path)}",
        hint="GET /admin/openapi.json lists the admin API's routes",
    )


async def _not_allowed(request: Request, exc: Exception) -> Response:
    given = exc.headers.get("Allow", "") if isinstance(exc, HTTPException) and exc.headers else ""
    allowed = sorted(m.strip() for m in given.split(",") if m.strip())
    return error_response(
        405,
        "MethodNotAllowed",
        f"{request.method[:20]} is not allowed on {_shown(request.url.path)}: "
        f"it takes {', '.join(allowed) or 'no method'}",
        hint="GET /admin/openapi.json lists the admin API's routes",
        headers={"Allow": ", ".join(allowed)},
    )


def create_admin_app(
    manager: PluginManager,
    *,
    token: str | None = None,
    insecure: bool | None = None,
    protect_metrics: bool | None = None,
    max_body_size: int = MAX_BODY_SIZE,
    body_timeout: float = BODY_TIMEOUT,
) -> Starlette:
    """The admin API with ``/healthz``, ``/readyz`` and ``/metrics``, as one Starlette app.

    It serves full paths (``/admin/plugins``...), so a host passes reserved paths to it
    unchanged. ``token`` (else ``admin.token`` in the config, else ``$TETHER_ADMIN_TOKEN``)
    is the bearer token the admin routes require; without any, the admin routes are
    locked (403) unless ``insecure`` (``admin.insecure``). ``protect_metrics``
    (``admin.protect_metrics``) puts ``/metrics`` behind the token too. Bind the server
    to loopback (127.0.0.1, the default of ``tether serve``) unless a proxy in front
    does TLS and access control. A request body is ``max_body_size`` bytes at most
    (1 MiB; 413 beyond) and must arrive within ``body_timeout`` seconds (30; 408 after).
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
        *create_admin_routes(
            manager,
            token=chosen,
            insecure=open_access,
            max_body_size=max_body_size,
            body_timeout=body_timeout,
        ),
        *create_ops_routes(
            manager,
            metrics_token=chosen if guard_metrics else None,
            max_body_size=max_body_size,
        ),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
