"""How the web host answers errors (in the one JSON shape, from ``tether.admin``), and what a
handler may return.

Every refusal or failure the host answers itself (no route, a plugin that is not
running, a handler or hook that raised) and every refusal a plugin makes through
``RequestContext.refuse`` has this body::

    {"error": "PluginUnavailableError", "message": "plugin 'users' is unavailable: ...",
     "plugin": "users", "hint": "..."}

``error`` is a type name (an exception's, or a short name such as ``NotFound``),
``plugin`` the plugin concerned (``null`` for the host itself) and ``hint`` what to do
about it (``null`` when there is nothing to add).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response

from tether import error_text
from tether.admin import error_body, error_response
from tether.errors import PluginCrashedError, PluginUnavailableError, TetherError

__all__ = [
    "LOG_HINT",
    "counts_against_plugin",
    "error_body",
    "error_response",
    "response_for",
    "to_response",
]

LOG_HINT = "the server log (logger 'tether.web') has the traceback"
_SERVER_ERROR = 500
_UNAVAILABLE = 503


def response_for(exc: BaseException, plugin: str | None) -> JSONResponse:
    """The response for ``exc``, raised by ``plugin`` (or by the host when None).

    ``HTTPException`` keeps its status and detail; a plugin that is not running is a
    503; anything else is a 500. A ``TetherError`` names its own plugin and hint.
    """
    if isinstance(exc, HTTPException):
        return error_response(
            exc.status_code,
            "HTTPException",
            _detail(exc),
            plugin=plugin,
            headers=exc.headers,
        )
    if isinstance(exc, PluginCrashedError):
        owner = exc.plugin or plugin
        hint = (
            f"the worker process of '{owner}' ended while serving this request; tether "
            "restarts it: retry after the Retry-After delay"
        )
        return _unavailable(exc, owner, hint)
    if isinstance(exc, PluginUnavailableError):
        owner = exc.plugin or plugin
        hint = (
            f"the plugin serving this request ('{owner}') is not running now; retry after "
            f"the Retry-After delay, or ask the operator (GET /admin/plugins/{owner} shows "
            "its status and last error)"
        )
        return _unavailable(exc, owner, hint)
    if isinstance(exc, TetherError):
        return error_response(
            _SERVER_ERROR,
            type(exc).__name__,
            error_text(exc),  # a plugin may raise a TetherError of its own
            plugin=exc.plugin or plugin,
            hint=exc.hint,
        )
    name = type(exc).__name__
    message = error_text(exc) or name
    return error_response(_SERVER_ERROR, name, message, plugin=plugin, hint=LOG_HINT)


def _unavailable(exc: TetherError, owner: str | None, hint: str) -> JSONResponse:
    """A 503 that says whose it is and when to try again."""
    return error_response(_UNAVAILABLE, type(exc).__name__, error_text(exc), plugin=owner,
                          hint=hint, headers={"Retry-After": "1"})  # fmt: skip


def _detail(exc: HTTPException) -> str:
    """An ``HTTPException``'s detail as text (a plugin may give any object)."""
    detail: object = exc.detail
    if isinstance(detail, str):
        return detail
    try:
        return str(detail)
    except Exception:  # its __str__ is the plugin's code
        return error_text(exc)


def counts_against_plugin(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the plugin that raised it.

    A 4xx ``HTTPException`` is an answer, and a ``PluginUnavailableError`` is a refusal
    by another plugin's gate (a dependency that is stopped or disabled).
    """
    if isinstance(exc, HTTPException):
        return exc.status_code >= _SERVER_ERROR
    return not isinstance(exc, PluginUnavailableError)


def to_response(result: object, *, what: str) -> Response:
    """Turn what a handler returned into a response; ``what`` names the handler in errors.

    ``Response`` as is, ``dict``/``list`` as JSON, ``str`` as text, ``bytes`` as
    ``application/octet-stream``, ``None`` as ``204 No Content``.
    """
    if isinstance(result, Response):
        return result
    if isinstance(result, dict | list):
        return JSONResponse(result)
    if isinstance(result, str):
        return PlainTextResponse(result)
    if isinstance(result, bytes):
        return Response(result, media_type="application/octet-stream")
    if result is None:
        return Response(status_code=204)
    raise TypeError(
        f"{what} returned {type(result).__name__}; return a starlette Response, a dict or "
        "list (sent as JSON), a str (text), bytes, or None (204 No Content)"
    )
