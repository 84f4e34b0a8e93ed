"""Services: export_service / import_service, proxies that offer the exporter's public
methods only and follow re-exports, versions and reloads, the exporter's door on every
call, and errors counted against the exporter."""

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

from tether import TetherConfig, blame
from tether._chain import CallChain
from tether._context import PluginScope
from tether._gate import Gate
from tether._manifest import Manifest
from tether._runtime import Runtime
from tether.errors import (
    CallTimeoutError,
    PluginUnavailableError,
    ServiceError,
    ServiceNotFoundError,
)
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


async def poll_until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.001)


class Plugins:
    """Scopes of several plugins sharing one runtime, as a manager would build them.

    Like ``tether.testing.make_scope``, with manifests that declare dependencies and
    exports, and a second version of a plugin on the gate of the first (``gate=``).
    """

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
        version: str = "1.0.0",
        gate: Gate | None = None,
        committed: bool = True,
        call_timeout: float | None = 30.0,
    ) -> PluginScope:
        manifest = Manifest.model_validate(
            {
                "name": name,
                "version": version,
                "description": f"the {name} test plugin",
                "author": "tests",
                "entry": "plugin:Plugin",
                "dependencies": [{"name": d} for d in depends_on],
                "exports": [{"name": e} for e in exports],
            }
        )
        # The manager's chain: the default links, the plugin's call timeout, the host's policy.
        chain = CallChain(timeout=call_timeout, policy=self.runtime.errors)
        door = (gate or Gate(name, hold_timeout=hold_timeout)).add_door(version, chain=chain)
        scope = PluginScope(
            manifest=manifest,
            config={},
            permissions=frozenset(),
            runtime=self.runtime,
            door=door,
        )
        if committed:
            commit(scope)
        return scope

    def next_version(self, scope: PluginScope, version: str = "2.0.0") -> PluginScope:
        """A staged second version of ``scope``'s plugin, on the same gate (a reload)."""
        return self(
            scope.name,
            exports=[e.name for e in scope.manifest.exports],
            version=version,
            gate=scope.door.gate,
            committed=False,
        )


def commit(new: PluginScope, old: PluginScope | None = None, *, open_gate: bool = True) -> None:
    """What ``PluginSlot.commit`` does (then the manager opens the new version's door)."""
    if old is not None:
        old.door.committed = False
    new.door.committed = True
    new.runtime.version_committed(old, new)
    if open_gate:
        new.door.gate.open(new.door)


@pytest.fixture
def plugins(tmp_path):
    return Plugins(tmp_path)


@pytest.fixture
def pair(plugins):
    """An exporter (``auth-plugin``, exports AuthService) and an importer that depends on it."""
    return plugins("auth-plugin", exports=["AuthService"]), plugins(
        "user-plugin", depends_on=["auth-plugin"]
    )


def gate_of(scope: PluginScope) -> Gate:
    return scope.door.gate


class AuthV1:
    version = "v1"

    def issue(self, user: str) -> str:
        """Issue a token for ``user``."""
        return f"v1:{user}"

    def which(self) -> str:
        return self.version

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
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    assert proxy.issue("ada") == "v1:ada"
    assert proxy.issue(user="bob") == "v1:bob"
    assert proxy.issue.__doc__ == "Issue a token for ``user``."
    assert list(inspect.signature(proxy.issue).parameters) == ["user"]
    assert user.context.import_service("auth-plugin", "AuthService") is proxy


def test_the_proxy_repr_names_the_exporter_and_the_service(pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    assert repr(proxy) == "<ServiceProxy auth-plugin.AuthService>"


def test_re_export_swaps_the_implementation_and_importers_keep_their_proxy(pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    auth.context.export_service("AuthService", AuthV2())
    assert user.context.import_service("auth-plugin", "AuthService") is proxy
    assert proxy.issue("ada") == "v2:ada"
    assert proxy.which() == "v2"


def test_a_reloaded_exporter_with_a_new_gate_is_followed_by_the_old_proxy(plugins, pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")

    gate_of(auth).close("it was unloaded")
    assert auth.release() == []
    with pytest.raises(PluginUnavailableError, match="'auth-plugin' is unavailable"):
        proxy.issue("ada")
    with pytest.raises(ServiceNotFoundError):
        user.context.import_service("auth-plugin", "AuthService")

    reloaded = plugins("auth-plugin", exports=["AuthService"])
    reloaded.context.export_service("AuthService", AuthV2())
    assert proxy.issue("ada") == "v2:ada"
    gate_of(reloaded).close("stopped again")  # the proxy follows the new gate, not the old one
    with pytest.raises(PluginUnavailableError, match="stopped again"):
        proxy.issue("ada")


def test_a_proxy_follows_a_second_version_committed_on_the_same_gate(plugins, pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    kept = proxy.issue  # a method object taken before the version changes

    second = plugins.next_version(auth)
    second.context.export_service("AuthService", AuthV2())
    assert proxy.issue("ada") == "v1:ada"  # staged: the committed version still answers
    assert kept("ada") == "v1:ada"

    commit(second, auth)
    assert proxy.issue("ada") == "v2:ada"
    assert proxy.which() == "v2"
    assert kept("ada") == "v2:ada"  # redirected to the live version's method
    assert user.context.import_service("auth-plugin", "AuthService") is proxy

    assert auth.release() == []  # the old version goes
    gate_of(auth).remove_door(auth.door)
    assert proxy.issue("ada") == "v2:ada"
    assert kept("ada") == "v2:ada"
    assert auth.door.in_flight == 0
    assert second.door.stats_for("service:AuthService.issue")[0] == 4


def test_a_method_the_new_version_lacks_is_refused_naming_both_versions(plugins, pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    kept = proxy.fail

    class Smaller:
        def issue(self, user: str) -> str:
            return f"v2:{user}"

    second = plugins.next_version(auth)
    second.context.export_service("AuthService", Smaller())
    commit(second, auth)
    assert proxy.issue("ada") == "v2:ada"
    assert not hasattr(proxy, "fail")
    with pytest.raises(PluginUnavailableError) as caught:
        kept("boom")
    assert str(caught.value) == (
        "plugin 'auth-plugin' is unavailable: its version 1.0.0 was replaced by 2.0.0, "
        "which has no service:AuthService.fail"
    )
    assert gate_of(auth).error_count == 0


def test_an_unknown_service_is_named_with_the_reference_message(pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    with pytest.raises(ServiceNotFoundError) as caught:
        user.context.import_service("auth-plugin", "UserService")
    assert str(caught.value) == (
        "service not found: plugin 'auth-plugin' does not export 'UserService'"
    )
    assert isinstance(caught.value, LookupError)
    assert "'auth-plugin' exports: AuthService" in (caught.value.hint or "")
    with pytest.raises(ServiceNotFoundError) as caught:
        user.context.import_service("nobody", "Thing")
    assert "'nobody' exports: nothing" in (caught.value.hint or "")


def test_importing_without_a_dependency_warns_once(plugins, pair, caplog):
    auth, user = pair
    stranger = plugins("stranger")
    auth.context.export_service("AuthService", AuthV1())
    with caplog.at_level(logging.WARNING, logger="tether.services"):
        user.context.import_service("auth-plugin", "AuthService")
        assert caplog.records == []
        stranger.context.import_service("auth-plugin", "AuthService")
        stranger.context.import_service("auth-plugin", "AuthService")
    assert [r.getMessage() for r in caplog.records] == [
        (
            "plugin 'stranger' imports 'AuthService' from 'auth-plugin' without declaring a "
            "dependency on it; load order is not guaranteed"
        )
    ]


def test_an_undeclared_export_warns(plugins, caplog):
    cache = plugins("cache-plugin", exports=["Cache"])
    with caplog.at_level(logging.WARNING, logger="tether.services"):
        cache.context.export_service("Cache", AuthV1())
        assert caplog.records == []
        cache.context.export_service("Extra", AuthV1())
    assert [r.getMessage() for r in caplog.records] == [
        "plugin 'cache-plugin' exports 'Extra' but its manifest does not list it under `exports`"
    ]
    assert cache.runtime.services.exports_of("cache-plugin") == ["Cache", "Extra"]


def test_an_undeclared_export_is_an_error_in_strict_mode(tmp_path):
    plugins = Plugins(tmp_path, strict=True)
    cache = plugins("cache-plugin", exports=["Cache"])
    with pytest.raises(ServiceError, match="does not list it under `exports`") as caught:
        cache.context.export_service("Extra", AuthV1())
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
        cache.context.export_service(name, obj)


# --------------------------------------------------------------------------- errors


def test_errors_are_counted_against_the_exporter_and_still_reach_the_caller(pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    heard: list[str] = []
    gate_of(auth).error_listeners.append(lambda source, error: heard.append(source))
    with pytest.raises(ValueError, match="bad token") as caught:
        proxy.fail("bad token")
    assert gate_of(auth).error_count == 1
    assert gate_of(auth).errors_by_type == {"ValueError": 1}
    assert gate_of(auth).last_error is caught.value
    assert heard == ["service:AuthService.fail"]
    assert blame(caught.value) == "auth-plugin"
    assert gate_of(user).error_count == 0


@pytest.mark.parametrize("style", ["call", "run"], ids=["sync-hook-call", "awaited-hook-run"])
def test_a_service_error_passing_up_through_the_importers_hook_is_the_exporters(pair, style):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    user.context.register_hook("pre_request", 100, lambda request: proxy.fail("bad token"))
    hooks = user.runtime.hooks
    if style == "call":
        outcome = hooks.call("pre_request", {})
    else:
        outcome = asyncio.run(hooks.run("pre_request", {}))
    (failure,) = outcome.failures
    assert isinstance(failure.error, ValueError)
    assert str(failure.error) == "bad token"
    assert blame(failure.error) == "auth-plugin"
    assert gate_of(auth).error_count == 1
    assert gate_of(auth).last_error is failure.error
    assert gate_of(user).error_count == 0
    assert gate_of(user).last_error is None


class DeniedError(Exception):
    """An error the host treats as an answer (``tether serve``: an HTTPException < 500)."""


def test_an_answer_the_hosts_error_policy_accepts_is_not_the_exporters_error(pair):
    auth, user = pair
    auth.runtime.errors.add_answer(lambda error: isinstance(error, DeniedError))

    class Guard:
        def check(self, user: str) -> None:
            raise DeniedError(f"{user} may not")

    auth.context.export_service("AuthService", Guard())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    with pytest.raises(DeniedError, match="mallory may not"):
        proxy.check("mallory")
    assert gate_of(auth).error_count == 0
    assert gate_of(user).error_count == 0


@asynctest
async def test_the_exporters_call_timeout_bounds_its_async_methods(plugins):
    auth = plugins("auth-plugin", exports=["AuthService"], call_timeout=0.05)
    user = plugins("user-plugin", depends_on=["auth-plugin"])
    never = asyncio.Event()

    class Stuck:
        async def wait(self) -> None:
            await never.wait()

    auth.context.export_service("AuthService", Stuck())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    with pytest.raises(CallTimeoutError, match="auth-plugin") as caught:
        await asyncio.wait_for(proxy.wait(), 5)
    assert "service:AuthService.wait" in str(caught.value)
    assert gate_of(auth).error_count == 1
    assert auth.door.in_flight == 0


def test_a_call_with_wrong_arguments_is_the_callers_mistake(pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'user'"):
        proxy.issue()
    with pytest.raises(TypeError, match="takes 1 positional argument but 2 were given"):
        proxy.issue("ada", "extra")
    assert gate_of(auth).error_count == 0


@asynctest
async def test_async_methods_are_awaited_gated_and_counted(pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    assert inspect.iscoroutinefunction(proxy.issue_later)
    assert await proxy.issue_later("ada") == "v1-async:ada"
    with pytest.raises(LookupError, match="async failure") as caught:
        await proxy.fail_later()
    assert blame(caught.value) == "auth-plugin"
    assert gate_of(auth).error_count == 1
    assert gate_of(auth).in_flight == 0


@asynctest
async def test_an_async_call_is_in_flight_while_it_awaits(pair):
    auth, user = pair
    release = asyncio.Event()

    class Slow:
        async def wait(self) -> str:
            await release.wait()
            return "released"

    auth.context.export_service("AuthService", Slow())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    task = asyncio.create_task(proxy.wait())
    await poll_until(lambda: auth.door.in_flight == 1)
    assert gate_of(auth).in_flight == 1
    assert not await gate_of(auth).drain(0.02)
    release.set()
    assert await task == "released"
    assert auth.door.in_flight == 0


# --------------------------------------------------------------------------- the gate


@pytest.mark.parametrize("style", ["sync", "async"])
def test_a_closed_exporter_refuses_calls(pair, style):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    gate_of(auth).close("it is stopped")
    call = {
        "sync": lambda: proxy.issue("ada"),
        "async": lambda: asyncio.run(proxy.issue_later("ada")),
    }
    with pytest.raises(PluginUnavailableError) as caught:
        call[style]()
    assert str(caught.value) == "plugin 'auth-plugin' is unavailable: it is stopped"
    gate_of(auth).open()
    assert proxy.issue("ada") == "v1:ada"


def test_an_export_of_a_version_not_yet_committed_refuses_until_it_is(plugins):
    auth = plugins("auth-plugin", exports=["AuthService"], committed=False)
    user = plugins("user-plugin", depends_on=["auth-plugin"])
    auth.context.export_service("AuthService", AuthV1())  # as in initialize(): staged
    proxy = user.context.import_service("auth-plugin", "AuthService")
    with pytest.raises(PluginUnavailableError, match="it has not finished initializing"):
        proxy.issue("ada")
    commit(auth)
    assert proxy.issue("ada") == "v1:ada"


def test_a_committed_export_refuses_until_its_door_opens(plugins):
    auth = plugins("auth-plugin", exports=["AuthService"], committed=False)
    user = plugins("user-plugin", depends_on=["auth-plugin"])
    auth.context.export_service("AuthService", AuthV1())
    commit(auth, open_gate=False)  # initialize() committed it; start() opens it
    proxy = user.context.import_service("auth-plugin", "AuthService")
    with pytest.raises(PluginUnavailableError, match="it is not running"):
        proxy.issue("ada")
    gate_of(auth).open(auth.door)
    assert proxy.issue("ada") == "v1:ada"


def test_a_held_exporter_makes_a_sync_caller_wait_for_the_new_version(plugins, pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    gate_of(auth).hold()
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(proxy.issue("ada")))
    caller.start()
    wait_until(lambda: gate_of(auth).waiting == 1)
    assert results == []
    second = plugins.next_version(auth)  # the reload brings in the new version...
    second.context.export_service("AuthService", AuthV2())
    commit(second, auth)  # ...commits it and opens its door
    caller.join(5)
    assert results == ["v2:ada"]
    assert gate_of(auth).in_flight == 0


@asynctest
async def test_a_held_exporter_makes_an_async_caller_wait(pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    gate_of(auth).hold()
    task = asyncio.create_task(proxy.issue_later("ada"))
    await poll_until(lambda: gate_of(auth).waiting == 1)
    assert not task.done()
    gate_of(auth).open()
    assert await asyncio.wait_for(task, 5) == "v1-async:ada"


def test_a_hold_longer_than_the_timeout_refuses_the_caller(plugins):
    auth = plugins("auth-plugin", exports=["AuthService"], hold_timeout=0.05)
    user = plugins("user-plugin", depends_on=["auth-plugin"])
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    gate_of(auth).hold()
    with pytest.raises(PluginUnavailableError, match="plugin reload exceeded queue timeout"):
        proxy.issue("ada")
    assert gate_of(auth).waiting == 0
    assert gate_of(auth).in_flight == 0


@asynctest
async def test_sync_calls_on_other_threads_are_in_flight_on_the_door_and_drained(pair):
    auth, user = pair
    entered, release = threading.Semaphore(0), threading.Event()

    class Blocking:
        def work(self) -> str:
            entered.release()
            release.wait(5)
            return "finished"

    auth.context.export_service("AuthService", Blocking())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    results: list[object] = []
    callers = [threading.Thread(target=lambda: results.append(proxy.work())) for _ in range(2)]
    for caller in callers:
        caller.start()
    for _ in callers:
        assert await asyncio.to_thread(entered.acquire, timeout=5)
    assert auth.door.in_flight == 2
    assert gate_of(auth).in_flight == 2
    assert not await gate_of(auth).drain(0.02)
    release.set()
    assert await gate_of(auth).drain(5.0)
    for caller in callers:
        await asyncio.to_thread(caller.join, 5)
    assert results == ["finished", "finished"]
    assert auth.door.in_flight == 0


@asynctest
async def test_draining_an_old_version_waits_for_its_sync_call_on_another_thread(plugins, pair):
    auth, user = pair
    entered, release = threading.Event(), threading.Event()

    class Blocking(AuthV1):
        def work(self) -> str:
            entered.set()
            release.wait(5)
            return "finished in v1"

    auth.context.export_service("AuthService", Blocking())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(proxy.work()))
    caller.start()
    assert await asyncio.to_thread(entered.wait, 5)

    second = plugins.next_version(auth)
    second.context.export_service("AuthService", AuthV2())
    commit(second, auth)  # v2 is live while v1's call still runs
    assert auth.door.in_flight == 1
    assert second.door.in_flight == 0
    assert proxy.issue("ada") == "v2:ada"
    assert await gate_of(auth).drain(1.0, door=second.door)  # nothing of v2's is running
    assert not await gate_of(auth).drain(0.02, door=auth.door)

    drained = asyncio.create_task(gate_of(auth).drain(5.0, door=auth.door))
    await asyncio.sleep(0)
    assert not drained.done()
    release.set()
    assert await drained
    await asyncio.to_thread(caller.join, 5)
    assert results == ["finished in v1"]
    assert auth.door.in_flight == 0


# --------------------------------------------------------------------------- shapes


def test_a_function_can_be_exported_and_the_proxy_is_callable(plugins):
    tools = plugins("tools", exports=["slugify"])
    user = plugins("user-plugin", depends_on=["tools"])
    tools.context.export_service("slugify", lambda text, *, sep="-": sep.join(text.lower().split()))
    slugify = user.context.import_service("tools", "slugify")
    assert callable(slugify)
    assert slugify("Hello World") == "hello-world"
    assert slugify("Hello World", sep="_") == "hello_world"
    gate_of(tools).close("it is stopped")
    with pytest.raises(PluginUnavailableError, match="it is stopped"):
        slugify("x")


@asynctest
async def test_an_async_function_can_be_exported(plugins):
    tools = plugins("tools", exports=["double"])
    user = plugins("user-plugin", depends_on=["tools"])

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    tools.context.export_service("double", double)
    proxy = user.context.import_service("tools", "double")
    assert await proxy(21) == 42


def test_plain_attributes_are_not_reachable_and_the_proxy_is_read_only(pair):
    auth, user = pair
    service = AuthV1()
    service.issuer = "tether"  # type: ignore[attr-defined]
    auth.context.export_service("AuthService", service)
    proxy = user.context.import_service("auth-plugin", "AuthService")
    for attribute in ("version", "issuer"):  # a class attribute, an instance attribute
        with pytest.raises(AttributeError, match=f"has no attribute '{attribute}'"):
            getattr(proxy, attribute)
    assert proxy.which() == "v1"  # methods still read them, inside the exporter
    with pytest.raises(AttributeError, match="read-only"):
        proxy.issue = lambda user: "forged"
    with pytest.raises(AttributeError, match="read-only"):
        proxy.version = "v9"
    assert proxy.issue("ada") == "v1:ada"
    assert not hasattr(proxy, "__dict__")
    assert not hasattr(proxy, "__wrapped__")
    gate_of(auth).close("it is stopped")
    with pytest.raises(AttributeError, match="has no attribute 'version'"):
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

    auth.context.export_service("AuthService", Shapes())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    assert proxy.positional_only(1) == (1, 2)
    assert proxy.positional_only(1, 3) == (1, 3)
    assert proxy.keyword_only(2, offset=1) == 21
    assert proxy.keyword_only(x=2, scale=3, offset=1) == 7
    assert proxy.variadic(1, 2, 3, flag=True) == (1, (2, 3), {"flag": True})
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'offset'"):
        proxy.keyword_only(2)
    with pytest.raises(TypeError, match=r"positional_only\(\) got"):
        proxy.positional_only(a=1)


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("name, greeting='hello'", id="positional"),
        pytest.param("name, *, greeting='hello'", id="keyword-only"),
        pytest.param("name, greeting='hello', /", id="positional-only"),
    ],
)
def test_default_arguments_of_a_service_method_apply(pair, signature):
    auth, user = pair
    namespace: dict[str, object] = {}
    exec(f"def greet(self, {signature}):\n    return f'{{greeting}}, {{name}}'\n", namespace)
    auth.context.export_service("AuthService", type("Greeter", (), {"greet": namespace["greet"]})())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    assert proxy.greet("ada") == "hello, ada"


def test_release_withdraws_the_exports(pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    assert auth.release() == []
    assert auth.runtime.services.exports_of("auth-plugin") == []
    with pytest.raises(PluginUnavailableError, match="it was unloaded"):
        proxy.issue("ada")


# --------------------------------------------------------------------------- known bugs


def test_re_exporting_a_function_swaps_it_for_importers(plugins):
    tools = plugins("tools", exports=["version"])
    user = plugins("user-plugin", depends_on=["tools"])
    tools.context.export_service("version", lambda: "v1")
    proxy = user.context.import_service("tools", "version")
    tools.context.export_service("version", lambda: "v2")
    assert proxy() == "v2"
    gate_of(tools).close("it is stopped")
    with pytest.raises(PluginUnavailableError):
        proxy()


# The names the old wrappers used, and those the seam's generated entry functions use.
GENERATED_NAMES = ["record", "cell", "gate", "d", "result", "exc", "first", "t0", "k", "task"]


@pytest.mark.parametrize("style", ["sync", "async"])
@pytest.mark.parametrize("parameter", GENERATED_NAMES)
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
    auth.context.export_service("AuthService", service)
    proxy = user.context.import_service("auth-plugin", "AuthService")

    def call(value: str) -> object:
        result = proxy.save(value)
        return asyncio.run(result) if style == "async" else result

    assert call("good") == "good"
    with pytest.raises(ValueError, match="bad value"):
        call("bad")
    assert gate_of(auth).error_count == 1


@pytest.mark.parametrize("parameter", GENERATED_NAMES)
def test_a_parameter_named_like_the_seams_names_keeps_its_name(pair, parameter):
    auth, user = pair
    namespace: dict[str, object] = {}
    exec(f"def save(self, {parameter}):\n    return {parameter}\n", namespace)
    auth.context.export_service("AuthService", type("Store", (), {"save": namespace["save"]})())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    assert list(inspect.signature(proxy.save).parameters) == [parameter]
    assert proxy.save(**{parameter: "by name"}) == "by name"


def test_refused_calls_are_not_counted_as_the_exporters_errors(pair):
    auth, user = pair
    auth.context.export_service("AuthService", AuthV1())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    gate_of(auth).close("it is stopped")
    with pytest.raises(PluginUnavailableError):
        asyncio.run(proxy.issue_later("ada"))
    assert gate_of(auth).error_count == 0
    with pytest.raises(PluginUnavailableError):
        proxy.issue("ada")
    assert gate_of(auth).error_count == 0


def test_properties_are_never_read_and_not_reachable(pair):
    auth, user = pair

    class Connection:
        reads = 0

        @property
        def status(self) -> str:
            Connection.reads += 1
            raise RuntimeError("not connected yet")

        def ping(self) -> str:
            return "pong"

    auth.context.export_service("AuthService", Connection())
    proxy = user.context.import_service("auth-plugin", "AuthService")
    assert proxy.ping() == "pong"
    with pytest.raises(AttributeError, match="has no attribute 'status'"):
        _ = proxy.status
    assert Connection.reads == 0


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
    assert not hasattr(example_auth_proxy, "__dict__")


def test_an_importer_cannot_call_the_exporters_lifecycle(example_auth_proxy):
    exposed = {"initialize", "start", "stop", "cleanup", "on_config_change"}
    assert not [name for name in exposed if hasattr(example_auth_proxy, name)]
    assert exposed.isdisjoint(dir(example_auth_proxy))
