"""Session tokens (JWT, HS256) and the check that guards protected paths.

The plugin exports itself as ``AuthService``:

- ``issue(user)``: a signed token for ``user``, valid for ``token_ttl``; publishes
  ``user.login``.
- ``verify(token)``: the user a valid, unexpired token names, else ``None``.
- ``protect(*globs, hint=...)``: paths (``/users/me``, ``/admin-ui/*``) that need a token.

Under ``tether serve`` a ``pre_request`` hook (priority 300, before everyone else) reads
``Authorization: Bearer <token>``: a valid token puts its user in ``ctx.data["user"]``
and ``request.state.user``; a protected path without one is answered 401 in the host's
error shape, and its route never runs.
"""

from __future__ import annotations

import time
from fnmatch import fnmatchcase

import tether
from tether.hosts.web import PRE_REQUEST, RequestContext

from . import tokens


class AuthPlugin(tether.Plugin):
    async def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        config = ctx.plugin_config
        self._key = str(config["secret"]).encode()
        self.ttl = config["token_ttl"].total_seconds()
        self.protected: dict[str, str] = {}  # glob -> hint
        ctx.export_service("AuthService", self)
        ctx.register_hook(PRE_REQUEST, 300, self.check_request)  # typed: mypy checks it
        ctx.logger.info("auth ready; tokens live %.0fs", self.ttl)

    # ------------------------------------------------------------------ AuthService

    def issue(self, user: str) -> str:
        now = int(time.time())
        claims = {"sub": user, "iat": now, "exp": int(now + self.ttl)}
        # The subject is also a header parameter (RFC 7519, section 5.3), so that whose
        # token it is shows without parsing the claims; verify() checks that both agree.
        token = tokens.encode(claims, self._key, header={"sub": user})
        self.ctx.publish_event_nowait("user.login", {"user": user})
        return token

    def verify(self, token: str) -> str | None:
        decoded = tokens.decode(token, self._key)
        if decoded is None:
            return None
        header, claims = decoded
        user, expires = claims.get("sub"), claims.get("exp")
        if not isinstance(user, str) or header.get("sub", user) != user:
            return None
        if not isinstance(expires, int) or expires <= time.time():
            return None
        return user

    def protect(self, *globs: str, hint: str | None = None) -> None:
        """Make requests to paths matching ``globs`` need a valid token."""
        for glob in globs:
            self.protected[glob] = hint or "send a valid token: Authorization: Bearer <token>"

    # ------------------------------------------------------------------ the hook

    def check_request(self, ctx: RequestContext) -> None:
        """pre_request: who is asking, and may they ask for this path?"""
        request = ctx.request
        header = request.headers.get("authorization", "")
        user = self.verify(header[7:]) if header.startswith("Bearer ") else None
        if user is not None:
            ctx.data["user"] = user
            request.state.user = user
            return
        hint = next((h for glob, h in self.protected.items() if fnmatchcase(ctx.path, glob)), None)
        if hint is not None:
            problem = "the token is invalid or expired" if header else "no token was sent"
            ctx.refuse(
                401,
                "Unauthorized",
                f"{ctx.path} needs a valid token: {problem}",
                plugin=self.ctx.name,
                hint=hint,
                headers={"WWW-Authenticate": "Bearer"},
            )
