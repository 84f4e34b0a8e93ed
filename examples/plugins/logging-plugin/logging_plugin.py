"""An access log: one line per request, from a ``post_response`` hook.

A plain class (no tether base class) returned by a factory function. Each line goes
through ``ctx.logger`` with structured fields (``record.fields``)::

    access method=GET path=/users/me status=200 duration_ms=1.2 client=127.0.0.1 user=ada
"""

from __future__ import annotations

import logging

import tether
from tether.hosts.web import POST_RESPONSE, RequestContext


class AccessLog:
    def initialize(self, ctx: tether.PluginContext) -> None:
        self.ctx = ctx
        self.level = ctx.plugin_config["log_level"]
        levels = logging.getLevelNamesMapping()
        if str(self.level).upper() not in levels:
            raise ValueError(f"log_level {self.level!r} is not one of {', '.join(levels)}")
        self.levelno = levels[str(self.level).upper()]
        ctx.register_hook(POST_RESPONSE, 50, self.log_request)

    def start(self) -> None:
        self.ctx.logger.info("access log on at level %s", self.level)

    def stop(self) -> None:
        self.ctx.logger.info("access log off")

    def cleanup(self) -> None:
        return None

    def log_request(self, hook: RequestContext) -> None:
        """post_response: the response has been sent."""
        fields: dict[str, object] = {
            "method": hook.method,
            "path": hook.path,
            "status": hook.status_code,
            "duration_ms": round(hook.elapsed * 1000, 3),
            "client": hook.client,
        }
        if hook.route is not None:
            fields["route"] = hook.route
        if "user" in hook.data:
            fields["user"] = hook.data["user"]
        self.ctx.logger.with_fields(**fields).log(self.levelno, "access")


def create() -> AccessLog:
    return AccessLog()
