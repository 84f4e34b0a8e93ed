"""HTTP requests and responses as the worker protocol carries them (a worker's side).

A route a process plugin serves is called with the request as a map, ``{"method",
"path", "query", "headers": [[name, value], ...], "body", "path_params"}`` (``body`` as
text); in the Python worker :func:`request_from_wire` makes it a Starlette ``Request``
again, so the plugin's handler is the one it would be in-process. What the handler
returns goes back through :func:`response_to_wire`: a Starlette ``Response`` as the map
``{"status", "headers", "body"}`` (exactly those keys; ``body_base64`` instead of
``body`` for a body that is not UTF-8), anything else as it is (the
host turns a dict or list into JSON, a str into text, None into 204).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

__all__ = [
    "body_fields",
    "body_of",
    "is_response_map",
    "request_from_wire",
    "response_from_map",
    "response_to_wire",
]

RESPONSE_KEYS = (
    frozenset({"status", "headers", "body"}),
    frozenset({"status", "headers", "body_base64"}),
)


def is_response_map(value: object) -> bool:
    """Whether ``value`` is the protocol's response map (not a JSON value to send)."""
    return (
        isinstance(value, dict)
        and value.keys() in RESPONSE_KEYS
        and isinstance(value["status"], int)
        and isinstance(value["headers"], list)
    )


def body_fields(body: bytes) -> dict[str, str]:
    """A body as the maps carry it: ``body`` (text) when it is UTF-8, else
    ``body_base64``, so binary bodies cross unchanged under either codec."""
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode("ascii")}


def body_of(data: Mapping[str, Any]) -> bytes:
    """The body of a request or response map, as bytes."""
    if "body_base64" in data:
        return base64.b64decode(str(data["body_base64"]), validate=False)
    return str(data.get("body", "")).encode("utf-8")


def request_from_wire(data: Mapping[str, Any]) -> object:
    """A Starlette ``Request`` for the request map ``data``."""
    from starlette.requests import Request

    body = body_of(data)
    headers = [(str(k).lower().encode("latin-1"), str(v).encode("latin-1"))
               for k, v in data.get("headers", [])]  # fmt: skip
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": str(data.get("method", "GET")),
        "scheme": "http",
        "path": str(data.get("path", "/")),
        "raw_path": str(data.get("path", "/")).encode(),
        "query_string": str(data.get("query", "")).encode(),
        "headers": headers,
        "path_params": dict(data.get("path_params", {})),
        "server": None,
        "client": None,
    }
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def response_to_wire(result: object) -> object:
    """What a route handler returned, as the protocol carries it."""
    try:
        from starlette.responses import Response
    except ImportError:  # pragma: no cover - starlette is one of tether's requirements
        return result
    if isinstance(result, Response):
        body = bytes(result.body) if hasattr(result, "body") else b""
        headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in result.raw_headers]
        return {"status": result.status_code, "headers": headers, **body_fields(body)}
    return result


def response_from_map(value: object) -> object:
    """What ``call_next`` answered (a response map) as a Starlette ``Response``."""
    from starlette.responses import JSONResponse, Response

    if is_response_map(value):
        assert isinstance(value, dict)
        headers = {
            str(k): str(v) for k, v in value["headers"] if str(k).lower() != "content-length"
        }
        return Response(str(value["body"]).encode(), status_code=value["status"], headers=headers)
    return JSONResponse(value)
