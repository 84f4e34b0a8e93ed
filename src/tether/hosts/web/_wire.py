"""Routes of process plugins: the request as a map for the worker, its answer back.

A route handler that forwards to a worker (``tether.isolation.is_remote``) takes and
returns only what the worker protocol carries (docs/reference/protocol.md): the web
host wraps it so that it is called with the request as ``{"method", "path", "query",
"headers", "body", "path_params"}`` and its answer, the response map ``{"status",
"headers", "body"}`` or any other value, becomes a Starlette response.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tether.isolation import is_response_map

__all__ = ["request_to_wire", "response_from_wire", "wire_handler"]


async def request_to_wire(request: Request) -> dict[str, object]:
    body = await request.body()
    return {
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
        "body": body.decode("utf-8", "replace"),
        "path_params": {str(k): str(v) for k, v in request.path_params.items()},
    }


def response_from_wire(value: object) -> object:
    """A response map as a ``Response``; anything else as it is (the route's usual
    conversion applies: JSON, text, 204)."""
    if not is_response_map(value):
        return value
    assert isinstance(value, dict)
    headers = {str(k): str(v) for k, v in value["headers"] if str(k).lower() != "content-length"}
    return Response(str(value["body"]).encode(), status_code=value["status"], headers=headers)


def wire_handler(handler: Callable[..., Any]) -> Callable[[Request], Any]:
    """``handler`` (a worker's) as a route handler taking a Starlette request."""

    async def serve(request: Request) -> object:
        result = handler(await request_to_wire(request))
        if inspect.isawaitable(result):
            result = await result
        return response_from_wire(result)

    serve.__name__ = getattr(handler, "__name__", "serve")
    return serve
