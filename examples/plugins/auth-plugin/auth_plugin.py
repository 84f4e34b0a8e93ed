"""Signed tokens: ``issue(user)`` and ``verify(token)``, backed by HMAC-SHA256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import tether

from .tokens import split_token


class AuthPlugin(tether.Plugin):
    async def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        config = ctx.plugin_config
        self.key = str(config["secret"]).encode()
        self.ttl = config["token_ttl"].total_seconds()
        ctx.logger.info("auth ready; tokens live %.0fs", self.ttl)

    def issue(self, user: str) -> str:
        expires = int(time.time() + self.ttl)
        payload = f"{user}:{expires}".encode()
        signature = hmac.new(self.key, payload, hashlib.sha256).digest()
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
