"""Services: export_service / import_service, proxies that follow re-exports and reloads,
the exporter's gate on every call, and errors counted against the exporter."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tether import TetherConfig
from tether._context import PluginContext, Runtime
from tether._gate import Gate
from tether._manifest import Manifest
from tether.errors import PluginUnavailableError, ServiceError, ServiceNotFoundError
from tether.testing import PluginHarness

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "plugins"


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


def wait_until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        time.sleep(0.001)


class Plugins:
    """Contexts of several plugins sharing one runtime, as a manager would build them."""

    def __init__(self, root: Path, *, strict: bool = False) -> None:
        config = TetherConfig.model_validate({"plugins": {"strict": strict}})
        self.runtime = Runtime(config=config, state_directory=root / "state")

    def __call__(
        self,
        name: str,
        *,
        depends_on: Sequence[str] = (),
        exports: Sequence[str] = (),
        hold_timeout: float = 5.0,
        is_open: bool = True,
    ) -> PluginContext:
        manifest = Manifest.model_validate(
            {
                "name": name,
                "version": "1.0.0",
                "description": f"the {name} test plugin",
                "author": "tests",
                "entry": "plugin:Plugin",
                "dependencies": [{"name": d} for d in depends_on],
                "exports": [{"name": e} for e in exports],
            }
        )
        gate = Gate(name, hold_timeout=hold_timeout)
        if is_open:
            gate.open()
        return PluginContext(
            manifest=manifest,
            config={},
            permissions=frozenset(),
            runtime=self.runtime,
            gate=gate,
        )


@pytest.fixture
def plugins(tmp_path):
    return Plugins(tmp_path)


@pytest.fixture
def pair(plugins):
    """An exporter (``auth-plugin``, exports AuthService) and an importer that depends on it."""
    return plugins("auth-plugin", exports=["AuthService"]), plugins(
        "user-plugin", depends_on=["auth-plugin"]
    )


class AuthV1:
    version = "v1"

    def issue(self, user: str) -> str:
        """Issue a token for ``user``."""
        return f"v1:{user}"

    def fail(self, message: str) -> None:
        raise ValueError(message)

    async def issue_later(self, user: str) -> str:
        await asyncio.sleep(0)
        return f"v1-async:{user}"

    async def fail_later(self) -> None:
        await asyncio.sleep(0)
        raise LookupError("async failure")


class AuthV2(AuthV1):
    version = "v2"

    def issue(self, user: str) -> str:
        return f"v2:{user}"


# --------------------------------------------------------------------------- sharing


def test_the_importer_calls_the_exporters_methods_through_a_proxy(pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    assert proxy.issue("ada") == "v1:ada"
    assert proxy.issue(user="bob") == "v1:bob"
    assert proxy.issue.__doc__ == "Issue a token for ``user``."
    assert repr(proxy) == "<ServiceProxy auth-plugin.AuthService>"
    assert user.import_service("auth-plugin", "AuthService") is proxy


def test_re_export_swaps_the_implementation_and_importers_keep_their_proxy(pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    auth.export_service("AuthService", AuthV2())
    assert user.import_service("auth-plugin", "AuthService") is proxy
    assert proxy.issue("ada") == "v2:ada"
    assert proxy.version == "v2"


def test_a_reloaded_exporter_with_a_new_gate_is_followed_by_the_old_proxy(plugins, pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")

    auth.gate.close("it was unloaded")
    assert auth.release() == []
    with pytest.raises(PluginUnavailableError, match="'auth-plugin' is unavailable"):
        proxy.issue("ada")
    with pytest.raises(ServiceNotFoundError):
        user.import_service("auth-plugin", "AuthService")

    reloaded = plugins("auth-plugin", exports=["AuthService"])
    reloaded.export_service("AuthService", AuthV2())
    assert proxy.issue("ada") == "v2:ada"
    reloaded.gate.close("stopped again")  # the proxy follows the new gate, not the old one
    with pytest.raises(PluginUnavailableError, match="stopped again"):
        proxy.issue("ada")


def test_an_unknown_service_is_named_with_the_reference_message(pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    with pytest.raises(ServiceNotFoundError) as caught:
        user.import_service("auth-plugin", "UserService")
    assert str(caught.value) == (
        "service not found: plugin 'auth-plugin' does not export 'UserService'"
    )
    assert isinstance(caught.value, LookupError)
    assert "'auth-plugin' exports: AuthService" in (caught.value.hint or "")
    with pytest.raises(ServiceNotFoundError) as caught:
        user.import_service("nobody", "Thing")
    assert "'nobody' exports: nothing" in (caught.value.hint or "")


def test_importing_without_a_dependency_warns_once(plugins, pair, caplog):
    auth, user = pair
    stranger = plugins("stranger")
    auth.export_service("AuthService", AuthV1())
    with caplog.at_level(logging.WARNING, logger="tether.services"):
        user.import_service("auth-plugin", "AuthService")
        assert caplog.records == []
        stranger.import_service("auth-plugin", "AuthService")
        stranger.import_service("auth-plugin", "AuthService")
    assert [r.getMessage() for r in caplog.records] == [
        (
            "plugin 'stranger' imports 'AuthService' from 'auth-plugin' without declaring a "
            "dependency on it; load order is not guaranteed"
        )
    ]


def test_an_undeclared_export_warns(plugins, caplog):
    cache = plugins("cache-plugin", exports=["Cache"])
    with caplog.at_level(logging.WARNING, logger="tether.services"):
        cache.export_service("Cache", AuthV1())
        assert caplog.records == []
        cache.export_service("Extra", AuthV1())
    assert [r.getMessage() for r in caplog.records] == [
        "plugin 'cache-plugin' exports 'Extra' but its manifest does not list it under `exports`"
    ]
    assert cache.runtime.services.exports_of("cache-plugin") == ["Cache", "Extra"]


def test_an_undeclared_export_is_an_error_in_strict_mode(tmp_path):
    plugins = Plugins(tmp_path, strict=True)
    cache = plugins("cache-plugin", exports=["Cache"])
    with pytest.raises(ServiceError, match="does not list it under `exports`") as caught:
        cache.export_service("Extra", AuthV1())
    assert caught.value.hint == "add 'Extra' to `exports`"
    assert cache.runtime.services.exports_of("cache-plugin") == []


@pytest.mark.parametrize(
    ("name", "obj", "match"),
    [
        pytest.param("", AuthV1(), "non-empty name", id="empty-name"),
        pytest.param("Cache", None, "exported None as 'Cache'", id="none"),
    ],
)
def test_invalid_exports_are_refused(plugins, name, obj, match):
    cache = plugins("cache-plugin", exports=["Cache"])
    with pytest.raises(ServiceError, match=match):
        cache.export_service(name, obj)


# --------------------------------------------------------------------------- errors


def test_errors_are_counted_against_the_exporter_and_still_reach_the_caller(pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    heard: list[str] = []
    auth.gate.error_listeners.append(lambda source, error: heard.append(source))
    with pytest.raises(ValueError, match="bad token") as caught:
        proxy.fail("bad token")
    assert auth.gate.error_count == 1
    assert auth.gate.last_error is caught.value
    assert heard == ["service:AuthService"]
    assert user.gate.error_count == 0


def test_a_call_with_wrong_arguments_is_the_callers_mistake(pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    with pytest.raises(TypeError):
        proxy.issue()
    with pytest.raises(TypeError):
        proxy.issue("ada", "extra")
    assert auth.gate.error_count == 0


@asynctest
async def test_async_methods_are_awaited_gated_and_counted(pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    assert inspect.iscoroutinefunction(proxy.issue_later)
    assert await proxy.issue_later("ada") == "v1-async:ada"
    with pytest.raises(LookupError, match="async failure"):
        await proxy.fail_later()
    assert auth.gate.error_count == 1
    assert auth.gate.in_flight == 0


@asynctest
async def test_an_async_call_is_in_flight_while_it_awaits(pair):
    auth, user = pair
    release = asyncio.Event()

    class Slow:
        async def wait(self) -> str:
            await release.wait()
            return "released"

    auth.export_service("AuthService", Slow())
    proxy = user.import_service("auth-plugin", "AuthService")
    task = asyncio.create_task(proxy.wait())
    await asyncio.sleep(0)
    assert auth.gate.in_flight == 1
    assert not await auth.gate.drain(0.02)
    release.set()
    assert await task == "released"
    assert auth.gate.in_flight == 0


# --------------------------------------------------------------------------- the gate


@pytest.mark.parametrize("style", ["sync", "async"])
def test_a_closed_exporter_refuses_calls(pair, style):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    auth.gate.close("it is stopped")
    call = {
        "sync": lambda: proxy.issue("ada"),
        "async": lambda: asyncio.run(proxy.issue_later("ada")),
    }
    with pytest.raises(PluginUnavailableError) as caught:
        call[style]()
    assert str(caught.value) == "plugin 'auth-plugin' is unavailable: it is stopped"
    auth.gate.open()
    assert proxy.issue("ada") == "v1:ada"


def test_an_export_made_before_the_gate_opens_refuses_until_it_opens(plugins):
    auth = plugins("auth-plugin", exports=["AuthService"], is_open=False)
    user = plugins("user-plugin", depends_on=["auth-plugin"])
    auth.export_service("AuthService", AuthV1())  # as in initialize(): the gate opens after
    proxy = user.import_service("auth-plugin", "AuthService")
    with pytest.raises(PluginUnavailableError, match="it is not running"):
        proxy.issue("ada")
    auth.gate.open()
    assert proxy.issue("ada") == "v1:ada"


def test_a_held_exporter_makes_a_sync_caller_wait_for_the_new_implementation(pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    auth.gate.hold()
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(proxy.issue("ada")))
    caller.start()
    wait_until(lambda: auth.gate.waiting == 1)
    assert results == []
    auth.export_service("AuthService", AuthV2())  # the reload installs the new code...
    auth.gate.open()  # ...and opens the gate
    caller.join(5)
    assert results == ["v2:ada"]
    assert auth.gate.in_flight == 0


@asynctest
async def test_a_held_exporter_makes_an_async_caller_wait(pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    auth.gate.hold()
    task = asyncio.create_task(proxy.issue_later("ada"))
    await asyncio.sleep(0.01)
    assert not task.done()
    assert auth.gate.waiting == 1
    auth.gate.open()
    assert await asyncio.wait_for(task, 5) == "v1-async:ada"


def test_a_hold_longer_than_the_timeout_refuses_the_caller(plugins):
    auth = plugins("auth-plugin", exports=["AuthService"], hold_timeout=0.05)
    user = plugins("user-plugin", depends_on=["auth-plugin"])
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    auth.gate.hold()
    with pytest.raises(PluginUnavailableError, match="plugin reload exceeded queue timeout"):
        proxy.issue("ada")
    assert auth.gate.waiting == 0
    assert auth.gate.in_flight == 0


@asynctest
async def test_sync_calls_on_other_threads_are_in_flight_and_drained(pair):
    auth, user = pair
    entered, release = threading.Event(), threading.Event()

    class Blocking:
        def work(self) -> str:
            entered.set()
            release.wait(5)
            return "finished"

    auth.export_service("AuthService", Blocking())
    proxy = user.import_service("auth-plugin", "AuthService")
    results: list[object] = []
    callers = [threading.Thread(target=lambda: results.append(proxy.work())) for _ in range(2)]
    for caller in callers:
        caller.start()
    await asyncio.to_thread(entered.wait, 5)
    await asyncio.to_thread(wait_until, lambda: auth.gate.in_flight == 2)
    assert not await auth.gate.drain(0.02)
    release.set()
    assert await auth.gate.drain(5.0)
    for caller in callers:
        await asyncio.to_thread(caller.join, 5)
    assert results == ["finished", "finished"]
    assert auth.gate.in_flight == 0


# --------------------------------------------------------------------------- shapes


def test_a_function_can_be_exported_and_the_proxy_is_callable(plugins):
    tools = plugins("tools", exports=["slugify"])
    user = plugins("user-plugin", depends_on=["tools"])
    tools.export_service("slugify", lambda text, *, sep="-": sep.join(text.lower().split()))
    slugify = user.import_service("tools", "slugify")
    assert callable(slugify)
    assert slugify("Hello World") == "hello-world"
    assert slugify("Hello World", sep="_") == "hello_world"
    tools.gate.close("it is stopped")
    with pytest.raises(PluginUnavailableError, match="it is stopped"):
        slugify("x")


@asynctest
async def test_an_async_function_can_be_exported(plugins):
    tools = plugins("tools", exports=["double"])
    user = plugins("user-plugin", depends_on=["tools"])

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    tools.export_service("double", double)
    proxy = user.import_service("tools", "double")
    assert await proxy(21) == 42


def test_plain_attributes_are_readable_and_the_proxy_is_read_only(pair):
    auth, user = pair
    service = AuthV1()
    service.issuer = "tether"  # type: ignore[attr-defined]
    auth.export_service("AuthService", service)
    proxy = user.import_service("auth-plugin", "AuthService")
    assert proxy.version == "v1"
    assert proxy.issuer == "tether"
    service.issuer = "changed"  # type: ignore[attr-defined]
    assert proxy.issuer == "changed"  # read from the export on every access
    with pytest.raises(AttributeError, match="read-only"):
        proxy.issue = lambda user: "forged"
    with pytest.raises(AttributeError, match="read-only"):
        proxy.version = "v9"
    auth.gate.close("it is stopped")
    with pytest.raises(PluginUnavailableError):
        _ = proxy.version


def test_every_kind_of_parameter_passes_through(pair):
    auth, user = pair

    class Shapes:
        def positional_only(self, a, b=2, /):
            return (a, b)

        def keyword_only(self, x, *, scale=10, offset):
            return x * scale + offset

        def variadic(self, first, *rest, **options):
            return (first, rest, options)

    auth.export_service("AuthService", Shapes())
    proxy = user.import_service("auth-plugin", "AuthService")
    assert proxy.positional_only(1) == (1, 2)
    assert proxy.positional_only(1, 3) == (1, 3)
    assert proxy.keyword_only(2, offset=1) == 21
    assert proxy.keyword_only(x=2, scale=3, offset=1) == 7
    assert proxy.variadic(1, 2, 3, flag=True) == (1, (2, 3), {"flag": True})
    with pytest.raises(TypeError):
        proxy.keyword_only(2)  # offset is required and keyword-only
    with pytest.raises(TypeError):
        proxy.positional_only(a=1)


def test_release_withdraws_the_exports(pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    assert auth.release() == []
    assert auth.runtime.services.exports_of("auth-plugin") == []
    with pytest.raises(PluginUnavailableError):
        proxy.issue("ada")


# --------------------------------------------------------------------------- known bugs


def test_re_exporting_a_function_swaps_it_for_importers(plugins):
    tools = plugins("tools", exports=["version"])
    user = plugins("user-plugin", depends_on=["tools"])
    tools.export_service("version", lambda: "v1")
    proxy = user.import_service("tools", "version")
    tools.export_service("version", lambda: "v2")
    assert proxy() == "v2"
    tools.gate.close("it is stopped")
    with pytest.raises(PluginUnavailableError):
        proxy()


@pytest.mark.parametrize(
    ("parameter", "style"),
    [("record", "sync"), ("cell", "sync"), ("record", "async"), ("gate", "async")],
    ids=["record-sync", "cell-sync", "record-async", "gate-async"],
)
def test_parameters_named_like_the_wrappers_globals_work(pair, parameter, style):
    auth, user = pair
    prefix = "async " if style == "async" else ""
    namespace: dict[str, object] = {}
    exec(  # a method whose only parameter has the given name
        f"{prefix}def save(self, {parameter}):\n"
        f"    if {parameter} == 'bad':\n"
        f"        raise ValueError('bad value')\n"
        f"    return {parameter}\n",
        namespace,
    )
    service = type("Store", (), {"save": namespace["save"]})()
    auth.export_service("AuthService", service)
    proxy = user.import_service("auth-plugin", "AuthService")

    def call(value: str) -> object:
        result = proxy.save(value)
        return asyncio.run(result) if style == "async" else result

    assert call("good") == "good"
    with pytest.raises(ValueError, match="bad value"):
        call("bad")
    assert auth.gate.error_count == 1


def test_refused_calls_are_not_counted_as_the_exporters_errors(pair):
    auth, user = pair
    auth.export_service("AuthService", AuthV1())
    proxy = user.import_service("auth-plugin", "AuthService")
    auth.gate.close("it is stopped")
    with pytest.raises(PluginUnavailableError):
        asyncio.run(proxy.issue_later("ada"))
    assert auth.gate.error_count == 0
    with pytest.raises(PluginUnavailableError):
        proxy.issue("ada")
    assert auth.gate.error_count == 0


def test_properties_are_read_when_used_not_when_exported(pair):
    auth, user = pair

    class Connection:
        reads = 0

        @property
        def status(self) -> str:
            Connection.reads += 1
            raise RuntimeError("not connected yet")

        def ping(self) -> str:
            return "pong"

    auth.export_service("AuthService", Connection())
    assert Connection.reads == 0
    proxy = user.import_service("auth-plugin", "AuthService")
    assert proxy.ping() == "pong"
    with pytest.raises(RuntimeError, match="not connected yet"):
        _ = proxy.status


@pytest.fixture
def example_auth_proxy(tmp_path):
    with PluginHarness(
        EXAMPLES / "user-plugin",
        dependencies=[EXAMPLES / "cache-plugin", (EXAMPLES / "auth-plugin", {"secret": "k"})],
        state_directory=tmp_path / "state",
    ) as harness:
        yield harness.plugin.auth


def test_an_importer_cannot_reach_the_exporters_context(example_auth_proxy):
    assert example_auth_proxy.verify(example_auth_proxy.issue("ada")) == "ada"
    assert not hasattr(example_auth_proxy, "ctx")


def test_an_importer_cannot_call_the_exporters_lifecycle(example_auth_proxy):
    exposed = {"initialize", "start", "stop", "cleanup", "on_config_change"}
    assert exposed.isdisjoint(vars(example_auth_proxy))
