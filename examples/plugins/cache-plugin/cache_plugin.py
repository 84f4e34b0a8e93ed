"""An in-memory cache with expiry and a size bound, exported as the ``Cache`` service."""

from __future__ import annotations

import time
from collections import OrderedDict

import tether


class CachePlugin(tether.Plugin):
    def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        config = ctx.plugin_config
        self.max_entries = int(config["max_entries"])
        self.ttl = config["ttl"].total_seconds()
        self.entries: OrderedDict[str, tuple[float, object]] = OrderedDict()
        ctx.export_service("Cache", self)
        ctx.logger.info("cache ready: %d entries, ttl %.0fs", self.max_entries, self.ttl)

    def set(self, key: str, value: object) -> None:
        self.entries[key] = (time.monotonic() + self.ttl, value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def get(self, key: str) -> object | None:
        item = self.entries.get(key)
        if item is None or item[0] < time.monotonic():
            self.entries.pop(key, None)
            return None
        return item[1]

    def stop(self) -> None:
        self.ctx.logger.info("cache stopping with %d entries", len(self.entries))
        self.entries.clear()
