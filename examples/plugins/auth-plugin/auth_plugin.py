"""Signed tokens: ``issue(user)`` and ``verify(token)``, backed by HMAC-SHA256.

Exports itself as ``AuthService``, checks tokens in a ``pre_request`` hook, and
publishes ``user.login`` whenever it issues a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import tether

from .tokens import split_token


class AuthPlugin(tether.Plugin):
    async def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        config = ctx.plugin_config
        self.key = str(config["secret"]).encode()
        self.ttl = config["token_ttl"].total_seconds()
        ctx.export_service("AuthService", self)
        ctx.register_hook("pre_request", 300, self.check_request)
        ctx.logger.info("auth ready; tokens live %.0fs", self.ttl)

    def issue(self, user: str) -> str:
        expires = int(time.time() + self.ttl)
        payload = f"{user}:{expires}".encode()
        signature = hmac.new(self.key, payload, hashlib.sha256).digest()
        self.ctx.publish_event_nowait("user.login", {"user": user})
        return ".".join(base64.urlsafe_b64encode(p).decode() for p in (payload, signature))

    def verify(self, token: str) -> str | None:
        parts = split_token(token)
        if parts is None:
            return None
        payload, signature = parts
        expected = hmac.new(self.key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected):
            return None
        user, _, expires = payload.decode().rpartition(":")
        return user if int(expires) > time.time() else None

    def check_request(self, request: Any) -> None:
        """pre_request: mark the request with its user when it carries a valid token."""
        headers = getattr(request, "headers", None) or {}
        header = str(headers.get("authorization", ""))
        if header.startswith("Bearer "):
            user = self.verify(header.removeprefix("Bearer "))
            if user is not None and hasattr(request, "state"):
                request.state.user = user
