"""Where the admin API plugs into the web host.

The admin API (``/admin/plugins...``, ``/healthz``, ``/readyz``, ``/metrics``) is
``tether.admin``'s, not the web host's. The integration point is one function::

    tether.admin.create_admin_app(manager, *, token) -> ASGI app

The host looks for it once, when this module is imported. When it exists, every
request to a reserved path goes to the app it returns, with the path unchanged (the
admin app serves ``/admin/...``, ``/healthz``, ``/readyz`` and ``/metrics`` itself).
When it does not, those paths answer 404 in the error shape, and plugins still cannot
take them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from starlette.types import ASGIApp, Receive, Scope, Send

from tether import PluginManager
from tether.hosts.web._errors import error_response

__all__ = ["ADMIN_FACTORY", "AdminFactory", "admin_app", "find_admin_factory"]

AdminFactory = Callable[..., ASGIApp]


def find_admin_factory() -> AdminFactory | None:
    """``tether.admin.create_admin_app`` when that module provides it, else ``None``."""
    try:
        module = importlib.import_module("tether.admin")
    except ModuleNotFoundError as exc:
        if exc.name in {"tether.admin", "tether"}:
            return None
        raise  # tether.admin exists but needs something missing: say so
    factory = getattr(module, "create_admin_app", None)
    return cast("AdminFactory", factory) if callable(factory) else None


ADMIN_FACTORY = find_admin_factory()


async def _not_installed(scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(
        404,
        "NotFound",
        f"{scope.get('path', '')} is reserved for the admin API, which is not installed",
        hint="the admin API comes from tether.admin (create_admin_app); plugins cannot "
        "serve /admin, /healthz, /readyz or /metrics",
    )
    await response(scope, receive, send)


def admin_app(
    manager: PluginManager,
    *,
    token: str | None,
    factory: AdminFactory | None = ADMIN_FACTORY,
) -> ASGIApp:
    """The app serving the reserved paths: the admin API's, or a 404 when there is none."""
    if factory is None:
        return _not_installed
    return factory(manager, token=token)
