"""User accounts; signs users in with the auth plugin's tokens."""

from __future__ import annotations

import asyncio

import tether


class UserPlugin(tether.Plugin):
    def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        self.users: set[str] = set()

    async def start(self) -> None:
        await asyncio.sleep(0)  # async lifecycle methods are awaited
        for user in self.ctx.plugin_config["default_users"]:
            self.users.add(str(user))
        self.ctx.logger.info("user store started with %d users", len(self.users))

    def stop(self) -> None:
        self.ctx.logger.info("user store stopping")
