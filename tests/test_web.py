"""The web host against a real uvicorn server on loopback, talked to with httpx.

Each test writes small plugins into tmp_path, serves them with
``tether.hosts.web.testing.LiveServer`` (uvicorn in a thread, a free port) and checks
what an HTTP client sees: routes, conflicts, middleware, hooks, errors, gates, unload
and shutdown.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

import tether
from helpers import PluginWriter
from tether import PluginScope, Runtime
from tether.cli import cli
from tether.errors import PluginLifecycleError
from tether.hosts.web import (
    PluginRouter,
    RequestContext,
    RouteConflictError,
    WebApp,
    bind_socket,
    error_body,
)
from tether.hosts.web.testing import LiveServer
from tether.observability import observe
from tether.testing import make_scope

ROUTER = {"router": True}


# --------------------------------------------------------------------------- helpers


def write_config(tmp_path: Path, *plugins: Path, **configs: dict[str, object]) -> Path:
    entries = []
    for directory in plugins:
        entry: dict[str, object] = {"path": str(directory)}
        name = directory.name.rsplit("-", 1)[0]
        if name in configs:
            entry["config"] = configs[name]
        entries.append(entry)
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump({"plugins": {"plugins": entries}}), encoding="utf-8")
    return path


@pytest.fixture
def plugin(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start a LiveServer for some plugin directories; stopped at the end of the test."""
    started: list[LiveServer] = []

    def start(*plugins: Path, **configs: dict[str, object]) -> LiveServer:
        config = write_config(tmp_path, *plugins, **configs)
        server = LiveServer(config, state_directory=tmp_path / "state").start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.server.manager.list_plugins():
            server.stop()


@pytest.fixture
def client() -> Iterator[Callable[[LiveServer], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(server: LiveServer) -> httpx.Client:
        made = httpx.Client(base_url=server.url, timeout=30)
        clients.append(made)
        return made

    yield make
    for made in clients:
        made.close()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll until ``condition()`` holds (things that happen after a response is sent)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def is_error(response: httpx.Response, status: int, error: str, plugin: str | None) -> bool:
    body = response.json()
    return (
        response.status_code == status
        and set(body) == {"error", "message", "plugin", "hint"}
        and body["error"] == error
        and body["plugin"] == plugin
    )


GREETER = """
    import tether
    from starlette.responses import PlainTextResponse

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            router = ctx.router
            router.get("/hello", self.hello)
            router.post("/echo", self.echo)
            items = router.group("/api").group("/items")
            items.put("/{id:int}", self.change)
            items.patch("/{id:int}", self.change)
            items.delete("/{id:int}", self.remove)
            router.get("/sync", self.sync)
            router.get("/text", lambda request: "plain text")

        async def hello(self, request):
            return {"hello": "world"}

        async def echo(self, request):
            return PlainTextResponse(await request.body(), status_code=201)

        async def change(self, request):
            return {"id": request.path_params["id"], "method": request.method}

        async def remove(self, request):
            return None

        def sync(self, request):
            import threading
            return {"thread": threading.current_thread().name}
"""


# --------------------------------------------------------------------------- routes


def test_plugin_routes_answer_every_method(plugin, serve, client):
    server = serve(plugin("greeter", GREETER, permissions=ROUTER))
    http = client(server)
    assert http.get("/hello").json() == {"hello": "world"}
    echoed = http.post("/echo", content=b"ping")
    assert (echoed.status_code, echoed.text) == (201, "ping")
    assert http.put("/api/items/7").json() == {"id": 7, "method": "PUT"}
    assert http.patch("/api/items/8").json() == {"id": 8, "method": "PATCH"}
    assert http.delete("/api/items/9").status_code == 204
    assert http.get("/text").text == "plain text"
    assert http.head("/hello").status_code == 200
    sync = http.get("/sync").json()["thread"]
    assert sync != "tether-live-server"  # plain functions run in a worker thread
    listed = [(r.method, r.path, r.plugin) for r in server.app.routes()]
    assert ("PUT", "/api/items/{id:int}", "greeter") in listed


def test_unknown_paths_and_methods_answer_in_the_error_shape(plugin, serve, client):
    http = client(serve(plugin("greeter", GREETER, permissions=ROUTER)))
    missing = http.get("/nowhere")
    assert is_error(missing, 404, "NotFound", None)
    assert missing.json()["message"] == "no route for GET /nowhere"
    wrong = http.post("/hello")
    assert is_error(wrong, 405, "MethodNotAllowed", None)
    assert wrong.headers["allow"] == "GET, HEAD"
    assert http.get("/api/items/not-a-number").status_code == 404  # the int convertor


def test_reserved_paths_are_the_hosts(plugin, serve, client):
    http = client(serve(plugin("greeter", GREETER, permissions=ROUTER)))
    for path in ("/healthz", "/readyz", "/metrics", "/admin/plugins"):
        response = http.get(path)
        assert response.status_code != 405, path  # the host's app answers, not a plugin
        assert "no route for" not in response.text


# --------------------------------------------------------------------------- conflicts


def initialize(config: Path) -> None:
    """Load and initialize a config's plugins behind a WebApp (no server)."""

    async def run() -> None:
        manager = tether.PluginManager(config=tether.load_config(config))
        WebApp(manager)
        try:
            await manager.load_plugins_from_config()
            await manager.initialize_all()
        finally:
            await manager.aclose()

    asyncio.run(run())


ROUTE_AT = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            for method, path in ctx.plugin_config["routes"]:
                getattr(ctx.router, method)(path, self.handle)

        async def handle(self, request):
            return {"plugin": self.__module__}
"""
ROUTES_SCHEMA = {"routes": {"type": "array", "default": []}}


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        pytest.param(
            [["get", "/x"]],
            [["get", "/x"]],
            "route GET /x of plugin 'second' conflicts with plugin 'first', which already "
            "serves it",
            id="same-path",
        ),
        pytest.param(
            [["post", "/items/{id}"]],
            [["post", "/items/{name}"]],
            "route POST /items/{name} of plugin 'second' conflicts with plugin 'first', "
            "which already serves it (as /items/{id})",
            id="same-shape",
        ),
        pytest.param(
            [],
            [["get", "/healthz"]],
            "route GET /healthz of plugin 'second' conflicts with the host: /healthz is "
            "served by tether's web host itself",
            id="host-health",
        ),
        pytest.param(
            [],
            [["delete", "/admin/plugins/x"]],
            "route DELETE /admin/plugins/x of plugin 'second' conflicts with the host",
            id="host-admin",
        ),
        pytest.param(
            [],
            [["get", "/y"], ["get", "/y"]],
            "plugin 'second' registered route GET /y twice",
            id="twice",
        ),
    ],
)
def test_taken_routes_are_refused_naming_both(tmp_path, plugin, first, second, message):
    a = plugin("first", ROUTE_AT, permissions=ROUTER, config=ROUTES_SCHEMA)
    b = plugin(
        "second",
        ROUTE_AT,
        permissions=ROUTER,
        config=ROUTES_SCHEMA,
        dependencies=[{"name": "first"}],
    )
    config = write_config(tmp_path, a, b, first={"routes": first}, second={"routes": second})
    with pytest.raises(PluginLifecycleError) as caught:
        initialize(config)
    assert isinstance(caught.value.__cause__, RouteConflictError)
    assert message in str(caught.value)


def test_different_methods_share_a_path(tmp_path, plugin, serve, client):
    a = plugin("first", ROUTE_AT, permissions=ROUTER, config=ROUTES_SCHEMA)
    b = plugin("second", ROUTE_AT, permissions=ROUTER, config=ROUTES_SCHEMA)
    server = serve(
        a, b, first={"routes": [["get", "/x/{id}"]]}, second={"routes": [["post", "/x/{n}"]]}
    )
    http = client(server)
    assert "first" in http.get("/x/1").json()["plugin"]
    assert "second" in http.post("/x/1").json()["plugin"]


def test_serve_reports_a_conflict_and_exits_1(tmp_path, plugin):
    a = plugin("first", ROUTE_AT, permissions=ROUTER, config=ROUTES_SCHEMA)
    b = plugin("second", ROUTE_AT, permissions=ROUTER, config=ROUTES_SCHEMA,
               dependencies=[{"name": "first"}])  # fmt: skip
    config = write_config(
        tmp_path, a, b, first={"routes": [["get", "/x"]]}, second={"routes": [["get", "/x"]]}
    )
    result = CliRunner().invoke(cli, ["serve", "--config", str(config), "--port", "0"])
    assert result.exit_code == 1
    assert "Error: plugin initialization failed: plugin 'second'" in result.output
    assert "conflicts with plugin 'first'" in result.output


def test_serve_reports_a_port_in_use(tmp_path, plugin):
    config = write_config(tmp_path, plugin("greeter", GREETER, permissions=ROUTER))
    with bind_socket("127.0.0.1", 0) as taken:
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(cli, ["serve", "--config", str(config), "--port", port])
    assert result.exit_code == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.output
    assert "Hint: pick another --port" in result.output


def test_a_plugin_without_the_router_permission_is_refused(tmp_path, plugin):
    directory = plugin("sneaky", ROUTE_AT, config=ROUTES_SCHEMA)
    config = write_config(tmp_path, directory, sneaky={"routes": [["get", "/x"]]})
    with pytest.raises(PluginLifecycleError, match="router"):
        initialize(config)


# --------------------------------------------------------------------------- middleware

MIDDLEWARE = """
    import tether
    from tether.hosts.web import RequestContext

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            settings = ctx.plugin_config
            self.label = ctx.name
            handler = self.sync_wrap if settings["sync"] else self.wrap
            ctx.register_middleware("trace", handler, settings["priority"], settings["routes"])

        async def wrap(self, request, call_next):
            RequestContext.of(request).data.setdefault("middleware", []).append(self.label)
            response = await call_next(request)
            response.headers.append("x-through", self.label)
            return response

        def sync_wrap(self, request, call_next):
            RequestContext.of(request).data.setdefault("middleware", []).append(self.label)
            return call_next(request)
"""
MIDDLEWARE_SCHEMA = {
    "priority": {"type": "integer", "default": 100},
    "routes": {"type": "array", "default": []},
    "sync": {"type": "boolean", "default": False},
}
TRACE_ROUTES = """
    import tether
    from tether.hosts.web import RequestContext

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            for path in ("/api/items", "/plain", "/elsewhere"):
                ctx.router.get(path, self.trace)

        async def trace(self, request):
            return {"middleware": RequestContext.of(request).data.get("middleware", [])}
"""


def test_middleware_runs_in_priority_order_on_matching_routes(plugin, serve, client):
    server = serve(
        plugin("routes", TRACE_ROUTES, permissions=ROUTER),
        plugin("outer", MIDDLEWARE, config=MIDDLEWARE_SCHEMA),
        plugin("inner", MIDDLEWARE, config=MIDDLEWARE_SCHEMA),
        plugin("middle", MIDDLEWARE, config=MIDDLEWARE_SCHEMA),
        outer={"priority": 300},
        inner={"priority": 100, "routes": ["/api/*"], "sync": True},
        middle={"priority": 200, "routes": ["/elsewhere", "/api/items"]},
    )
    http = client(server)
    api = http.get("/api/items")
    assert api.json() == {"middleware": ["outer", "middle", "inner"]}
    assert api.headers.get_list("x-through") == ["middle", "outer"]  # inner ones first
    assert http.get("/plain").json() == {"middleware": ["outer"]}
    assert http.get("/elsewhere").json() == {"middleware": ["outer", "middle"]}


# --------------------------------------------------------------------------- hooks

HOOKS = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            self.seen = []
            self.label = ctx.name
            priority = ctx.plugin_config["priority"]
            for hook in ("pre_request", "post_request", "pre_response"):
                ctx.register_hook(hook, priority, self.mark(hook))
            ctx.register_hook("post_response", priority, self.finish)
            if ctx.plugin_config["routes"]:
                ctx.router.get("/traced", self.traced)
                ctx.router.get("/guarded", self.traced)

        def mark(self, hook):
            def handler(ctx):
                ctx.data.setdefault("trace", []).append(f"{self.label}:{hook}")
                if hook == "pre_request" and ctx.path == "/guarded" and self.label == "first":
                    ctx.refuse(401, "Unauthorized", "no entry", plugin=self.label, hint="ask")
                if hook == "pre_response":
                    ctx.response.headers[f"x-{self.label}"] = ",".join(ctx.data["trace"])
            return handler

        async def finish(self, ctx):  # an async hook
            trace = [*ctx.data["trace"], f"{self.label}:post_response"]
            ctx.data["trace"] = trace
            self.seen.append((ctx.path, ctx.status_code, ctx.route, list(trace)))

        async def traced(self, request):
            from tether.hosts.web import RequestContext
            context = RequestContext.of(request)
            context.data["trace"].append("handler")
            return {"trace": context.data["trace"]}
"""
HOOKS_SCHEMA = {
    "priority": {"type": "integer", "default": 100},
    "routes": {"type": "boolean", "default": False},
}


def test_request_hooks_run_in_order_and_share_per_request_data(plugin, serve, client):
    server = serve(
        plugin("first", HOOKS, config=HOOKS_SCHEMA),
        plugin("second", HOOKS, config=HOOKS_SCHEMA, permissions=ROUTER),
        first={"priority": 300},
        second={"priority": 100, "routes": True},
    )
    http = client(server)
    responses = [http.get("/traced"), http.get("/traced")]
    before_handler = ["first:pre_request", "second:pre_request", "handler"]
    for response in responses:  # the second request starts with empty data
        assert response.json() == {"trace": before_handler}
        assert response.headers["x-second"] == ",".join(
            [*before_handler, "first:post_request", "second:post_request",
             "first:pre_response", "second:pre_response"]
        )  # fmt: skip
    second = server.manager.get_plugin("second")
    wait_for(lambda: len(second.seen) == 2, "the post_response hooks")
    path, status, route, trace = second.seen[0]
    assert (path, status, route) == ("/traced", 200, "/traced")
    assert trace[-2:] == ["first:post_response", "second:post_response"]


def test_a_pre_request_hook_can_answer_the_request(plugin, serve, client):
    server = serve(
        plugin("first", HOOKS, config=HOOKS_SCHEMA),
        plugin("second", HOOKS, config=HOOKS_SCHEMA, permissions=ROUTER),
        first={"priority": 300},
        second={"priority": 100, "routes": True},
    )
    refused = client(server).get("/guarded")
    assert is_error(refused, 401, "Unauthorized", "first")
    assert refused.json() == error_body("Unauthorized", "no entry", plugin="first", hint="ask")
    # later pre_request hooks still ran, the handler and post_request did not
    assert refused.headers["x-second"] == (
        "first:pre_request,second:pre_request,first:pre_response,second:pre_response"
    )
    second = server.manager.get_plugin("second")
    wait_for(lambda: second.seen, "the post_response hooks")
    assert second.seen[0][:3] == ("/guarded", 401, "/guarded")


def test_hooks_see_requests_that_match_no_route(plugin, serve, client):
    server = serve(plugin("first", HOOKS, config=HOOKS_SCHEMA))
    assert client(server).get("/nothing-here").status_code == 404
    first = server.manager.get_plugin("first")
    wait_for(lambda: first.seen, "the post_response hook")
    assert first.seen[0][:3] == ("/nothing-here", 404, None)


# --------------------------------------------------------------------------- errors

FAULTY = """
    import tether
    from starlette.exceptions import HTTPException

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            router = ctx.router
            router.get("/boom", self.boom)
            router.get("/teapot", self.teapot)
            router.get("/bad-gateway", self.bad_gateway)
            router.get("/bad-return", self.bad_return)
            router.get("/fine", self.fine)
            router.get("/mw-boom", self.fine)

        async def boom(self, request):
            raise ValueError("boom")

        async def teapot(self, request):
            raise HTTPException(418, "short and stout")

        async def bad_gateway(self, request):
            raise HTTPException(502, "upstream down")

        async def bad_return(self, request):
            return 42

        async def fine(self, request):
            return {"fine": True}
"""
BAD_HOOK = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            ctx.register_hook("pre_request", 100, self.check)

        def check(self, ctx):
            if ctx.path == "/hook-boom":
                raise RuntimeError("hook exploded")
"""
BAD_MIDDLEWARE = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            ctx.register_middleware("explode", self.explode, 100, ["/mw-boom"])

        async def explode(self, request, call_next):
            raise KeyError("middleware exploded")
"""
WATCHER = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            self.errors = []
            ctx.register_hook("error", 100, self.saw)

        def saw(self, ctx):
            self.errors.append((ctx.path, type(ctx.error).__name__, ctx.error_plugin))
"""


@pytest.fixture
def faulty(plugin, serve):
    return serve(
        plugin("faulty", FAULTY, permissions=ROUTER),
        plugin("bad-hook", BAD_HOOK),
        plugin("bad-mw", BAD_MIDDLEWARE),
        plugin("watcher", WATCHER),
    )


@pytest.mark.parametrize(
    ("path", "status", "error", "plugin_name", "message"),
    [
        pytest.param("/boom", 500, "ValueError", "faulty", "boom", id="handler"),
        pytest.param("/hook-boom", 500, "RuntimeError", "bad-hook", "hook exploded", id="hook"),
        pytest.param(
            "/mw-boom", 500, "KeyError", "bad-mw", "'middleware exploded'", id="middleware"
        ),
        pytest.param(
            "/bad-return",
            500,
            "TypeError",
            "faulty",
            "route GET /bad-return of plugin 'faulty' returned int; return a starlette "
            "Response, a dict or list (sent as JSON), a str (text), bytes, or None (204 No "
            "Content)",
            id="return-value",
        ),
        pytest.param("/teapot", 418, "HTTPException", "faulty", "short and stout", id="http"),
    ],
)
def test_a_failure_answers_that_request_only(
    faulty, client, path, status, error, plugin_name, message
):
    http = client(faulty)
    failed = http.get(path)
    assert is_error(failed, status, error, plugin_name)
    assert failed.json()["message"] == message
    assert http.get("/fine").json() == {"fine": True}  # the next request is served
    watcher = faulty.manager.get_plugin("watcher")
    assert watcher.errors == [(path, error, plugin_name)]


def test_failures_count_against_the_plugin_that_raised(faulty, client):
    http = client(faulty)
    for path in ("/boom", "/boom", "/teapot", "/hook-boom", "/mw-boom"):
        http.get(path)
    handles = {name: faulty.manager.get_handle(name) for name in ("faulty", "bad-hook", "bad-mw")}
    assert {name: handle.error_count for name, handle in handles.items()} == {
        "faulty": 2,  # a 4xx HTTPException is an answer, not a failure
        "bad-hook": 1,
        "bad-mw": 1,
    }
    assert str(handles["faulty"].last_error) == "boom"


def test_an_http_exception_is_the_plugins_error_from_500_up(faulty, client):
    http = client(faulty)
    handle = faulty.manager.get_handle("faulty")
    assert is_error(http.get("/teapot"), 418, "HTTPException", "faulty")
    assert (handle.error_count, handle.errors_by_type()) == (0, {})  # an answer
    failed = http.get("/bad-gateway")
    assert is_error(failed, 502, "HTTPException", "faulty")
    assert failed.json()["message"] == "upstream down"
    assert (handle.error_count, handle.errors_by_type()) == (1, {"HTTPException": 1})
    assert str(handle.last_error) == "502: upstream down"
    calls = handle.metrics()
    assert calls["route:GET /teapot"].calls == 1
    assert (calls["route:GET /bad-gateway"].calls, calls["route:GET /bad-gateway"].errors) == (1, 1)


def test_an_answer_is_not_a_call_error_in_the_call_metrics(faulty, client):
    """An HTTPException below 500 is an answer (the runtime's error policy): the call
    metrics, which the error threshold's successes come from, do not count it as an error."""
    http = client(faulty)
    assert http.get("/teapot").status_code == 418
    teapot = faulty.manager.get_handle("faulty").metrics()["route:GET /teapot"]
    assert (teapot.calls, teapot.errors) == (1, 0)
    assert faulty.manager.get_handle("faulty").successes() == 1


def test_failures_are_logged_with_the_plugin(faulty, client, caplog):
    client(faulty).get("/boom")
    record = next(r for r in caplog.records if r.name == "tether.web")
    assert record.getMessage() == "plugin 'faulty' failed on GET /boom: ValueError: boom"
    assert record.exc_info is not None


# --------------------------------------------------------------------------- gates


def test_a_closed_gate_answers_503_naming_the_plugin(plugin, serve, client):
    server = serve(
        plugin("greeter", GREETER, permissions=ROUTER),
        plugin("routes", TRACE_ROUTES, permissions=ROUTER),
    )
    http = client(server)
    gate = server.manager._slot("greeter").gate
    gate.close("it is disabled")
    refused = http.get("/hello")
    assert is_error(refused, 503, "PluginUnavailableError", "greeter")
    assert refused.json()["message"] == "plugin 'greeter' is unavailable: it is disabled"
    assert refused.headers["retry-after"] == "1"
    hint = refused.json()["hint"]  # in HTTP's terms, not the Python API's
    assert "Retry-After" in hint
    assert "/admin/plugins/greeter" in hint
    assert "PluginManager" not in hint
    assert http.get("/plain").status_code == 200  # other plugins are served
    gate.open()
    assert http.get("/hello").json() == {"hello": "world"}


def test_a_held_gate_makes_requests_wait(plugin, serve, client):
    server = serve(plugin("greeter", GREETER, permissions=ROUTER))
    http = client(server)
    gate = server.manager._slot("greeter").gate
    gate.hold()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(http.get, "/hello")
        wait_for(lambda: gate.waiting == 1, "the request to wait at the gate")
        assert not waiting.done()
        gate.open()
        assert waiting.result(30).json() == {"hello": "world"}


def test_hooks_and_middleware_of_a_closed_plugin_are_skipped(plugin, serve, client):
    server = serve(
        plugin("routes", TRACE_ROUTES, permissions=ROUTER),
        plugin("outer", MIDDLEWARE, config=MIDDLEWARE_SCHEMA),
        plugin("bad-hook", BAD_HOOK),
    )
    http = client(server)
    server.manager._slot("outer").gate.close("it is disabled")
    server.manager._slot("bad-hook").gate.close("it is disabled")
    assert http.get("/plain").json() == {"middleware": []}
    assert http.get("/hook-boom").status_code == 404  # the failing hook did not run


@pytest.mark.parametrize("checker", ["bad-hook", "outer"], ids=["hook", "middleware"])
def test_a_reload_that_outlasts_the_queue_fails_closed(plugin, serve, client, checker):
    server = serve(
        plugin("routes", TRACE_ROUTES, permissions=ROUTER),
        plugin("outer", MIDDLEWARE, config=MIDDLEWARE_SCHEMA),
        plugin("bad-hook", BAD_HOOK),
    )
    gate = server.manager._slot(checker).gate
    gate.hold_timeout = 0.05  # the reload queue gives up quickly
    gate.hold()
    refused = client(server).get("/plain")
    assert is_error(refused, 503, "PluginUnavailableError", checker)
    assert "reload exceeded queue timeout" in refused.json()["message"]


STAGED = """
    import asyncio
    import threading

    import tether

    class Plugin(tether.Plugin):
        def __init__(self):
            self.registered = threading.Event()
            self.proceed = threading.Event()

        async def initialize(self, ctx):
            super().initialize(ctx)
            ctx.router.get("/staged", self.staged)
            self.registered.set()
            await asyncio.to_thread(self.proceed.wait, 30)  # its version is not committed yet

        async def staged(self, request):
            return {"staged": False}
"""


def test_a_route_is_not_served_until_its_version_is_committed(plugin, serve, client):
    server = serve(plugin("greeter", GREETER, permissions=ROUTER))
    manager = server.manager
    http = client(server)
    server.call(lambda: manager.load_plugin(plugin("staged", STAGED, permissions=ROUTER)))
    staged = manager.get_plugin("staged")

    async def bring_up() -> None:
        await manager.initialize_all()
        await manager.start_all()

    with ThreadPoolExecutor(1) as pool:
        initializing = pool.submit(server.call, bring_up)
        assert staged.registered.wait(30)
        assert not manager.get_scope("staged").is_committed
        assert is_error(http.get("/staged"), 404, "NotFound", None)
        assert "/staged" not in [r.path for r in server.app.routes()]
        staged.proceed.set()
        initializing.result(30)
    assert manager.get_scope("staged").is_committed
    assert http.get("/staged").json() == {"staged": False}
    assert [(r.path, r.plugin) for r in server.app.routes() if r.path == "/staged"] == [
        ("/staged", "staged")
    ]


# --------------------------------------------------------------------------- unload

EXTRA = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            ctx.router.get("/extra", self.extra)
            ctx.register_middleware("tag", self.tag)

        async def extra(self, request):
            return {"extra": True}

        async def tag(self, request, call_next):
            response = await call_next(request)
            response.headers["x-extra"] = "yes"
            return response
"""


def test_unloading_a_plugin_removes_its_routes_and_middleware(plugin, serve, client):
    server = serve(
        plugin("greeter", GREETER, permissions=ROUTER),
        plugin("extra", EXTRA, permissions=ROUTER),
    )
    http = client(server)
    assert http.get("/extra").json() == {"extra": True}
    assert http.get("/hello").headers["x-extra"] == "yes"
    server.call(lambda: server.manager.unload_plugin("extra"))
    assert is_error(http.get("/extra"), 404, "NotFound", None)
    hello = http.get("/hello")
    assert hello.json() == {"hello": "world"}
    assert "x-extra" not in hello.headers
    assert [r.plugin for r in server.app.routes()] == ["greeter"] * len(server.app.routes())


def test_a_route_path_can_be_taken_again_after_unload(tmp_path, plugin, serve, client):
    server = serve(plugin("extra", EXTRA, permissions=ROUTER))
    other = plugin("other", EXTRA, permissions=ROUTER)
    server.call(lambda: server.manager.unload_plugin("extra"))

    async def load_other() -> None:
        await server.manager.load_plugin(other)
        await server.manager.initialize_all()
        await server.manager.start_all()

    server.call(load_other)
    assert client(server).get("/extra").json() == {"extra": True}
    assert [r.plugin for r in server.app.routes()] == ["other"]


# --------------------------------------------------------------------------- shutdown

SLOW = """
    import asyncio
    import threading
    from pathlib import Path

    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            self.entered = threading.Event()
            self.release = threading.Event()
            self.log = Path(ctx.plugin_config["log"])
            if ctx.has_permission("router"):
                ctx.router.get("/slow", self.slow)
                ctx.router.get("/quick", self.quick)

        async def slow(self, request):
            self.entered.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
            return {"slow": "done"}

        async def quick(self, request):
            return {"quick": True}

        def stop(self):
            with self.log.open("a") as log:
                log.write(self.ctx.name + "\\n")
"""
SLOW_SCHEMA = {"log": {"type": "string", "required": True}}


def test_shutdown_finishes_requests_in_flight_then_stops_plugins_in_reverse(
    tmp_path, plugin, serve, client
):
    log = str(tmp_path / "stopped.txt")
    base = plugin("base", SLOW, config=SLOW_SCHEMA, permissions={"filesystem": True})
    web = plugin(
        "web",
        SLOW,
        config=SLOW_SCHEMA,
        permissions={"router": True, "filesystem": True},
        dependencies=[{"name": "base"}],
    )
    server = serve(web, base, base={"log": log}, web={"log": log})
    slow = server.manager.get_plugin("web")
    http = client(server)
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(http.get, "/slow")
        assert slow.entered.wait(30)
        server.server.stop()  # what SIGINT/SIGTERM do

        def refused() -> bool:
            try:
                httpx.get(server.url + "/quick", timeout=5)
            except httpx.TransportError:
                return True
            return False

        wait_for(refused, "the server to stop accepting connections")
        assert not in_flight.done()
        slow.release.set()
        response = in_flight.result(30)
    assert (response.status_code, response.json()) == (200, {"slow": "done"})
    server.stop()
    assert server.stopped_order == ["web", "base"]
    assert Path(log).read_text().split() == ["web", "base"]


def test_request_context_of_a_foreign_request_is_an_error():
    from starlette.requests import Request

    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    with pytest.raises(tether.TetherError, match="no tether request context"):
        RequestContext.of(request)


def test_one_web_app_per_manager():
    manager = tether.PluginManager()
    WebApp(manager)
    with pytest.raises(tether.TetherError, match="already has a web app"):
        WebApp(manager)


def test_live_server_reports_a_failed_start(tmp_path, plugin):
    broken = plugin("broken", "raise ImportError('no such thing')\n")
    with pytest.raises(tether.TetherError, match="broken"):
        LiveServer(write_config(tmp_path, broken), state_directory=tmp_path / "s").start()
    assert not any(t.name == "tether-live-server" for t in threading.enumerate())


# --------------------------------------------------------------------------- docs


def test_the_plugin_in_the_docs_works(tmp_path, client):
    text = (Path(__file__).resolve().parent.parent / "docs" / "web.md").read_text()
    for body in re.findall(
        r"```(?:yaml|python)\n(# (?:greeter/|serve\.yaml).*?)```", text, re.DOTALL
    ):
        name, _, code = body.partition("\n")
        target = tmp_path / name.removeprefix("# ")
        target.parent.mkdir(exist_ok=True)
        target.write_text(code)
    assert sorted(p.name for p in (tmp_path / "greeter").iterdir()) == ["greeter.py", "plugin.yaml"]
    config = tmp_path / "serve.yaml"  # the config the docs serve it with
    with LiveServer(config, state_directory=tmp_path / "state") as server:
        http = client(server)
        assert is_error(http.get("/greetings/ada"), 404, "HTTPException", "greeter")
        assert http.put("/greetings/ada").status_code == 204
        greeted = http.get("/greetings/ada", headers={"x-tag": "docs"})
        assert greeted.json() == {"message": "Hi, ada!", "tag": "docs"}
        assert greeted.headers["x-greeter"] == "yes"
        assert http.delete("/greetings/ada").text == "forgotten"
        server.call(lambda: server.manager.unload_plugin("greeter"))
        assert http.get("/greetings/ada").status_code == 404


# --------------------------------------------------------------------------- the route table


@pytest.fixture
def scope(tmp_path: Path) -> Callable[..., PluginScope]:
    """Make plugin scopes (versions) sharing one runtime: what the route table keeps."""
    runtime = Runtime(state_directory=tmp_path / "state")

    def make(name: str, version: str = "1.0.0", *, committed: bool = True) -> PluginScope:
        return make_scope(
            name, runtime=runtime, version=version, permissions=["router"], committed=committed
        )

    return make


def add(table, owner, method="GET", path="/x"):
    return table.add(owner=owner, method=method, path=path, handler=lambda request: None)


def commit(table, old, new) -> None:
    """What a plugin slot does when ``new`` replaces ``old``: the table is told."""
    if old is not None:
        old.door.committed = False
    new.door.committed = True
    table.version_committed(new.name)


def test_a_new_version_of_a_plugin_takes_over_its_routes_until_released(scope):
    from tether.hosts.web._routing import RouteTable

    table = RouteTable()
    old, new = scope("users", "1.0.0"), scope("users", "2.0.0", committed=False)
    served = add(table, old)
    taken = add(table, new)  # a reload: the same plugin, a new version, staged
    assert table.match("/x", "GET")[0] is served
    commit(table, old, new)
    assert table.match("/x", "GET")[0] is taken
    assert table.remove_owner(new) == 1  # the new version failed: roll back to the old one
    commit(table, None, old)
    assert table.match("/x", "GET")[0].owner is old
    assert table.remove_owner(old) == 1
    assert table.match("/x", "GET") == (None, {}, set())


def test_routes_of_a_staged_version_are_not_matched_until_it_is_committed(scope):
    from tether.hosts.web._routing import RouteTable

    table = RouteTable()
    staged = scope("users", committed=False)
    route = add(table, staged, "GET", "/users/{name}")
    assert table.match("/users/ada", "GET") == (None, {}, set())
    assert table.routes() == []
    commit(table, None, staged)
    assert table.match("/users/ada", "GET") == (route, {"name": "ada"}, set())
    assert table.routes() == [route]


def test_matching_prefers_exact_paths_and_reports_allowed_methods(scope):
    from tether.hosts.web._routing import RouteTable

    table = RouteTable()
    owner = scope("p")
    add(table, owner, "GET", "/users/{name}")
    add(table, owner, "GET", "/users/me")
    add(table, owner, "POST", "/users/{name}")
    route, params, _ = table.match("/users/me", "GET")
    assert (route.path, params) == ("/users/me", {})
    route, params, _ = table.match("/users/me", "POST")  # falls through to the template
    assert (route.path, params) == ("/users/{name}", {"name": "me"})
    assert table.match("/users/ada", "DELETE") == (None, {}, {"GET", "HEAD", "POST"})


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("TRACE", "/x", "plugin 'p': unsupported method 'TRACE' for route '/x'"),
        ("GET", "x", "plugin 'p': route path 'x' must start with '/'"),
        ("GET", "/x/{id:hex}", "plugin 'p': route '/x/{id:hex}' uses the unknown convertor 'hex'"),
        ("GET", "/x/{id}/{id}", "plugin 'p': route '/x/{id}/{id}' names the parameter 'id' twice"),
    ],
)
def test_invalid_routes_are_refused(scope, method, path, message):
    from tether.hosts.web._routing import RouteTable

    with pytest.raises(RouteConflictError, match=re.escape(message)):
        add(RouteTable(), scope("p"), method, path)


def test_the_web_router_is_a_tether_router(tmp_path):
    manager = tether.PluginManager(state_directory=tmp_path / "state")
    app = WebApp(manager)
    owner = make_scope("p", runtime=manager.runtime, permissions=["router"])
    router = app.router_for(owner)  # the runtime's router factory
    assert isinstance(router, tether.Router)
    router.get("/x", lambda request: None)
    seen = owner.context.router  # what the plugin gets: a sealed view of the same router
    assert isinstance(seen, tether.Router)
    assert not isinstance(seen, PluginRouter)
    seen.group("/api").post("/y", lambda request: None)
    assert [(r.method, r.path, r.plugin) for r in app.routes()] == [
        ("GET", "/x", "p"),
        ("POST", "/api/y", "p"),
    ]
    assert all(r.owner is owner for r in app.routes())  # every route knows its version


# --------------------------------------------------------------------------- operations


def test_route_errors_feed_the_error_threshold(tmp_path, plugin, client):
    faulty = plugin("faulty", FAULTY, permissions=ROUTER)
    entry = {
        "path": str(faulty),
        "error_threshold": {"max_errors": 3, "time_window": "1m", "action": "disable"},
    }
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"plugins": [entry]}}))
    with LiveServer(config, state_directory=tmp_path / "state") as server:
        assert observe(server.manager).is_running
        http = client(server)
        assert [http.get("/boom").status_code for _ in range(3)] == [500, 500, 500]
        refused = http.get("/fine")
        assert is_error(refused, 503, "PluginUnavailableError", "faulty")
        assert "error threshold" in refused.json()["message"]
        ready = http.get("/readyz")
        assert ready.status_code == 503


def test_a_route_that_answers_empties_a_reset_on_success_window(tmp_path, plugin, client):
    faulty = plugin("faulty", FAULTY, permissions=ROUTER)
    entry = {
        "path": str(faulty),
        "error_threshold": {"max_errors": 3, "time_window": "1m", "reset_on_success": True},
    }
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"plugins": [entry]}}))
    with LiveServer(config, state_directory=tmp_path / "state") as server:
        manager = server.manager
        http = client(server)
        assert [http.get("/boom").status_code for _ in range(2)] == [500, 500]
        assert http.get("/fine").status_code == 200
        # Successes come from the call metrics, read by check_thresholds (which the
        # observability hub runs every second); the web host reports none itself.
        server.call(_returning(manager.check_thresholds))
        assert manager.threshold_status("faulty").errors_in_window == 0
        assert [http.get("/boom").status_code for _ in range(2)] == [500, 500]
        assert http.get("/fine").json() == {"fine": True}  # the window started over


def _returning(fn):
    async def run():
        return fn()

    return run


def test_a_reloaded_plugin_serves_its_new_code(plugin, serve, client):
    directory = plugin("greeter", GREETER, permissions=ROUTER)
    server = serve(directory)
    http = client(server)
    assert http.get("/hello").json() == {"hello": "world"}
    source = directory / "plugin.py"
    source.write_text(source.read_text().replace('{"hello": "world"}', '{"hello": "again"}'))
    server.call(lambda: server.manager.reload_plugin("greeter"))
    assert http.get("/hello").json() == {"hello": "again"}
    assert len([r for r in server.app.routes() if r.path == "/hello"]) == 1


def test_serve_needs_a_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 1
    assert "Error: no config file given" in result.output
    assert "Hint: pass one: tether serve --config app.yaml" in result.output


LATE = """
    import tether
    from tether.hosts.web import HookContext, RequestContext

    class Plugin(tether.Plugin):
        async def start(self):
            self.ctx.router.group("/late").get("/", self.late)

        async def late(self, request):
            return {"same class": HookContext is RequestContext}
"""


def test_routes_can_be_added_in_start(plugin, serve, client):
    server = serve(plugin("late", LATE, permissions=ROUTER))
    assert client(server).get("/late/").json() == {"same class": True}
    assert [(r.path, r.plugin) for r in server.app.routes()] == [("/late/", "late")]
