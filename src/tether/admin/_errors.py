"""One JSON shape for every admin API error, and the HTTP status of each tether error.

::

    {"error": "DependentsRunningError", "message": "cannot unload plugin 'auth' ...",
     "plugin": "auth", "hint": "unload the dependents first, or pass force=True ..."}

``error`` is the exception's class name for tether's errors, and one of
``BadRequest``, ``Unauthorized``, ``Forbidden``, ``NotFound``, ``MethodNotAllowed``,
``RequestTimeout``, ``PayloadTooLarge``, ``UnsupportedMediaType``, ``NotImplemented``,
``NotReady`` or ``InternalError`` for the API's own.

Every admin response renders with :class:`AdminJSONResponse`, which cannot fail on
text that is not UTF-8 (a lone surrogate from a request or a plugin is written as
its ``\\uXXXX`` escape, which is still JSON).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.responses import JSONResponse

from tether import error_text
from tether.errors import (
    CallError,
    CallInputError,
    CallTimeoutError,
    ConfigError,
    ContractError,
    DiscoveryError,
    HealthCheckError,
    IsolationError,
    LifecycleError,
    ManifestError,
    PluginCrashedError,
    PluginLoadError,
    PluginNotFoundError,
    PluginUnavailableError,
    ResolutionError,
    StorageError,
    TetherError,
    WorkerProtocolError,
)

__all__ = ["AdminJSONResponse", "ApiError", "error_response", "status_of"]

# First match wins, so subclasses come before their bases.
_STATUSES: tuple[tuple[type[TetherError], int], ...] = (
    (PluginNotFoundError, 404),
    (PluginUnavailableError, 503),
    (LifecycleError, 409),
    (ResolutionError, 409),
    (DiscoveryError, 409),  # PluginNameConflictError: that name is loaded already
    (ManifestError, 400),
    (ConfigError, 400),
    (PluginLoadError, 400),
    (StorageError, 503),
    (HealthCheckError, 503),
    (CallTimeoutError, 504),
    (CallInputError, 400),
    (CallError, 400),  # no such operation; an async one called synchronously
    (ContractError, 400),  # a plugin provides a contract no host registered
    (PluginCrashedError, 503),  # its worker process ended; it is restarted
    (WorkerProtocolError, 502),  # its worker answered in a way the host cannot read
    (IsolationError, 501),  # an isolation this host cannot give
)


def status_of(error: TetherError) -> int:
    for kind, status in _STATUSES:
        if isinstance(error, kind):
            return status
    return 500


class AdminJSONResponse(JSONResponse):
    """Starlette's JSON response, but text that UTF-8 cannot encode does not raise."""

    def render(self, content: object) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        # Outside strings JSON is ASCII, so an escape can only land inside one.
        return text.encode("utf-8", "backslashreplace")


class ApiError(Exception):
    """An error of the API itself (bad request, auth...), with its status."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        plugin: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.plugin = plugin
        self.hint = hint
        self.headers = headers

    def response(self) -> AdminJSONResponse:
        return error_response(
            self.status, self.error, self.message, plugin=self.plugin, hint=self.hint,
            headers=self.headers,
        )  # fmt: skip


def error_body(
    error: str, message: str, *, plugin: str | None = None, hint: str | None = None
) -> dict[str, object]:
    """The error JSON every tether HTTP surface answers with (admin API and web host)."""
    return {"error": error, "message": message, "plugin": plugin, "hint": hint}


def error_response(
    status: int,
    error: str,
    message: str,
    *,
    plugin: str | None = None,
    hint: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> AdminJSONResponse:
    """A JSON response in the error shape, with ``status``."""
    body = error_body(error, message, plugin=plugin, hint=hint)
    body.update(extra or {})
    return AdminJSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def tether_error_response(exc: TetherError) -> AdminJSONResponse:
    """A ``TetherError`` in the error shape (it may be a plugin's own subclass, whose
    ``__str__`` is the plugin's code)."""
    return error_response(
        status_of(exc), type(exc).__name__, error_text(exc), plugin=exc.plugin, hint=exc.hint
    )
