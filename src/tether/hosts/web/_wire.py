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
from starlette.responses import Response, StreamingResponse

from tether import TetherError
from tether.hosts.web._errors import to_response
from tether.isolation import body_fields, body_of, is_response_map

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
        **body_fields(body),
        "path_params": {str(k): str(v) for k, v in request.path_params.items()},
    }


def response_from_wire(value: object) -> object:
    """A response map as a ``Response``; anything else as it is (the route's usual
    conversion applies: JSON, text, 204)."""
    if not is_response_map(value):
        return value
    assert isinstance(value, dict)
    headers = {str(k): str(v) for k, v in value["headers"] if str(k).lower() != "content-length"}
    return Response(body_of(value), status_code=value["status"], headers=headers)


def wire_handler(handler: Callable[..., Any]) -> Callable[[Request], Any]:
    """``handler`` (a worker's) as a route handler taking a Starlette request."""

    async def serve(request: Request) -> object:
        result = handler(await request_to_wire(request))
        if inspect.isawaitable(result):
            result = await result
        return response_from_wire(result)

    serve.__name__ = getattr(handler, "__name__", "serve")
    return serve


MAX_BUFFERED = 16 << 20  # a streamed answer a worker's middleware may see, at most


async def response_to_wire(response: object) -> object:
    """What the rest of the chain answered, for a worker's middleware: a response map (a
    streamed answer is read whole first, up to 16 MiB)."""
    if not isinstance(response, Response):
        return response
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in response.raw_headers]
    if isinstance(response, StreamingResponse):
        chunks = bytearray()
        async for chunk in response.body_iterator:
            chunks += chunk if isinstance(chunk, bytes) else str(chunk).encode()
            if len(chunks) > MAX_BUFFERED:
                raise TetherError(
                    f"a streamed response over {MAX_BUFFERED >> 20} MiB cannot pass through a "
                    "process plugin's middleware",
                    hint="give that middleware routes that do not stream, or run it in-process",
                )
        body = bytes(chunks)
    else:
        body = bytes(getattr(response, "body", b""))
    return {"status": response.status_code, "headers": headers, **body_fields(body)}


def wire_middleware(handler: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    """A worker's middleware as one of the chain's: the request goes as a map, and its
    ``call_next`` answers the worker with the rest of the chain's response as a map."""

    async def middleware(request: Any, call_next: Callable[..., Any]) -> object:  # noqa: ANN401 - the chain's requests are the host's: Starlette's here
        async def next_as_wire(_data: object) -> object:
            result = call_next(request)
            if inspect.isawaitable(result):
                result = await result
            return await response_to_wire(to_response(result, what="the route"))

        answered = handler(await request_to_wire(request), next_as_wire)
        if inspect.isawaitable(answered):
            answered = await answered
        return response_from_wire(answered)

    middleware.__name__ = getattr(handler, "__name__", "middleware")
    return middleware
