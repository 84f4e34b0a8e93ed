"""The same plugin, in Python and in JavaScript, behaves the same as a process plugin.

One greeter, twice: examples/node-plugin (Node.js, speaking the worker protocol with
examples/node-plugin/tether-worker.js) and its twin in Python written here, both with
``isolation: process``. Each test runs against both through a real PluginManager and
real worker processes (and, for routes, a real ``tether serve`` app on loopback): the
hook's answer, storage in both directions, an event reaching the subscriber, failures
raised on the host with the builtin type the handler failed with, and a clean stop.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

import tether
from helpers import is_alive, wait_gone
from node_support import copy_node_example, find_node
from test_isolation import _until, asynctest
from tether.hosts.web.testing import LiveServer

pytestmark = pytest.mark.skipif(os.name != "posix", reason="worker processes need POSIX")

PYTHON_GREETER = """
    import os

    import tether
    from starlette.responses import JSONResponse, PlainTextResponse


    class Greeter(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            try:  # hook points an embedding application declares; `tether serve` has none
                ctx.register_hook("greet.make", 10, self.greet)
                ctx.register_hook("greet.recall", 10, lambda key: ctx.plugin_storage.get(key))
            except tether.errors.HookError:
                pass
            ctx.subscribe_event("user.*", self.remember)
            ctx.register_middleware("greeter-stamp", self.stamp, routes=["/greet/*"])
            try:
                router = ctx.router
            except tether.TetherError:
                return
            router.get("/greet/{name}", self.greet_route)
            router.get("/greeter/stats", self.stats)

        def greet(self, data):
            name = (data or {}).get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"greet.make needs a non-empty string 'name', got {name!r}")
            storage = self.ctx.plugin_storage
            storage.set("greeted", storage.get("greeted", 0) + 1)
            word = storage.get("word", "Hello")
            return {"greeting": f"{word}, {name}!", "runtime": "python", "pid": os.getpid()}

        async def stamp(self, request, call_next):
            if request.url.path.removeprefix("/greet/").isdigit():
                return JSONResponse({"refused": request.url.path}, status_code=422)
            response = await call_next(request)
            response.headers["x-stamped-by"] = "py-greeter"
            return response

        def remember(self, event):
            self.ctx.plugin_storage.set("last_user", {"event": event.name, "data": event.data})

        async def greet_route(self, request):
            greeting = self.greet({"name": request.path_params["name"]})["greeting"]
            return PlainTextResponse(greeting, headers={"x-greeter": "python"})

        async def stats(self, request):
            kept = self.ctx.plugin_storage
            return {"greeted": kept.get("greeted", 0), "last_user": kept.get("last_user", None)}
"""


class Greeter:
    """One of the two greeters, ready to load: its directory, name and runtime."""

    def __init__(self, path: Path, name: str, runtime: str) -> None:
        self.path, self.name, self.runtime = path, name, runtime


def _python_greeter(root: Path) -> Greeter:
    root.mkdir(parents=True)
    manifest = {
        "name": "py-greeter",
        "version": "1.0.0",
        "description": "the Python twin of examples/node-plugin",
        "author": "tests",
        "entry": "greeter:Greeter",
        "isolation": "process",
        "events": {"subscribes": ["user.*"]},
        "permissions": {"router": True},
        "timeouts": {"call": "10s"},
    }
    (root / "plugin.yaml").write_text(yaml.safe_dump(manifest))
    (root / "greeter.py").write_text(textwrap.dedent(PYTHON_GREETER))
    return Greeter(root, "py-greeter", "python")


@pytest.fixture(params=["python", "node"])
def greeter(request: pytest.FixtureRequest, tmp_path: Path) -> Greeter:
    if request.param == "python":
        return _python_greeter(tmp_path / "py-greeter")
    node = find_node()
    if node is None:
        pytest.skip("node is not installed and `apt-get install nodejs` failed")
    return Greeter(copy_node_example(node, tmp_path / "node-plugin"), "node-greeter", "node")


@pytest.fixture
def manager(tmp_path: Path) -> tether.PluginManager:
    made = tether.PluginManager(state_directory=tmp_path / "state", stop_timeout=5.0)
    for hook in ("greet.make", "greet.recall"):
        made.runtime.hooks.declare(hook)
    return made


async def _up(manager: tether.PluginManager, greeter: Greeter) -> None:
    await manager.load_plugin(greeter.path)
    await manager.initialize_all()
    await manager.start_all()


def _pid(manager: tether.PluginManager, greeter: Greeter) -> int:
    return int(manager.get_plugin(greeter.name).tether_worker.worker.pid)  # type: ignore[attr-defined]


@asynctest
async def test_the_hook_answers_from_the_worker(manager, greeter):
    await _up(manager, greeter)
    outcome = manager.runtime.hooks.call("greet.make", {"name": "Ada"})
    assert outcome.failures == []
    [answer] = outcome.results
    assert answer["greeting"] == "Hello, Ada!"
    assert answer["runtime"] == greeter.runtime
    assert answer["pid"] == _pid(manager, greeter) != os.getpid()


@asynctest
async def test_the_hook_runs_from_async_code_too(manager, greeter):
    await _up(manager, greeter)
    outcome = await manager.runtime.hooks.run("greet.make", {"name": "Bo"})
    assert [r["greeting"] for r in outcome.results] == ["Hello, Bo!"]


@asynctest
async def test_storage_round_trips_between_host_and_worker(manager, greeter):
    await _up(manager, greeter)
    storage = manager.get_scope(greeter.name).storage()
    storage.set("word", "Howdy")  # written by the host, read by the worker
    manager.runtime.hooks.call("greet.make", {"name": "Ada"})
    [answer] = manager.runtime.hooks.call("greet.make", {"name": "Cy"}).results
    assert answer["greeting"] == "Howdy, Cy!"
    assert storage.get("greeted") == 2  # written by the worker, read by the host
    [recalled] = manager.runtime.hooks.call("greet.recall", "word").results
    assert recalled == "Howdy"


@asynctest
async def test_an_event_reaches_the_subscriber(manager, greeter):
    await _up(manager, greeter)
    await manager.runtime.events.publish("user.created", {"id": 7})
    await manager.runtime.events.publish("order.created", {"id": 8})  # not subscribed
    storage = manager.get_scope(greeter.name).storage()
    await _until(lambda: storage.get("last_user", None) is not None)
    assert storage.get("last_user") == {"event": "user.created", "data": {"id": 7}}


@asynctest
async def test_a_failing_handler_raises_its_builtin_type_on_the_host(manager, greeter):
    await _up(manager, greeter)
    [failure] = manager.runtime.hooks.call("greet.make", {}).failures
    assert isinstance(failure.error, ValueError)
    assert "greet.make needs a non-empty string 'name'" in str(failure.error)
    assert failure.plugin == greeter.name
    notes = "".join(getattr(failure.error, "__notes__", []))
    assert f"in the worker of plugin '{greeter.name}'" in notes


@asynctest
async def test_a_host_error_passes_through_the_worker_with_its_type(manager, greeter):
    await _up(manager, greeter)
    # the host's storage raises KeyError in the worker's call; the handler lets it go
    [failure] = manager.runtime.hooks.call("greet.recall", "nope").failures
    assert isinstance(failure.error, KeyError)
    assert failure.error.args == (f"plugin '{greeter.name}' has no stored key 'nope'",)


@asynctest
async def test_it_stops_cleanly_and_its_worker_is_gone(manager, greeter):
    await _up(manager, greeter)
    pid = _pid(manager, greeter)
    assert is_alive(pid)
    assert (await manager.check_health(greeter.name))[greeter.name].ok
    await manager.unload_plugin(greeter.name)
    assert wait_gone(pid)
    assert greeter.name not in manager.list_plugins()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[[Path], LiveServer]]:
    started: list[LiveServer] = []

    def start(path: Path) -> LiveServer:
        config = tmp_path / "app.yaml"
        config.write_text(yaml.safe_dump({"plugins": {"plugins": [{"path": str(path)}]}}))
        server = LiveServer(config, state_directory=tmp_path / "state").start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_its_routes_answer_through_the_web_host(live, greeter):
    server = live(greeter.path)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        hello = client.get("/greet/ada")
        assert hello.status_code == 200
        assert hello.text == "Hello, ada!"
        assert hello.headers["x-greeter"] == greeter.runtime
        assert hello.headers["content-type"].startswith("text/plain")
        assert hello.headers["x-stamped-by"] == greeter.name  # its middleware ran
        refused = client.get("/greet/42")
        assert refused.status_code == 422
        assert refused.json() == {"refused": "/greet/42"}
        stats = client.get("/greeter/stats")
        assert stats.status_code == 200
        assert stats.json() == {"greeted": 1, "last_user": None}  # the refused one never ran
        assert "x-stamped-by" not in stats.headers  # not a route the middleware wraps
    pid = server.manager.get_plugin(greeter.name).tether_worker.worker.pid  # type: ignore[attr-defined]
    server.stop()
    assert wait_gone(pid)


def test_the_two_greeters_are_the_same_plugin_to_the_host():
    """The parametrization above is the conformance suite: this checks that both sides
    exist (the Node one is the shipped example, unchanged but for the program's path)."""
    example = yaml.safe_load((Path(__file__).parent.parent / "examples/node-plugin/plugin.yaml")
                             .read_text())  # fmt: skip
    assert example["isolation"] == "process"
    assert example["command"] == ["node", "plugin.js"]
    assert asyncio.iscoroutinefunction(_up)
