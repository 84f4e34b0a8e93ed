"""The web host: ``tether serve``. Plugins add routes, middleware and request hooks to
one ASGI application; uvicorn serves it.

The public API is exactly ``__all__``; ``tether.hosts.web.testing`` runs the host in a
thread for tests. See docs/web.md.
"""

from tether.hosts.web._app import REQUEST_HOOKS, WEB_CONTRACT, WebApp
from tether.hosts.web._errors import error_body, error_response
from tether.hosts.web._request import (
    ERROR,
    POST_REQUEST,
    POST_RESPONSE,
    PRE_REQUEST,
    PRE_RESPONSE,
    HookContext,
    RequestContext,
)
from tether.hosts.web._routers import PluginRouter
from tether.hosts.web._routing import METHODS, RESERVED_PATHS, Route, RouteConflictError
from tether.hosts.web._server import ServeInfo, WebServer, bind_socket, serve
from tether.hosts.web._settings import SERVE_CONFIG_SECTION, ServeSection

__all__ = [
    "ERROR",
    "METHODS",
    "POST_REQUEST",
    "POST_RESPONSE",
    "PRE_REQUEST",
    "PRE_RESPONSE",
    "REQUEST_HOOKS",
    "RESERVED_PATHS",
    "SERVE_CONFIG_SECTION",
    "WEB_CONTRACT",
    "HookContext",
    "PluginRouter",
    "RequestContext",
    "Route",
    "RouteConflictError",
    "ServeInfo",
    "ServeSection",
    "WebApp",
    "WebServer",
    "bind_socket",
    "error_body",
    "error_response",
    "serve",
]
