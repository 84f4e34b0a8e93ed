"""User accounts: signs users in through auth-plugin's ``AuthService`` and keeps the
time of each user's last login in its own storage (from ``user.login`` events).

Under ``tether serve`` it adds routes (permission ``router``)::

    GET  /users          every user
    POST /users/login    {"user": "ada"} -> {"token": "...", "token_type": "Bearer"}
    GET  /users/me       the signed-in user (needs the token: auth-plugin guards it)
    GET  /users/{name}   one user

Without an HTTP host (``tether demo``, unit tests) it is the same plugin minus routes.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from starlette.exceptions import HTTPException
from starlette.requests import Request

import tether


class AuthService(Protocol):
    """What this plugin uses of auth-plugin's ``AuthService`` (types the proxy)."""

    def issue(self, user: str) -> str: ...
    def verify(self, token: str) -> str | None: ...
    def protect(self, *globs: str, hint: str | None = None) -> None: ...


LOGIN_HINT = 'log in first: POST /users/login with {"user": "<name>"}, then send the token'


class UserPlugin(tether.Plugin):
    def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        self.users: set[str] = set()
        self.auth = ctx.import_service("auth-plugin", "AuthService", AuthService)
        ctx.subscribe_event("user.login", self.on_login)
        self.add_routes(ctx)

    def add_routes(self, ctx: tether.PluginContext) -> None:
        try:
            router = ctx.router
        except tether.TetherError as exc:  # no HTTP host here: serve no routes
            ctx.logger.debug("no routes: %s", exc)
            return
        users = router.group("/users")
        users.get("", self.list_users)
        users.post("/login", self.http_login)
        users.get("/me", self.me)
        users.get("/{name}", self.show)
        self.auth.protect("/users/me", hint=LOGIN_HINT)

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

    # ------------------------------------------------------------------ routes

    async def list_users(self, request: Request) -> dict[str, object]:
        return {"users": sorted(self.users)}

    async def http_login(self, request: Request) -> dict[str, object]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str):
            raise HTTPException(400, 'send JSON like {"user": "ada"}')
        if user not in self.users:
            raise HTTPException(401, f"unknown user {user!r}")
        return {"token": self.login(user), "token_type": "Bearer", "user": user}

    def me(self, request: Request) -> dict[str, object]:
        """A plain function: the host runs it in a worker thread."""
        user = getattr(request.state, "user", None)
        if user is None:  # auth-plugin refuses these before they get here
            raise HTTPException(401, LOGIN_HINT)
        return {"user": user, "last_login": self.ctx.plugin_storage.get(f"last_login:{user}")}

    async def show(self, request: Request) -> dict[str, object]:
        name = request.path_params["name"]
        if name not in self.users:
            raise HTTPException(404, f"no user named {name!r}")
        return {"user": name}
