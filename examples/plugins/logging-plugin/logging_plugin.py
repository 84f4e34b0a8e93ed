"""A plain class (no tether base class) returned by a factory function."""

from __future__ import annotations

from typing import Any


class AccessLog:
    def initialize(self, ctx: Any) -> None:
        self.ctx = ctx
        self.level = ctx.plugin_config["log_level"]

    def start(self) -> None:
        self.ctx.logger.info("access log on at level %s", self.level)

    def stop(self) -> None:
        self.ctx.logger.info("access log off")

    def cleanup(self) -> None:
        return None


def create() -> AccessLog:
    return AccessLog()
