"""An in-memory cache with expiry and a size bound, exported as the ``Cache`` service,
and an HTTP response cache built on it.

``Cache``: ``get(key)``, ``set(key, value, ttl=None)``, ``delete(key)``.

With ``http_routes`` set (path globs such as ``/users`` or ``/catalog/*``), a middleware
serves repeated ``GET`` requests on those routes from the cache for ``http_ttl``:
``X-Cache: MISS`` on the first, ``X-Cache: HIT`` after. Requests that carry an
``Authorization`` header are never cached: their answers are somebody's own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

import tether

OK = 200


class CachePlugin(tether.Plugin):
    def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        config = ctx.plugin_config
        self.max_entries = int(config["max_entries"])
        self.ttl = config["ttl"].total_seconds()
        self.http_ttl = config["http_ttl"].total_seconds()
        self.entries: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self.lock = threading.Lock()
        ctx.export_service("Cache", self)
        routes = [str(glob) for glob in config["http_routes"]]
        if routes:
            ctx.register_middleware("response-cache", self.cache_responses, 50, routes)
        ctx.logger.info("cache ready: %d entries, ttl %.0fs", self.max_entries, self.ttl)

    # ------------------------------------------------------------------ Cache

    def set(self, key: str, value: object, ttl: float | None = None) -> None:
        expires = time.monotonic() + (self.ttl if ttl is None else ttl)
        with self.lock:
            self.entries[key] = (expires, value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)

    def get(self, key: str) -> object | None:
        with self.lock:
            item = self.entries.get(key)
            if item is None or item[0] < time.monotonic():
                self.entries.pop(key, None)
                return None
            return item[1]

    def delete(self, key: str) -> None:
        with self.lock:
            self.entries.pop(key, None)

    def stop(self) -> None:
        self.ctx.logger.info("cache stopping with %d entries", len(self.entries))
        with self.lock:
            self.entries.clear()

    # ------------------------------------------------------------------ middleware

    async def cache_responses(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method != "GET" or "authorization" in request.headers:
            return await call_next(request)
        key = f"http:{request.url.path}?{request.url.query}"
        hit = self.get(key)
        if isinstance(hit, tuple):
            status, headers, body = hit
            response = Response(body, status_code=status, headers=headers)
            response.headers["X-Cache"] = "HIT"
            return response
        response = await call_next(request)
        body = getattr(response, "body", None)
        if response.status_code == OK and isinstance(body, bytes):
            self.set(key, (OK, dict(response.headers), body), ttl=self.http_ttl)
        response.headers["X-Cache"] = "MISS"
        return response
