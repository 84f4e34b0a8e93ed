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

from tether.hosts.web._errors import to_response
from tether.isolation import is_response_map

__all__ = [
    "request_to_wire",
    "response_from_wire",
    "response_to_wire",
    "wire_handler",
    "wire_middleware",
]


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


def response_to_wire(response: object) -> object:
    """What the rest of the chain answered, for a worker's middleware: a response map."""
    if isinstance(response, Response):
        headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in response.raw_headers]
        body = bytes(getattr(response, "body", b""))
        return {"status": response.status_code, "headers": headers,
                "body": body.decode("utf-8", "replace")}  # fmt: skip
    return response


def wire_middleware(handler: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    """A worker's middleware as one of the chain's: the request goes as a map, and its
    ``call_next`` answers the worker with the rest of the chain's response as a map."""

    async def middleware(request: Any, call_next: Callable[..., Any]) -> object:  # noqa: ANN401 - the chain's requests are the host's: Starlette's here
        async def next_as_wire(_data: object) -> object:
            result = call_next(request)
            if inspect.isawaitable(result):
                result = await result
            return response_to_wire(to_response(result, what="the route"))

        answered = handler(await request_to_wire(request), next_as_wire)
        if inspect.isawaitable(answered):
            answered = await answered
        return response_from_wire(answered)

    middleware.__name__ = getattr(handler, "__name__", "middleware")
    return middleware
