"""A token bucket per client address, checked in a ``pre_request`` hook (priority 200).

Each client's bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a
second; a request takes one. A request that finds the bucket empty is answered
``429 Too Many Requests`` with ``Retry-After`` (seconds until a token is back) in the
host's error shape, and its route never runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

import tether
from tether.hosts.web import PRE_REQUEST, RequestContext


class RateLimitPlugin(tether.Plugin):
    def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        config = ctx.plugin_config
        self.rate = float(config["rate"])
        self.burst = int(config["burst"])
        self.max_clients = int(config["max_clients"])
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be above 0 and burst at least 1")
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.lock = threading.Lock()
        ctx.register_hook(PRE_REQUEST, 200, self.limit)

    def take(self, client: str) -> float:
        """Take a token from ``client``'s bucket: 0 if there was one, else seconds to wait."""
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self.buckets[client] = (tokens, now)
            while len(self.buckets) > self.max_clients:
                self.buckets.popitem(last=False)
        return wait

    def limit(self, ctx: RequestContext) -> None:
        """pre_request: refuse the request when its client has no token left."""
        client = ctx.client or "unknown"
        wait = self.take(client)
        if wait:
            retry = max(1, math.ceil(wait))
            ctx.refuse(
                429,
                "TooManyRequests",
                f"client {client} made more than {self.burst} requests at once "
                f"(allowed: {self.rate:g} a second)",
                plugin=self.ctx.name,
                hint=f"retry after {retry}s",
                headers={"Retry-After": str(retry)},
            )
