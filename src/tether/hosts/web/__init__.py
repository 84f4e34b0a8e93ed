"""The web host: ``tether serve``. Plugins add routes, middleware and request hooks to
one ASGI application; uvicorn serves it.

The public API is exactly ``__all__``; ``tether.hosts.web.testing`` runs the host in a
thread for tests. See docs/web.md.

Each name is imported from its module on first use (PEP 562): a contract or config
section looked up by its entry point, or a command's --help, does not import the
whole host.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; type checkers know it
if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
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

# name -> (module, attribute in it)
_EXPORTS: dict[str, tuple[str, str]] = {
    "REQUEST_HOOKS": ("tether.hosts.web._app", "REQUEST_HOOKS"),
    "WEB_CONTRACT": ("tether.hosts.web._app", "WEB_CONTRACT"),
    "WebApp": ("tether.hosts.web._app", "WebApp"),
    "error_body": ("tether.hosts.web._errors", "error_body"),
    "error_response": ("tether.hosts.web._errors", "error_response"),
    "ERROR": ("tether.hosts.web._request", "ERROR"),
    "POST_REQUEST": ("tether.hosts.web._request", "POST_REQUEST"),
    "POST_RESPONSE": ("tether.hosts.web._request", "POST_RESPONSE"),
    "PRE_REQUEST": ("tether.hosts.web._request", "PRE_REQUEST"),
    "PRE_RESPONSE": ("tether.hosts.web._request", "PRE_RESPONSE"),
    "HookContext": ("tether.hosts.web._request", "HookContext"),
    "RequestContext": ("tether.hosts.web._request", "RequestContext"),
    "PluginRouter": ("tether.hosts.web._routers", "PluginRouter"),
    "METHODS": ("tether.hosts.web._routing", "METHODS"),
    "RESERVED_PATHS": ("tether.hosts.web._routing", "RESERVED_PATHS"),
    "Route": ("tether.hosts.web._routing", "Route"),
    "RouteConflictError": ("tether.hosts.web._routing", "RouteConflictError"),
    "ServeInfo": ("tether.hosts.web._server", "ServeInfo"),
    "WebServer": ("tether.hosts.web._server", "WebServer"),
    "bind_socket": ("tether.hosts.web._server", "bind_socket"),
    "serve": ("tether.hosts.web._server", "serve"),
    "SERVE_CONFIG_SECTION": ("tether.hosts.web._settings", "SERVE_CONFIG_SECTION"),
    "ServeSection": ("tether.hosts.web._settings", "ServeSection"),
}


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use, then keep it here."""
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'tether.hosts.web' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
