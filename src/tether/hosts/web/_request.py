"""``RequestContext``: the object every request hook receives, one per request."""

from __future__ import annotations

from collections.abc import Mapping
from time import perf_counter

from starlette.requests import Request
from starlette.responses import Response

from tether import HookPoint
from tether.errors import TetherError
from tether.hosts.web._errors import error_response, to_response

__all__ = [
    "ERROR",
    "POST_REQUEST",
    "POST_RESPONSE",
    "PRE_REQUEST",
    "PRE_RESPONSE",
    "SCOPE_KEY",
    "HookContext",
    "RequestContext",
]

SCOPE_KEY = "tether.request_context"
"""The ASGI scope key under which a request's context is kept."""


class RequestContext:
    """One request as the plugins see it: request hooks receive it, middleware and route
    handlers reach it with ``RequestContext.of(request)``.

    - ``request``: the Starlette ``Request``.
    - ``response``: ``None`` until there is one. A ``pre_request`` hook that sets it
      (``ctx.respond(...)``, ``ctx.refuse(...)``) answers the request itself: the route's
      middleware and handler do not run. ``post_request`` and ``pre_response`` hooks may
      change or replace it; ``post_response`` hooks see what was sent.
    - ``data``: a dict shared by every plugin for this request only.
    - ``route``: the matched path template (``/users/{name}``), ``None`` when no route
      matched; ``plugin``: the plugin that owns the route.
    - ``error`` and ``error_plugin``: what failed and whose it was, for ``error`` hooks.
    """

    __slots__ = (
        "data",
        "error",
        "error_plugin",
        "plugin",
        "request",
        "response",
        "route",
        "started",
    )

    def __init__(
        self, request: Request, *, route: str | None = None, plugin: str | None = None
    ) -> None:
        self.request = request
        self.response: Response | None = None
        self.data: dict[str, object] = {}
        self.route = route
        self.plugin = plugin
        self.error: BaseException | None = None
        self.error_plugin: str | None = None
        self.started = perf_counter()

    @classmethod
    def of(cls, request: Request) -> RequestContext:
        """The context of ``request`` (from a middleware or a route handler)."""
        context = request.scope.get(SCOPE_KEY)
        if not isinstance(context, RequestContext):
            raise TetherError(
                "this request has no tether request context",
                hint="RequestContext.of() works on requests served by `tether serve` "
                "(tether.hosts.web.WebApp)",
            )
        return context

    # ------------------------------------------------------------------ reading

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def client(self) -> str | None:
        """The client's address (``request.client.host``), when the server knows it."""
        client = self.request.client
        return client.host if client is not None else None

    @property
    def status_code(self) -> int | None:
        """The response's status, ``None`` while there is no response."""
        return self.response.status_code if self.response is not None else None

    @property
    def elapsed(self) -> float:
        """Seconds since the request arrived."""
        return perf_counter() - self.started

    # ------------------------------------------------------------------ answering

    def respond(
        self,
        content: object = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Set the response: a ``Response`` as is, ``dict``/``list`` as JSON, ``str`` as text."""
        response = to_response(content, what="RequestContext.respond()")
        if not isinstance(content, Response):
            response.status_code = status
        if headers:
            response.headers.update(headers)
        self.response = response
        return response

    def refuse(
        self,
        status: int,
        error: str,
        message: str,
        *,
        plugin: str | None = None,
        hint: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Answer with the host's JSON error shape (``{"error", "message", "plugin", "hint"}``)."""
        self.response = error_response(
            status, error, message, plugin=plugin, hint=hint, headers=headers
        )
        return self.response

    def __repr__(self) -> str:
        status = self.status_code
        return f"<RequestContext {self.method} {self.path} route={self.route} status={status}>"


HookContext = RequestContext
"""The reference's name for what a request hook receives: the same class."""


PRE_REQUEST: HookPoint[RequestContext, None] = HookPoint(
    "pre_request", description="before the route's middleware and handler; may answer"
)
POST_REQUEST: HookPoint[RequestContext, None] = HookPoint(
    "post_request", description="after the handler, when nothing answered before it"
)
PRE_RESPONSE: HookPoint[RequestContext, None] = HookPoint(
    "pre_response", description="every response, just before it is sent"
)
POST_RESPONSE: HookPoint[RequestContext, None] = HookPoint(
    "post_response", description="every response, after it was sent (access logs)"
)
ERROR: HookPoint[RequestContext, None] = HookPoint(
    "error", description="a handler, middleware or hook raised; the context says what"
)
"""The web host's request hook points, typed: a handler takes a :class:`RequestContext`."""
