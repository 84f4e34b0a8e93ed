"""The admin HTTP API: ``/admin/...`` to manage plugins, ``/healthz``, ``/readyz``, ``/metrics``.

``create_admin_app(manager, token=...)`` is everything as one Starlette app (the web
host passes its reserved paths to it); ``create_admin_routes`` and
``create_ops_routes`` are the two halves for a host that builds its own app.
docs/operations.md is the reference.
"""

from tether.admin._app import (
    ADMIN_CONFIG_SECTION,
    BODY_TIMEOUT,
    MAX_BODY_SIZE,
    MAX_NAME_LENGTH,
    AdminSettings,
    admin_settings,
    create_admin_app,
    create_admin_routes,
    create_ops_routes,
)
from tether.admin._errors import error_body, error_response
from tether.admin._openapi import openapi_document

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
    "error_body",
    "error_response",
    "openapi_document",
]
