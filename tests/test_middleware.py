"""The middleware registry: ordering, route globs, names, removal, staging until a version
is committed, and running the chain through each plugin's door with errors counted only
against the innermost plugin they left."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable

import pytest

from tether import blame
from tether._context import PluginScope
from tether._gate import Gate
from tether._runtime import Runtime
from tether.errors import MiddlewareError, PluginUnavailableError
from tether.testing import make_scope


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


async def poll_until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.001)


class BoomError(Exception):
    pass


class Registry:
    """A runtime's middleware registry, one committed and open plugin scope per plugin
    name on that runtime, and a log of what ran."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.registry = runtime.middleware
        self.scopes: dict[str, PluginScope] = {}
        self.log: list[str] = []

    def scope(self, plugin: str) -> PluginScope:
        if plugin not in self.scopes:
            self.scopes[plugin] = make_scope(plugin, runtime=self.runtime)
        return self.scopes[plugin]

    def gate(self, plugin: str) -> Gate:
        return self.scope(plugin).door.gate

    @property
    def gates(self) -> dict[str, Gate]:
        return {plugin: scope.door.gate for plugin, scope in self.scopes.items()}

    def tracer(self, label: str, *, style: str = "async"):
        """A middleware that logs around ``call_next``."""
        log = self.log
        if style == "async":

            async def handler(request, call_next):
                log.append(f"{label}>")
                response = await call_next(request)
                log.append(f"<{label}")
                return response
        else:

            def handler(request, call_next):  # sync: returns call_next's awaitable
                log.append(label)
                return call_next(request)

        return handler

    def add(self, plugin: str, name: str, handler=None, priority: int = 100, routes=None):
        handler = handler or self.tracer(name)
        return self.registry.register(self.scope(plugin).door, name, handler, priority, routes)

    def names(self, route: str) -> list[str]:
        return [m.name for m in self.registry.chain(route)]

    async def endpoint(self, request):
        self.log.append("endpoint")
        return f"response to {request}"

    def run(self, route: str, request: object = "req", endpoint=None):
        return asyncio.run(self.registry.run(route, request, endpoint or self.endpoint))


def next_version(scope: PluginScope, version: str = "2.0.0") -> PluginScope:
    """A staged second version of ``scope``'s plugin, on the same gate (a reload)."""
    return PluginScope(
        manifest=scope.manifest.model_copy(update={"version": version}),
        config={},
        permissions=frozenset(),
        runtime=scope.runtime,
        door=scope.door.gate.add_door(version),
    )


def commit(old: PluginScope, new: PluginScope) -> None:
    """What ``PluginSlot.commit`` does; then the manager opens the new version's door."""
    old.door.committed = False
    new.door.committed = True
    new.runtime.version_committed(old, new)
    new.door.gate.open(new.door)


@pytest.fixture
def reg(tmp_path):
    return Registry(Runtime(state_directory=tmp_path / "state"))


# --------------------------------------------------------------------------- registering


def test_higher_priority_runs_first_and_ties_keep_registration_order(reg):
    reg.add("a", "low", priority=10)
    reg.add("b", "first-tie", priority=50)
    reg.add("a", "high", priority=90)
    reg.add("c", "second-tie", priority=50)
    assert reg.names("/x") == ["high", "first-tie", "second-tie", "low"]
    assert reg.run("/x") == "response to req"
    assert reg.log == [
        "high>",
        "first-tie>",
        "second-tie>",
        "low>",
        "endpoint",
        "<low",
        "<second-tie",
        "<first-tie",
        "<high",
    ]


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        pytest.param("/admin/users", ["everywhere", "admin", "admin-or-api"], id="admin-page"),
        pytest.param("/api/v1/items", ["everywhere", "admin-or-api"], id="nested-api"),
        pytest.param("/admin", ["everywhere"], id="admin-root-not-matched-by-slash-star"),
        pytest.param("/home", ["everywhere"], id="other"),
    ],
)
def test_routes_are_globs_and_none_means_every_route(reg, route, expected):
    reg.add("p", "everywhere", priority=300)
    reg.add("p", "admin", priority=200, routes=["/admin/*"])
    reg.add("p", "admin-or-api", priority=100, routes=["/admin/*", "/api/*"])
    assert reg.names(route) == expected


def test_a_route_glob_must_start_with_a_slash(reg):
    with pytest.raises(MiddlewareError, match=r"route 'admin/\*' must start with '/'"):
        reg.add("p", "bad", routes=["admin/*"])
    assert reg.registry.all() == ()


def test_names_are_unique_per_plugin(reg):
    reg.add("auth-plugin", "auth")
    with pytest.raises(
        MiddlewareError, match="middleware 'auth' is already registered by plugin 'auth-plugin'"
    ):
        reg.add("auth-plugin", "auth")
    reg.add("other-plugin", "auth")  # another plugin may use the same name
    assert [(m.plugin, m.name) for m in reg.registry.all()] == [
        ("auth-plugin", "auth"),
        ("other-plugin", "auth"),
    ]


@pytest.mark.parametrize(
    ("name", "handler", "match"),
    [
        pytest.param("", lambda r, n: n(r), "needs a name", id="no-name"),
        pytest.param("x", "not callable", "is not callable", id="not-callable"),
    ],
)
def test_invalid_registrations_are_refused(reg, name, handler, match):
    with pytest.raises(MiddlewareError, match=match):
        reg.registry.register(reg.scope("p").door, name, handler)


def test_unregister_removes_one_and_an_unknown_name_lists_the_registered_ones(reg):
    reg.add("p", "auth")
    reg.add("p", "cors")
    assert reg.names("/x") == ["auth", "cors"]
    door = reg.scope("p").door
    reg.registry.unregister(door, "auth")
    assert reg.names("/x") == ["cors"]
    with pytest.raises(
        MiddlewareError, match="plugin 'p' has no middleware named 'auth'"
    ) as caught:
        reg.registry.unregister(door, "auth")
    assert caught.value.hint == "registered: cors"
    with pytest.raises(
        MiddlewareError, match="plugin 'nobody' has no middleware named 'x'"
    ) as caught:
        reg.registry.unregister(reg.scope("nobody").door, "x")
    assert caught.value.hint == "registered: none"


def test_remove_plugin_removes_all_of_its_middleware(reg):
    reg.add("a", "one")
    reg.add("b", "two")
    reg.add("a", "three")
    assert reg.names("/x") == ["one", "two", "three"]  # cached chain
    assert reg.registry.remove_plugin("a") == 2
    assert reg.names("/x") == ["two"]
    assert reg.registry.remove_plugin("a") == 0
    assert reg.registry.remove_door(reg.scope("b").door) == 1
    assert reg.names("/x") == []


# --------------------------------------------------------------------------- running


def test_no_middleware_calls_the_endpoint_directly(reg):
    assert reg.run("/x") == "response to req"
    assert reg.log == ["endpoint"]


def test_sync_and_async_handlers_mix(reg):
    reg.add("a", "async-one", reg.tracer("async-one"), priority=3)
    reg.add("b", "sync-one", reg.tracer("sync-one", style="sync"), priority=2)
    reg.add("c", "async-two", reg.tracer("async-two"), priority=1)
    assert reg.run("/x") == "response to req"
    assert reg.log == [
        "async-one>",
        "sync-one",
        "async-two>",
        "endpoint",
        "<async-two",
        "<async-one",
    ]


def test_a_middleware_can_change_the_request_and_the_response(reg):
    async def tag(request, call_next):
        return (await call_next(request + "+tagged")).upper()

    def short_circuit(request, call_next):
        return "blocked" if "evil" in request else call_next(request)

    reg.add("a", "tag", tag, priority=2)
    reg.add("b", "guard", short_circuit, priority=1)
    assert reg.run("/x", "req") == "RESPONSE TO REQ+TAGGED"
    assert reg.run("/x", "evil") == "BLOCKED"
    assert reg.log == ["endpoint"]


def test_middleware_of_a_closed_plugin_is_skipped(reg):
    reg.add("a", "kept", priority=2)
    reg.add("b", "skipped", priority=1)
    reg.gate("b").close("it is stopped")
    assert reg.run("/x") == "response to req"
    assert reg.log == ["kept>", "endpoint", "<kept"]
    reg.gate("b").open()
    reg.log.clear()
    reg.run("/x")
    assert reg.log == ["kept>", "skipped>", "endpoint", "<skipped", "<kept"]


@asynctest
async def test_a_held_plugin_makes_the_request_wait(reg):
    reg.add("a", "held")
    gate = reg.gate("a")
    gate.hold()
    task = asyncio.create_task(reg.registry.run("/x", "req", reg.endpoint))
    await poll_until(lambda: gate.waiting == 1)
    assert not task.done()
    assert reg.log == []
    gate.open()
    assert await asyncio.wait_for(task, 5) == "response to req"
    assert reg.log == ["held>", "endpoint", "<held"]


@asynctest
async def test_calls_are_in_flight_at_the_gate_while_the_middleware_runs(reg):
    seen: list[int] = []

    async def watch(request, call_next):
        seen.append(reg.scope("a").door.in_flight)
        return await call_next(request)

    reg.add("a", "watch", watch)
    await reg.registry.run("/x", "req", reg.endpoint)
    assert seen == [1]
    assert reg.gate("a").in_flight == 0


# --------------------------------------------------------------------------- errors


def test_an_error_is_counted_against_the_middleware_that_raised_it(reg):
    async def broken(request, call_next):
        raise BoomError("broken middleware")

    reg.add("outer", "outer", priority=3)
    reg.add("raiser", "broken", broken, priority=2)
    reg.add("inner", "inner", priority=1)
    with pytest.raises(BoomError, match="broken middleware") as caught:
        reg.run("/x")
    assert blame(caught.value) == "raiser"
    assert {p: g.error_count for p, g in reg.gates.items()} == {
        "outer": 0,
        "raiser": 1,
        "inner": 0,
    }
    assert reg.gates["raiser"].last_error is not None
    assert all(g.in_flight == 0 for g in reg.gates.values())


def test_a_sync_middleware_that_raises_is_counted(reg):
    def broken(request, call_next):
        raise BoomError("sync failure")

    reg.add("outer", "outer", priority=2)
    reg.add("raiser", "broken", broken, priority=1)
    with pytest.raises(BoomError):
        reg.run("/x")
    assert reg.gates["raiser"].error_count == 1
    assert reg.gates["outer"].error_count == 0


def test_an_endpoint_error_is_counted_against_no_middleware(reg):
    async def failing_endpoint(request):
        raise BoomError("endpoint failure")

    reg.add("a", "outer", priority=2)
    reg.add("b", "inner", priority=1)
    with pytest.raises(BoomError, match="endpoint failure"):
        reg.run("/x", endpoint=failing_endpoint)
    assert [g.error_count for g in reg.gates.values()] == [0, 0]
    assert all(g.in_flight == 0 for g in reg.gates.values())


def test_a_refusal_by_the_routes_closed_plugin_is_not_the_middlewares_error(reg):
    reg.add("auth-plugin", "auth")
    shop = reg.scope("shop-plugin")

    async def handler(request):
        return "bought"

    route = shop.entry(handler, "route:GET /x")  # how tether serve makes a route's endpoint
    assert reg.run("/x", endpoint=route.acall) == "bought"
    shop.door.gate.close("it is stopped")
    with pytest.raises(PluginUnavailableError, match="'shop-plugin' is unavailable") as caught:
        reg.run("/x", endpoint=route.acall)
    assert blame(caught.value) == "shop-plugin"
    assert reg.gates["auth-plugin"].error_count == 0
    assert reg.gates["shop-plugin"].error_count == 0


def test_an_error_passed_up_from_further_down_is_counted_once(reg):
    async def innermost(request, call_next):
        raise BoomError("deep")

    async def reraise(request, call_next):
        try:
            return await call_next(request)
        except BoomError:
            reg.log.append("saw it")
            raise

    reg.add("a", "reraise", reraise, priority=2)
    reg.add("b", "innermost", innermost, priority=1)
    with pytest.raises(BoomError, match="deep") as caught:
        reg.run("/x")
    assert blame(caught.value) == "b"
    assert reg.log == ["saw it"]
    assert reg.gates["a"].error_count == 0
    assert reg.gates["b"].error_count == 1


def test_an_error_translated_by_a_middleware_is_that_middlewares_own(reg):
    async def translate(request, call_next):
        try:
            return await call_next(request)
        except BoomError as exc:
            raise RuntimeError("translated") from exc

    async def failing_endpoint(request):
        raise BoomError("endpoint failure")

    reg.add("a", "translate", translate)
    with pytest.raises(RuntimeError, match="translated"):
        reg.run("/x", endpoint=failing_endpoint)
    assert reg.gates["a"].error_count == 1


def test_a_middleware_that_handles_an_error_is_not_counted(reg):
    async def rescue(request, call_next):
        try:
            return await call_next(request)
        except BoomError:
            return "fallback"

    async def broken(request, call_next):
        raise BoomError("inner")

    reg.add("a", "rescue", rescue, priority=2)
    reg.add("b", "broken", broken, priority=1)
    assert reg.run("/x") == "fallback"
    assert reg.gates["a"].error_count == 0
    assert reg.gates["b"].error_count == 1


# --------------------------------------------------------------------------- versions


def test_middleware_of_an_uncommitted_version_do_not_run_until_it_is_committed(reg):
    reg.add("a", "live")
    staged = make_scope("b", runtime=reg.runtime, committed=False)
    reg.registry.register(staged.door, "staged", reg.tracer("staged"), priority=200)
    assert reg.names("/x") == ["live"]
    assert [m.name for m in reg.registry.all()] == ["live"]
    reg.run("/x")
    assert reg.log == ["live>", "endpoint", "<live"]

    staged.door.committed = True
    assert reg.names("/x") == ["live"]  # nothing changes until the registry hears of it
    reg.registry.refresh()
    assert reg.names("/x") == ["staged", "live"]
    staged.door.gate.open(staged.door)
    reg.log.clear()
    reg.run("/x")
    assert reg.log == ["staged>", "live>", "endpoint", "<live", "<staged"]


def test_a_chain_built_before_a_new_version_runs_the_live_versions_middleware(reg):
    old = reg.scope("auth-plugin")
    reg.add("auth-plugin", "auth")
    reg.add("auth-plugin", "audit")
    runner = reg.registry.runner("/x", reg.endpoint)  # built once, kept by the host

    new = next_version(old)
    reg.registry.register(new.door, "auth", reg.tracer("auth v2"))  # v2 has no "audit"
    assert reg.names("/x") == ["auth", "audit"]  # v2 is staged
    commit(old, new)

    assert asyncio.run(runner("req")) == "response to req"
    assert reg.log == ["auth v2>", "endpoint", "<auth v2"]
    reg.log.clear()
    assert reg.names("/x") == ["auth"]  # a chain built now has v2's alone
    reg.run("/x")
    assert reg.log == ["auth v2>", "endpoint", "<auth v2"]


# --------------------------------------------------------------------------- through the context


def test_the_context_registers_middleware_and_release_removes_it(tmp_path):
    scope = make_scope("auth-plugin", state_directory=tmp_path)
    ctx = scope.context
    middleware = scope.runtime.middleware
    item = ctx.register_middleware("auth", lambda r, n: n(r), priority=200, routes=["/admin/*"])
    assert (item.plugin, item.name, item.priority, item.routes) == (
        "auth-plugin",
        "auth",
        200,
        ("/admin/*",),
    )
    assert item.applies_to("/admin/users")
    assert not item.applies_to("/home")
    for host_side in ("door", "gate", "entry", "handler"):  # a sealed view: none of these
        assert not hasattr(item, host_side)
    (registered,) = middleware.all()
    assert registered.door is scope.door
    ctx.register_middleware("cors", lambda r, n: n(r))
    ctx.unregister_middleware("cors")
    assert [m.name for m in middleware.all()] == ["auth"]
    assert scope.release() == []
    assert middleware.all() == ()


def test_two_plugins_on_one_runtime_share_the_chain(tmp_path):
    first = make_scope("first", state_directory=tmp_path)
    runtime = first.runtime
    second = make_scope("second", runtime=runtime)
    first.context.register_middleware("m", lambda r, n: n(r), priority=1)
    second.context.register_middleware("m", lambda r, n: n(r), priority=2)
    assert [m.plugin for m in runtime.middleware.chain("/")] == ["second", "first"]
    second.release()
    assert [m.plugin for m in runtime.middleware.chain("/")] == ["first"]


# --------------------------------------------------------------------------- known bugs


def test_the_same_exception_object_raised_in_two_requests_is_counted_twice(reg):
    denied = BoomError("denied")  # a prepared error, raised on every refusal

    async def guard(request, call_next):
        raise denied

    reg.add("a", "guard", guard)
    for _ in range(2):
        with pytest.raises(BoomError):
            reg.run("/x")
    assert reg.gates["a"].error_count == 2


def test_a_request_held_past_the_timeout_fails_instead_of_skipping_the_middleware(reg):
    async def auth(request, call_next):
        return "denied"

    reg.add("auth-plugin", "auth", auth)
    gate = reg.gate("auth-plugin")
    gate.hold_timeout = 0.02
    gate.hold()
    with pytest.raises(
        PluginUnavailableError, match="request timeout: plugin reload exceeded queue timeout"
    ):
        reg.run("/admin/users")
    assert reg.log == []  # the endpoint never ran without its auth middleware
