"""The ``cache`` service: in memory by default, Redis by URL, one API for both.

::

    cache = open_cache(None, namespace="auth-plugin")        # or "redis://localhost:6379/0"
    user = cache.get("user:123")
    if user is None:
        user = fetch_user(123)
        cache.set("user:123", user, timedelta(minutes=5))

Values follow plugin storage's rules on every backend (JSON plus ``datetime``;
anything else is a :class:`~tether.errors.StorageValueError` naming the
namespace, the key and the offending item), and ``get`` returns a fresh copy,
so a plugin tested against the memory cache behaves the same against Redis.

``ttl`` is seconds (``float``) or a ``timedelta``, and must be positive; ``None``
keeps the entry until it is evicted or deleted. Setting a key again replaces its
value and its ttl.

``MemoryCache`` is bounded (least recently used entries go first) and expires
entries by a monotonic clock. ``RedisCache`` prefixes every key with
``tether:<namespace>:`` so namespaces (one per plugin) never collide, and expires
entries with ``SET ... PX``. Redis failures are mapped to
:class:`~tether.errors.StorageError`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Final, Protocol

from tether._storage import (
    DEFAULT_MAX_VALUE_BYTES,
    check_key,
    decode_value,
    encode_value,
    redact_url,
)
from tether.errors import StorageError, StorageValueError

if TYPE_CHECKING:
    import redis

__all__ = [
    "MAX_CACHE_KEY_LENGTH",
    "CacheManager",
    "MemoryCache",
    "RedisCache",
    "open_cache",
]

logger = logging.getLogger("tether.cache")

MAX_CACHE_KEY_LENGTH: Final = 1024
_REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")
_BATCH: Final = 500  # keys per SCAN step and per UNLINK in clear()
_GLOB: Final = re.compile(r"([*?\[\]\\])")


class CacheManager(Protocol):
    """What a plugin's ``ctx.cache`` offers; see the module docstring for the rules."""

    @property
    def namespace(self) -> str: ...
    def get(self, key: str, default: object = None) -> object: ...
    def set(self, key: str, value: object, ttl: float | timedelta | None = None) -> None: ...
    def delete(self, key: str) -> bool: ...
    def has(self, key: str) -> bool: ...
    def clear(self) -> int: ...
    def close(self) -> None: ...


def _check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not namespace or ":" in namespace:
        raise StorageError(
            f"invalid cache namespace {namespace!r}",
            hint="use the plugin's name: non-empty, without ':'",
        )
    return namespace


def _seconds(ttl: float | timedelta, *, namespace: str, key: str) -> float:
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    valid = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if not valid or not math.isfinite(seconds) or seconds <= 0:
        raise StorageValueError(
            f"invalid ttl {ttl!r} for cache key {key!r} of plugin {namespace!r}: "
            "a ttl must be a positive number of seconds or a positive timedelta",
            plugin=namespace,
            hint="pass ttl=None to keep the entry until it is evicted, or delete() it",
        )
    return float(seconds)


class _Codec:
    """Keys and values checked and encoded the same way for every backend."""

    __slots__ = ("max_value_bytes", "namespace")

    def __init__(self, namespace: str, max_value_bytes: int) -> None:
        self.namespace = _check_namespace(namespace)
        self.max_value_bytes = max_value_bytes

    def key(self, key: object) -> str:
        return check_key(key, owner=self.namespace, what="cache", max_length=MAX_CACHE_KEY_LENGTH)

    def encode(self, key: str, value: object) -> str:
        return encode_value(
            value, owner=self.namespace, key=key, max_bytes=self.max_value_bytes, what="cache"
        )

    def ttl(self, key: str, ttl: float | timedelta | None) -> float | None:
        return None if ttl is None else _seconds(ttl, namespace=self.namespace, key=key)


class MemoryCache:
    """A bounded, thread-safe in-process cache with per-entry ttl and LRU eviction.

    ``clock`` (monotonic seconds) can be replaced in tests.
    """

    def __init__(
        self,
        *,
        namespace: str = "default",
        max_entries: int = 10_000,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise StorageError(f"max_entries must be at least 1, got {max_entries}")
        self._codec = _Codec(namespace, max_value_bytes)
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (expires at, or None; encoded value); oldest use first
        self._entries: OrderedDict[str, tuple[float | None, str]] = OrderedDict()

    @property
    def namespace(self) -> str:
        return self._codec.namespace

    @property
    def max_entries(self) -> int:
        return self._max_entries

    def get(self, key: str, default: object = None) -> object:
        text = self._live(self._codec.key(key), touch=True)
        return default if text is None else decode_value(text)

    def has(self, key: str) -> bool:
        return self._live(self._codec.key(key), touch=False) is not None

    def set(self, key: str, value: object, ttl: float | timedelta | None = None) -> None:
        checked = self._codec.key(key)
        text = self._codec.encode(checked, value)
        seconds = self._codec.ttl(checked, ttl)
        with self._lock:
            expires = None if seconds is None else self._clock() + seconds
            self._entries[checked] = (expires, text)
            self._entries.move_to_end(checked)
            while len(self._entries) > self._max_entries:
                evicted, _ = self._entries.popitem(last=False)
                logger.debug("cache %s: evicted %r (lru)", self.namespace, evicted)

    def delete(self, key: str) -> bool:
        checked = self._codec.key(key)
        with self._lock:
            entry = self._entries.pop(checked, None)
            return entry is not None and not self._expired(entry)

    def clear(self) -> int:
        with self._lock:
            live = sum(1 for entry in self._entries.values() if not self._expired(entry))
            self._entries.clear()
            return live

    def __len__(self) -> int:
        """The number of entries that have not expired."""
        with self._lock:
            return sum(1 for entry in self._entries.values() if not self._expired(entry))

    def close(self) -> None:
        self.clear()

    def _expired(self, entry: tuple[float | None, str]) -> bool:
        return entry[0] is not None and entry[0] <= self._clock()

    def _live(self, key: str, *, touch: bool) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._expired(entry):
                del self._entries[key]
                return None
            if touch:
                self._entries.move_to_end(key)
            return entry[1]

    def __repr__(self) -> str:
        return f"MemoryCache(namespace={self.namespace!r}, max_entries={self._max_entries})"


class RedisCache:
    """A cache in Redis; every key is stored as ``<root>:<namespace>:<key>``."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        root: str = "tether",
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        connect_timeout: float = 5.0,
    ) -> None:
        self._codec = _Codec(namespace, max_value_bytes)
        self._location = redact_url(url)
        self._prefix = f"{root}:{namespace}:"
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StorageError(
                "the Redis cache needs the redis package", hint="pip install redis"
            ) from exc
        self._errors: type[Exception] = redis.RedisError
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                url, socket_connect_timeout=connect_timeout
            )
            self._client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise StorageError(
                f"cannot reach the Redis cache at {self._location}: {exc}",
                plugin=namespace,
                hint="check the URL and that the Redis server is running",
            ) from exc
        logger.debug("cache %s: using redis at %s", namespace, self._location)

    @property
    def namespace(self) -> str:
        return self._codec.namespace

    @property
    def prefix(self) -> str:
        return self._prefix

    def get(self, key: str, default: object = None) -> object:
        name = self._name(key)
        with self._translated("get", key):
            raw = self._client.get(name)
        return default if raw is None else decode_value(raw)

    def has(self, key: str) -> bool:
        name = self._name(key)
        with self._translated("has", key):
            return int(self._client.exists(name)) == 1

    def set(self, key: str, value: object, ttl: float | timedelta | None = None) -> None:
        checked = self._codec.key(key)
        text = self._codec.encode(checked, value)
        seconds = self._codec.ttl(checked, ttl)
        milliseconds = None if seconds is None else max(1, round(seconds * 1000))
        with self._translated("set", key):
            self._client.set(self._prefix + checked, text, px=milliseconds)

    def delete(self, key: str) -> bool:
        name = self._name(key)
        with self._translated("delete", key):
            return int(self._client.delete(name)) == 1

    def clear(self) -> int:
        """Delete every key of this namespace (SCAN + UNLINK in batches)."""
        pattern = _GLOB.sub(r"\\\1", self._prefix) + "*"
        removed = 0
        with self._translated("clear", "*"):
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=pattern, count=_BATCH):
                batch.append(name)
                if len(batch) >= _BATCH:
                    removed += int(self._client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(self._client.unlink(*batch))
        return removed

    def close(self) -> None:
        self._client.close()

    def _name(self, key: str) -> str:
        return self._prefix + self._codec.key(key)

    @contextmanager
    def _translated(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise StorageError(
                f"cache {action} failed for key {key!r} of plugin {self.namespace!r} "
                f"({self._location}): {exc}",
                plugin=self.namespace,
                hint="check that the Redis server is running and reachable",
            ) from exc

    def __repr__(self) -> str:
        return f"RedisCache({self._location!r}, namespace={self.namespace!r})"


def open_cache(
    url: str | None,
    *,
    namespace: str,
    max_entries: int = 10_000,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> CacheManager:
    """A cache for one namespace: ``None``/``memory://`` in memory, ``redis://`` in Redis.

    ``rediss://`` (TLS) and ``unix:///path/redis.sock`` URLs work too;
    ``max_entries`` applies to the memory cache only.
    """
    if url is None or url in {"memory://", "memory"}:
        return MemoryCache(
            namespace=namespace, max_entries=max_entries, max_value_bytes=max_value_bytes
        )
    if url.startswith(_REDIS_SCHEMES):
        return RedisCache(url, namespace=namespace, max_value_bytes=max_value_bytes)
    raise StorageError(
        f"unsupported cache URL {redact_url(url)!r}",
        plugin=namespace,
        hint="use memory:// (or leave it unset) or redis://host:6379/0",
    )
