"""User accounts: signs users in through auth-plugin's ``AuthService`` and keeps the
time of each user's last login in its own storage (from ``user.login`` events)."""

from __future__ import annotations

import asyncio
from typing import Any

import tether


class UserPlugin(tether.Plugin):
    def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        self.users: set[str] = set()
        self.auth: Any = ctx.import_service("auth-plugin", "AuthService")
        ctx.subscribe_event("user.login", self.on_login)

    async def start(self) -> None:
        await asyncio.sleep(0)  # async lifecycle methods are awaited
        for user in self.ctx.plugin_config["default_users"]:
            self.users.add(str(user))
        self.ctx.logger.info("user store started with %d users", len(self.users))

    def login(self, user: str) -> str:
        if user not in self.users:
            raise KeyError(f"unknown user {user!r}")
        return str(self.auth.issue(user))

    def on_login(self, event: tether.Event) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        user = str(data.get("user"))
        self.ctx.plugin_storage.set(f"last_login:{user}", event.time.isoformat())
        self.ctx.logger.with_fields(user=user).info("login recorded")

    def stop(self) -> None:
        self.ctx.logger.info("user store stopping")
