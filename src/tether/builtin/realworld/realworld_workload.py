"""The realworld workload: a read-heavy social application with sessions and an audit log.

``db`` is an asyncpg connection (one per client). Setup creates the
``realworld_*`` tables and loads users, follows, posts, comments, likes and some
open sessions once per data signature. A few hot users (``hot_user_fraction``)
receive ``hot_traffic`` of the activity, and the newest posts get most of the
views, comments and likes. Operations (default weights: 65% reads):

- ``view_feed`` (35): the newest posts of the people a user follows (join + limit);
- ``view_post`` (20): a post, its author and its comments;
- ``view_profile`` (10): a user with follower count and latest posts;
- ``like`` (10): upsert a like; a new one bumps the post's counter (one transaction);
- ``comment`` (8): a comment and the post's counter (one transaction);
- ``create_post`` (7): a post and an audit row (one transaction);
- ``login`` (5): a session, the user's last login and an audit row (one transaction);
- ``logout`` (3): end an open session, with an audit row (one transaction);
- ``profile_update`` (2): a new bio, with an audit row (one transaction).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

from tether.hosts.workload import AsyncConnection, Pool, Workload, settings_keys

from . import realworld_data as data
from .realworld_data import Picker

_COMMENTS_SHOWN = 50
_PROFILE_POSTS = 10


@dataclass(frozen=True, slots=True)
class Settings:
    """The plugin_config, as the manifest checks it (sizes, shares and ranges there)."""

    users: int
    posts_per_user: int
    follows_per_user: int
    hot_user_fraction: float
    hot_traffic: float
    session_ttl: timedelta
    feed_size: int
    seed: int | None = None

    @property
    def picker(self) -> Picker:
        hot = min(self.users, max(1, round(self.users * self.hot_user_fraction)))
        return Picker(users=self.users, hot=hot, hot_traffic=self.hot_traffic)

    def signature(self) -> dict[str, object]:
        """What the loaded data depends on: a different signature means a new load."""
        return {
            "users": self.users,
            "posts_per_user": self.posts_per_user,
            "follows_per_user": self.follows_per_user,
            "hot_user_fraction": self.hot_user_fraction,
            "hot_traffic": self.hot_traffic,
            "seed": self.seed,
        }


CONFIG_KEYS = settings_keys(Settings)


def _audit(action: str, **details: object) -> tuple[str, str]:
    return action, json.dumps(details)


_AUDIT = "INSERT INTO realworld_audit_log (user_id, action, details) VALUES ($1, $2, $3::jsonb)"


class RealworldWorkload(Workload[Settings, Picker]):
    """The ``realworld`` workload plugin (see the module docstring)."""

    NAME = "realworld"
    VERSION = "1.0.0"
    DESCRIPTION = "Social application: feeds, posts, comments, likes, sessions and an audit log."
    AUTHOR = "tether"
    OPERATION_WEIGHTS: ClassVar = {
        "view_feed": 35,
        "view_post": 20,
        "view_profile": 10,
        "like": 10,
        "comment": 8,
        "create_post": 7,
        "login": 5,
        "logout": 3,
        "profile_update": 2,
    }
    DATA = data.DATA
    SETTINGS = Settings

    def __init__(self) -> None:
        self._newest_post = 0
        # Sessions this workload opened and has not closed: logout takes one at random.
        self._sessions: Pool[int] = Pool()
        super().__init__(
            {
                "view_feed": self._view_feed,
                "view_post": self._view_post,
                "view_profile": self._view_profile,
                "like": self._like,
                "comment": self._comment,
                "create_post": self._create_post,
                "login": self._login,
                "logout": self._logout,
                "profile_update": self._profile_update,
            },
            read_state=self._read_state,
            counters=(
                "rows_returned",
                "likes_new",
                "likes_repeated",
                "comments_written",
                "posts_written",
                "sessions_opened",
                "sessions_closed",
                "logouts_without_session",
                "profiles_updated",
                "audit_rows",
            ),
        )

    # ------------------------------------------------------------------ contract

    async def setup(self, db: AsyncConnection) -> None:
        settings = self.settings

        async def fill() -> int:
            return await data.load(
                db,
                random.Random(settings.seed),  # noqa: S311 - same seed, same rows
                settings.picker,
                posts_per_user=settings.posts_per_user,
                follows=settings.follows_per_user,
                session_ttl=settings.session_ttl,
            )

        signature = settings.signature()
        self.counters.loaded(await data.DATA.load(db, signature, schema=data.SCHEMA, fill=fill))
        await self.operations.prepare(db)

    async def cleanup(self, db: AsyncConnection) -> None:
        await super().cleanup(db)
        self._sessions = Pool()

    # ------------------------------------------------------------------ state

    async def _read_state(self, db: AsyncConnection) -> Picker:
        users = await db.fetchval("SELECT coalesce(max(user_id), 0) FROM realworld_users")
        if users != self.settings.users:
            raise RuntimeError(
                f"workload '{self.NAME}': realworld_users holds {users} users, the config says "
                f"{self.settings.users}; run setup() before operations"
            )
        self._newest_post = await db.fetchval(
            "SELECT coalesce(max(post_id), 0) FROM realworld_posts"
        )
        return self.settings.picker

    def _post(self) -> int:
        return data.recent(self.rng, self._newest_post)

    # ------------------------------------------------------------------ reads

    async def _view_feed(self, db: AsyncConnection, picker: Picker) -> None:
        rows = await db.fetch(
            "SELECT p.post_id, p.body, p.like_count, p.comment_count, p.created_at, u.username "
            "FROM realworld_follows f "
            "JOIN realworld_posts p ON p.user_id = f.followee_id "
            "JOIN realworld_users u ON u.user_id = p.user_id "
            "WHERE f.follower_id = $1 ORDER BY p.created_at DESC LIMIT $2",
            picker.user(self.rng),
            self.settings.feed_size,
        )
        self.counters["rows_returned"] += len(rows)

    async def _view_post(self, db: AsyncConnection, _picker: Picker) -> None:
        post_id = self._post()
        post = await db.fetchrow(
            "SELECT p.post_id, p.body, p.like_count, p.comment_count, p.created_at, u.username "
            "FROM realworld_posts p JOIN realworld_users u ON u.user_id = p.user_id "
            "WHERE p.post_id = $1",
            post_id,
        )
        comments = await db.fetch(
            "SELECT c.comment_id, c.body, c.created_at, u.username FROM realworld_comments c "
            "JOIN realworld_users u ON u.user_id = c.user_id "
            "WHERE c.post_id = $1 ORDER BY c.created_at LIMIT $2",
            post_id,
            _COMMENTS_SHOWN,
        )
        self.counters["rows_returned"] += len(comments) + (post is not None)

    async def _view_profile(self, db: AsyncConnection, picker: Picker) -> None:
        user_id = picker.user(self.rng)
        profile = await db.fetchrow(
            "SELECT u.user_id, u.username, u.display_name, u.bio, "
            "(SELECT count(*) FROM realworld_follows f WHERE f.followee_id = u.user_id) "
            "AS followers FROM realworld_users u WHERE u.user_id = $1",
            user_id,
        )
        posts = await db.fetch(
            "SELECT post_id, body, like_count, comment_count, created_at FROM realworld_posts "
            "WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2",
            user_id,
            _PROFILE_POSTS,
        )
        self.counters["rows_returned"] += len(posts) + (profile is not None)

    # ------------------------------------------------------------------ writes

    async def _like(self, db: AsyncConnection, picker: Picker) -> None:
        user_id, post_id = picker.user(self.rng), self._post()
        async with db.transaction():
            new = await db.fetchval(
                "INSERT INTO realworld_likes (user_id, post_id) VALUES ($1, $2) "
                "ON CONFLICT (user_id, post_id) DO NOTHING RETURNING true",
                user_id,
                post_id,
            )
            if new:
                await db.execute(
                    "UPDATE realworld_posts SET like_count = like_count + 1 WHERE post_id = $1",
                    post_id,
                )
        self.counters["likes_new" if new else "likes_repeated"] += 1

    async def _comment(self, db: AsyncConnection, picker: Picker) -> None:
        post_id = self._post()
        async with db.transaction():
            await db.execute(
                "INSERT INTO realworld_comments (post_id, user_id, body) VALUES ($1, $2, $3)",
                post_id,
                picker.user(self.rng),
                data.sentence(self.rng, 3, 15),
            )
            await db.execute(
                "UPDATE realworld_posts SET comment_count = comment_count + 1 WHERE post_id = $1",
                post_id,
            )
        self.counters["comments_written"] += 1

    async def _create_post(self, db: AsyncConnection, picker: Picker) -> None:
        user_id = picker.user(self.rng)
        async with db.transaction():
            post_id = await db.fetchval(
                "INSERT INTO realworld_posts (user_id, body) VALUES ($1, $2) RETURNING post_id",
                user_id,
                data.sentence(self.rng),
            )
            await db.execute(_AUDIT, user_id, *_audit("post.create", post_id=post_id))
        self._newest_post = max(self._newest_post, post_id)
        self.counters["posts_written"] += 1
        self.counters["audit_rows"] += 1

    async def _login(self, db: AsyncConnection, picker: Picker) -> None:
        user_id = picker.user(self.rng)
        async with db.transaction():
            session_id = await db.fetchval(
                "INSERT INTO realworld_sessions (user_id, expires_at) "
                "VALUES ($1, now() + $2::interval) RETURNING session_id",
                user_id,
                self.settings.session_ttl,
            )
            await db.execute(
                "UPDATE realworld_users SET last_login_at = now() WHERE user_id = $1", user_id
            )
            await db.execute(_AUDIT, user_id, *_audit("session.login", session_id=session_id))
        self._sessions.add(session_id)
        self.counters["sessions_opened"] += 1
        self.counters["audit_rows"] += 1

    async def _logout(self, db: AsyncConnection, _picker: Picker) -> None:
        session_id = self._sessions.take(self.rng)
        async with db.transaction():
            if session_id is None:  # none of ours: any open one (another client's, or setup's)
                session_id = await db.fetchval(
                    "SELECT session_id FROM realworld_sessions WHERE ended_at IS NULL "
                    "LIMIT 1 FOR UPDATE SKIP LOCKED"
                )
            user_id = await db.fetchval(
                "UPDATE realworld_sessions SET ended_at = now() "
                "WHERE session_id = $1 AND ended_at IS NULL RETURNING user_id",
                session_id,
            )
            if user_id is not None:
                await db.execute(_AUDIT, user_id, *_audit("session.logout", session_id=session_id))
        if user_id is None:
            self.counters["logouts_without_session"] += 1
            return
        self.counters["sessions_closed"] += 1
        self.counters["audit_rows"] += 1

    async def _profile_update(self, db: AsyncConnection, picker: Picker) -> None:
        user_id = picker.user(self.rng)
        async with db.transaction():
            await db.execute(
                "UPDATE realworld_users SET bio = $2, updated_at = now() WHERE user_id = $1",
                user_id,
                data.sentence(self.rng, 3, 12),
            )
            await db.execute(_AUDIT, user_id, *_audit("profile.update", fields=["bio"]))
        self.counters["profiles_updated"] += 1
        self.counters["audit_rows"] += 1
