"""Process plugins: real worker processes, the same plugin API, failures contained.

Each test writes small plugins into tmp_path with ``isolation: process`` and drives
them through a real PluginManager (hooks, events, services, storage, routes through a
real uvicorn server), then checks what the host sees: answers from another process,
errors with the plugin's exception class, a crash or a hang that fails the call and
leaves the host serving, a worker that is gone after unload.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

import tether
from helpers import PluginWriter, is_alive, wait_gone
from tether._storage import PluginStorage
from tether.cli import cli
from tether.errors import (
    CallTimeoutError,
    PluginCrashedError,
    PluginLoadError,
    RemoteError,
    WorkerProtocolError,
)
from tether.hosts.web.testing import LiveServer
from tether.observability import observe

pytestmark = pytest.mark.skipif(os.name != "posix", reason="worker processes need POSIX")

ECHO = """
    import os
    import tether


    class Broken(Exception):
        pass


    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            self.ctx = ctx
            ctx.register_hook("app.echo", 10, self.echo)
            ctx.register_hook("app.aecho", 10, self.aecho)
            ctx.register_hook("app.store", 10, self.store)
            ctx.register_hook("app.fail", 10, self.fail)
            ctx.register_hook("app.broken", 10, self.broken)
            ctx.subscribe_event("user.*", self.on_user)
            ctx.export_service("shouter", Shouter())

        def echo(self, data):
            return {"pid": os.getpid(), "data": data}

        async def aecho(self, data):
            return ["async", data]

        def store(self, data):
            self.ctx.plugin_storage.set("last", data)
            return self.ctx.plugin_storage.get("last")

        def fail(self, data):
            raise ValueError(f"no such thing: {data}")

        def broken(self, data):
            raise Broken("it broke")

        def on_user(self, event):
            self.ctx.plugin_storage.set("event", [event.name, event.data])


    class Shouter:
        def shout(self, text):
            return text.upper()

        async def ashout(self, text):
            return text.upper() + "!"
"""

HOOKS = ("app.echo", "app.aecho", "app.store", "app.fail", "app.broken", "app.crash",
         "app.sleep", "app.print")  # fmt: skip


def _children_running(marker: bytes) -> list[int]:
    """This process's live children whose command line holds ``marker``."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = (entry / "stat").read_text().rpartition(")")[2].split()[1]
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if parent == me and marker in cmdline and is_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.fixture
def plugin(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


@pytest.fixture
def manager(tmp_path: Path) -> tether.PluginManager:
    made = tether.PluginManager(state_directory=tmp_path / "state", stop_timeout=5.0)
    for hook in HOOKS:
        made.runtime.hooks.declare(hook)
    return made


def asynctest(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an ``async def`` test in a fresh event loop (no pytest-asyncio here), and
    close its ``manager`` in that same loop."""

    @functools.wraps(fn)
    def run(*args: object, **kwargs: object) -> None:
        async def body() -> None:
            try:
                await fn(*args, **kwargs)
            finally:
                manager = kwargs.get("manager")
                if isinstance(manager, tether.PluginManager):
                    await manager.aclose()

        asyncio.run(body())

    return run


async def _bring_up(manager: tether.PluginManager, *paths: Path) -> None:
    for path in paths:
        await manager.load_plugin(path)
    await manager.initialize_all()
    await manager.start_all()


async def _until(check: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait (polling) until ``check()`` holds, at most ``limit`` seconds."""
    for _ in range(int(limit / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)


def worker_pid(manager: tether.PluginManager, name: str) -> int:
    return int(manager.get_plugin(name).tether_worker.worker.pid)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the same API


@asynctest
async def test_a_sync_hook_answers_from_another_process(manager, plugin):
    await _bring_up(manager, plugin("echo", ECHO, isolation="process"))
    outcome = manager.runtime.hooks.call("app.echo", {"x": [1, 2]})
    assert outcome.failures == []
    [answer] = outcome.results
    assert answer["data"] == {"x": [1, 2]}
    assert answer["pid"] != os.getpid()
    assert answer["pid"] == worker_pid(manager, "echo")


@asynctest
async def test_an_async_hook_is_awaited_in_the_worker(manager, plugin):
    await _bring_up(manager, plugin("echo", ECHO, isolation="process"))
    outcome = await manager.runtime.hooks.run("app.aecho", 5)
    assert outcome.results == [["async", 5]]


@asynctest
async def test_storage_goes_through_the_host(manager, plugin, tmp_path):
    await _bring_up(manager, plugin("echo", ECHO, isolation="process"))
    outcome = manager.runtime.hooks.call("app.store", {"kept": True})
    assert outcome.results == [{"kept": True}]
    # the host's own storage of the plugin holds it: the worker has no database of its own
    assert manager.get_scope("echo").storage().get("last") == {"kept": True}


@asynctest
async def test_events_reach_a_process_subscriber(manager, plugin):
    path = plugin("echo", ECHO, isolation="process", events={"subscribes": ["user.*"]})
    await _bring_up(manager, path)
    await manager.runtime.events.publish("user.created", {"id": 7})
    storage = manager.get_scope("echo").storage()
    await _until(lambda: storage.get("event", None) is not None)
    assert storage.get("event") == ["user.created", {"id": 7}]


@asynctest
async def test_services_cross_both_ways(manager, plugin):
    user = plugin(
        "user",
        """
        import tether

        class Plugin(tether.Plugin):
            def initialize(self, ctx):
                super().initialize(ctx)
                self.shouter = ctx.import_service("echo", "shouter")
                ctx.register_hook("app.print", 10, self.use)

            async def use(self, text):
                return [self.shouter.shout(text), await self.shouter.ashout(text)]
        """,
        dependencies=[{"name": "echo"}],
    )
    await _bring_up(manager, plugin("echo", ECHO, isolation="process"), user)
    outcome = await manager.runtime.hooks.run("app.print", "hi")
    assert outcome.failures == []
    assert outcome.results == [["HI", "HI!"]]


@asynctest
async def test_a_process_plugin_imports_an_in_process_service(manager, plugin):
    maker = plugin(
        "maker",
        """
        import tether

        class Plugin(tether.Plugin):
            def initialize(self, ctx):
                super().initialize(ctx)
                ctx.export_service("numbers", self)

            def double(self, n):
                return 2 * n
        """,
    )
    taker = plugin(
        "taker",
        """
        import os
        import tether

        class Plugin(tether.Plugin):
            def initialize(self, ctx):
                super().initialize(ctx)
                self.numbers = ctx.import_service("maker", "numbers")
                ctx.register_hook("app.echo", 10, self.use)

            def use(self, n):
                return [os.getpid(), self.numbers.double(n)]
        """,
        isolation="process",
        dependencies=[{"name": "maker"}],
    )
    await _bring_up(manager, maker, taker)
    [[pid, doubled]] = manager.runtime.hooks.call("app.echo", 21).results
    assert doubled == 42
    assert pid != os.getpid()


@asynctest
async def test_the_config_can_ask_for_process_isolation(tmp_path, plugin):
    path = plugin(
        "who",
        """
        import os
        import tether

        class Plugin(tether.Plugin):
            def initialize(self, ctx):
                super().initialize(ctx)
                self.greeting = ctx.plugin_config["greeting"]
                ctx.register_hook("app.echo", 10, lambda _: [os.getpid(), self.greeting])
        """,
        config={"greeting": {"type": "string", "default": "hello"}},
    )
    config_file = tmp_path / "app.yaml"
    entry = {"path": str(path), "isolation": "process", "config": {"greeting": "hej"}}
    config_file.write_text(yaml.safe_dump({"plugins": {"plugins": [entry]}}))
    config = tether.load_config(config_file)
    made = tether.PluginManager(config=config, state_directory=tmp_path / "state")
    made.runtime.hooks.declare("app.echo")
    try:
        await made.load_plugins_from_config()
        await made.initialize_all()
        await made.start_all()
        [[pid, greeting]] = made.runtime.hooks.call("app.echo").results
        assert greeting == "hej"
        assert pid != os.getpid()
    finally:
        await made.aclose()


# --------------------------------------------------------------------------- errors


@asynctest
async def test_a_builtin_exception_keeps_its_class(manager, plugin):
    await _bring_up(manager, plugin("echo", ECHO, isolation="process"))
    [failure] = manager.runtime.hooks.call("app.fail", "x").failures
    assert isinstance(failure.error, ValueError)
    assert str(failure.error) == "no such thing: x"
    notes = "".join(getattr(failure.error, "__notes__", []))
    assert "in the worker of plugin 'echo'" in notes
    assert "plugin.py" in notes  # the worker's traceback, down to the plugin's line


@asynctest
async def test_a_plugin_exception_class_becomes_a_remote_error(manager, plugin):
    await _bring_up(manager, plugin("echo", ECHO, isolation="process"))
    [failure] = manager.runtime.hooks.call("app.broken").failures
    assert isinstance(failure.error, RemoteError)
    assert failure.error.kind.endswith(".Broken")
    assert failure.error.text == "it broke"


@asynctest
async def test_a_plugin_that_fails_to_import_names_itself(manager, plugin):
    path = plugin("bad", "import not_a_module_anywhere\n", isolation="process")
    with pytest.raises(PluginLoadError, match="bad") as caught:
        await manager.load_plugin(path)
    assert "not_a_module_anywhere" in str(caught.value)


# --------------------------------------------------------------------------- containment

CRASHY = """
    import os
    import sys
    import time
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            ctx.register_hook("app.crash", 10, self.crash)
            ctx.register_hook("app.sleep", 10, self.sleep)
            ctx.register_hook("app.print", 10, self.spam)
            ctx.register_hook("app.echo", 10, lambda data: data)

        def crash(self, code):
            os._exit(code)

        def sleep(self, seconds):
            time.sleep(seconds)
            return "woke"

        def spam(self, lines):
            for n in range(lines):
                print("junk on stdout", n, "\\x00\\xff" * 10)
                sys.stdout.write("\\x00\\x00\\x00\\x10not a frame\\n")
            sys.stdout.flush()
            os.write(1, b"\\x00\\x00\\x00\\x05hello")
            return "still here"
"""


@asynctest
async def test_a_crash_fails_the_call_and_the_host_keeps_serving(manager, plugin):
    other = plugin(
        "other",
        """
        import tether

        class Plugin(tether.Plugin):
            def initialize(self, ctx):
                super().initialize(ctx)
                ctx.register_hook("app.aecho", 10, lambda data: ["in-process", data])
        """,
    )
    await _bring_up(manager, plugin("crashy", CRASHY, isolation="process"), other)
    pid = worker_pid(manager, "crashy")
    [failure] = manager.runtime.hooks.call("app.crash", 3).failures
    assert isinstance(failure.error, PluginCrashedError)
    assert "exit code 3" in str(failure.error)
    assert wait_gone(pid)
    assert manager.runtime.hooks.call("app.aecho", 1).results == [["in-process", 1]]


@asynctest
async def test_a_sync_call_past_its_timeout_kills_the_worker(manager, plugin):
    path = plugin("crashy", CRASHY, isolation="process", timeouts={"call": "0.5s"})
    await _bring_up(manager, path)
    pid = worker_pid(manager, "crashy")
    started = time.monotonic()
    [failure] = manager.runtime.hooks.call("app.sleep", 60).failures
    assert isinstance(failure.error, CallTimeoutError)
    assert time.monotonic() - started < 30  # not the plugin's 60 s
    assert wait_gone(pid)


@asynctest
async def test_what_a_plugin_prints_cannot_break_the_protocol(manager, plugin, caplog):
    await _bring_up(manager, plugin("crashy", CRASHY, isolation="process"))
    with caplog.at_level("INFO", logger="tether.worker.crashy"):
        assert manager.runtime.hooks.call("app.print", 50).results == ["still here"]
        assert manager.runtime.hooks.call("app.echo", {"ok": 1}).results == [{"ok": 1}]
        await _until(lambda: "junk on stdout 49" in caplog.text)
    assert "junk on stdout 49" in caplog.text


@asynctest
async def test_unloading_ends_the_worker(manager, plugin):
    await _bring_up(manager, plugin("echo", ECHO, isolation="process"))
    pid = worker_pid(manager, "echo")
    assert is_alive(pid)
    await manager.unload_plugin("echo")
    assert wait_gone(pid)


@asynctest
async def test_a_worker_that_speaks_another_protocol_is_refused(manager, plugin):
    rogue = """
        import json, os, socket, struct, time
        sock = socket.socket(fileno=int(os.environ["TETHER_WORKER_FD"]))
        body = json.dumps({"type": "hello", "protocols": [99], "codecs": ["json"]}).encode()
        sock.sendall(struct.pack(">I", len(body)) + body)
        time.sleep(30)
    """
    path = plugin(
        "rogue",
        None,
        isolation="process",
        command=[sys.executable, "rogue.py"],
        files={"rogue.py": rogue},
    )
    with pytest.raises(WorkerProtocolError, match="speaks protocols \\[99\\], this host 1"):
        await manager.load_plugin(path)


# --------------------------------------------------------------------------- routes

ROUTES = """
    import os
    import tether
    from starlette.responses import PlainTextResponse


    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            ctx.router.get("/who", self.who)
            ctx.router.post("/echo/{name}", self.echo)
            ctx.router.get("/crash", self.crash)

        async def who(self, request):
            return {"pid": os.getpid(), "query": request.query_params.get("q")}

        async def echo(self, request):
            body = await request.body()
            name = request.path_params["name"]
            return PlainTextResponse(f"{name}:{body.decode()}", status_code=201,
                                     headers={"x-plugin": "routes"})

        def crash(self, request):
            os._exit(9)
"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def start(*paths: Path) -> LiveServer:
        entries = [{"path": str(p)} for p in paths]
        config = tmp_path / "app.yaml"
        config.write_text(yaml.safe_dump({"plugins": {"plugins": entries}}))
        server = LiveServer(config, state_directory=tmp_path / "state").start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_a_process_plugin_serves_routes(live, plugin):
    server = live(plugin("routes", ROUTES, isolation="process", permissions={"router": True}))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        who = client.get("/who", params={"q": "x"})
        assert who.status_code == 200
        assert who.json()["query"] == "x"
        assert who.json()["pid"] != os.getpid()
        echo = client.post("/echo/ann", content=b"hello")
        assert echo.status_code == 201
        assert echo.text == "ann:hello"
        assert echo.headers["x-plugin"] == "routes"


def test_a_crash_in_a_route_is_a_503(live, plugin):
    server = live(plugin("routes", ROUTES, isolation="process", permissions={"router": True}))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        crashed = client.get("/crash")
    assert crashed.status_code == 503
    body = crashed.json()
    assert body["error"] == "PluginCrashedError"
    assert body["plugin"] == "routes"
    assert "exit code 9" in body["message"]
    assert crashed.headers["retry-after"] == "1"


# --------------------------------------------------------------------------- restarts


@asynctest
async def test_a_crashed_worker_is_restarted_with_its_registrations(manager, plugin):
    await _bring_up(manager, plugin("crashy", CRASHY, isolation="process"))
    first = worker_pid(manager, "crashy")
    manager.runtime.hooks.call("app.crash", 1)
    stand_in = manager.get_plugin("crashy").tether_worker
    await _until(lambda: stand_in.restarts == 1)
    second = worker_pid(manager, "crashy")
    assert second != first
    assert wait_gone(first)
    # the hooks registered before the crash reach the new worker; none was doubled
    assert manager.runtime.hooks.call("app.echo", "back").results == ["back"]
    assert manager.runtime.hooks.handlers("app.echo") == [("crashy", 10)]
    history = [event.what for event in manager.get_history("crashy")]
    assert "worker crashed" in history
    assert "worker restarted" in history
    assert (await manager.check_health("crashy"))["crashy"].ok
    metrics = observe(manager).render_metrics().decode()
    assert 'tether_plugin_restarts_total{plugin="crashy"} 1.0' in metrics
    assert 'tether_plugin_worker_crashes_total{plugin="crashy"} 1.0' in metrics
    assert 'tether_plugin_worker_up{plugin="crashy"} 1.0' in metrics
    [rss] = re.findall(r'tether_plugin_worker_rss_bytes\{plugin="crashy"\} (\S+)', metrics)
    assert float(rss) > 1_000_000  # a Python process: megabytes, read from /proc


WATCHER = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            self.seen = []
            ctx.subscribe_event("plugin.worker_given_up", self.seen.append)
"""


@asynctest
async def test_three_crashes_within_the_window_disable_the_plugin(manager, plugin):
    watcher = plugin("watcher", WATCHER, events={"subscribes": ["plugin.worker_given_up"]})
    await _bring_up(manager, plugin("crashy", CRASHY, isolation="process"), watcher)
    stand_in = manager.get_plugin("crashy").tether_worker
    for crash in range(3):
        manager.runtime.hooks.call("app.crash", 1)
        if crash < 2:
            await _until(lambda crash=crash: stand_in.restarts == crash + 1)
    await _until(lambda: not manager.get_info("crashy").enabled)
    assert stand_in.state == "given up"
    reason = manager.get_history("crashy")[-1].detail
    assert "crashed 3 times within 3600s" in reason
    assert not manager.persisted_flag("crashy").enabled  # in the state store
    # nothing reaches it any more, and its health says so
    assert manager.runtime.hooks.call("app.echo", "x").results == []
    health = manager.get_plugin_health("crashy")
    assert health.state == "disabled"
    assert isinstance(health.last_error, PluginCrashedError)
    seen = manager.get_plugin("watcher").seen
    await _until(lambda: len(seen) == 1)
    assert seen[0].data["plugin"] == "crashy"


FREEZER = """
    import os
    import signal
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            ctx.register_hook("app.sleep", 10, self.freeze)

        def freeze(self, _):
            os.kill(os.getpid(), signal.SIGSTOP)  # every thread stops: no heartbeat
"""


@asynctest
async def test_a_worker_whose_heartbeats_stop_is_killed(manager, plugin, monkeypatch):
    monkeypatch.setattr("tether.isolation._process.HEARTBEAT", 0.2)  # lapse after 2 s
    await _bring_up(manager, plugin("frozen", FREEZER, isolation="process"))
    pid = worker_pid(manager, "frozen")
    [failure] = manager.runtime.hooks.call("app.sleep").failures
    assert isinstance(failure.error, PluginCrashedError)
    assert "SIGKILL" in str(failure.error)
    assert wait_gone(pid)


# --------------------------------------------------------------------------- reloads

VERSIONED = """
    import os
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            ctx.register_hook("app.echo", 10, lambda _: [{answer!r}, os.getpid()])
            {extra}
"""


def _versioned(answer: str, extra: str = "pass") -> str:
    return VERSIONED.format(answer=answer, extra=extra)


@asynctest
async def test_a_reload_brings_the_new_code_up_in_a_new_worker(manager, plugin):
    path = plugin("swap", _versioned("one"), isolation="process")
    await _bring_up(manager, path)
    [[answer, first]] = manager.runtime.hooks.call("app.echo").results
    assert answer == "one"
    (path / "plugin.py").write_text(textwrap.dedent(_versioned("two")))
    result = await manager.reload_plugin("swap", config=tether.ReloadConfig(grace_period=0))
    assert result.outcome == "reloaded", result.error
    [[answer, second]] = manager.runtime.hooks.call("app.echo").results
    assert answer == "two"
    assert second != first
    assert wait_gone(first)  # the old worker was stopped and ended


@asynctest
async def test_a_failed_reload_keeps_the_old_worker_serving(manager, plugin):
    path = plugin("swap", _versioned("one"), isolation="process")
    await _bring_up(manager, path)
    [[_, first]] = manager.runtime.hooks.call("app.echo").results
    broken = _versioned("two", extra="raise RuntimeError('v2 cannot start')")
    (path / "plugin.py").write_text(textwrap.dedent(broken))
    result = await manager.reload_plugin("swap")
    assert result.outcome == "rolled_back"
    assert "v2 cannot start" in (result.error or "")
    [[answer, pid]] = manager.runtime.hooks.call("app.echo").results
    assert answer == "one"
    assert pid == first  # the old worker never went away
    assert manager.runtime.hooks.handlers("app.echo") == [("swap", 10)]


COUNTED = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            self.ctx = ctx
            store = ctx.plugin_storage
            store.set("initialized", store.get("initialized", 0) + 1)
            ctx.register_hook("app.aecho", 10, self.answer)
            {extra}

        async def answer(self, _):
            return {answer!r}

        def stop(self):
            self.ctx.plugin_storage.set("stopped", {answer!r})

        def health_check(self):
            return {healthy}
"""


def _counted(answer: str, *, extra: str = "pass", healthy: bool = True) -> str:
    return textwrap.dedent(COUNTED.format(answer=answer, extra=extra, healthy=healthy))


@pytest.mark.parametrize(
    ("overlap", "stopped", "initialized"),
    [(True, None, 1), (False, "one", 2)],
    ids=["blue-green", "stop-first"],
)
@asynctest
async def test_a_failed_reload_and_the_old_version(manager, plugin, overlap, stopped, initialized):
    path = plugin("swap", _counted("one"), isolation="process", reload={"overlap": overlap})
    await _bring_up(manager, path)
    (path / "plugin.py").write_text(_counted("two", extra="raise RuntimeError('no')"))
    result = await manager.reload_plugin("swap")
    assert result.outcome == "rolled_back"
    assert result.step == "initialize"
    assert (await manager.runtime.hooks.run("app.aecho")).results == ["one"]
    storage = manager.get_scope("swap").storage()
    # blue/green: the old worker never stopped; stop-first: it stopped, and was revived
    assert storage.get("stopped", None) == stopped
    # what the failed v2 wrote was undone with the storage snapshot; a revival counts
    assert storage.get("initialized") == initialized


@asynctest
async def test_a_new_version_that_fails_its_health_check_is_not_switched_to(manager, plugin):
    path = plugin("swap", _counted("one"), isolation="process")
    await _bring_up(manager, path)
    (path / "plugin.py").write_text(_counted("two", healthy=False))
    result = await manager.reload_plugin("swap")
    assert result.outcome == "rolled_back"
    assert result.step == "health_check"
    assert (await manager.runtime.hooks.run("app.aecho")).results == ["one"]
    assert manager.get_scope("swap").storage().get("stopped", None) is None


@asynctest
async def test_calls_during_a_blue_green_reload_all_succeed(manager, plugin):
    path = plugin("swap", _counted("one"), isolation="process")
    await _bring_up(manager, path)
    failures: list[object] = []
    answers: set[object] = set()
    stop = asyncio.Event()

    async def caller() -> None:
        while not stop.is_set():
            outcome = await manager.runtime.hooks.run("app.aecho")
            failures.extend(outcome.failures)
            answers.update(outcome.results)

    callers = [asyncio.create_task(caller()) for _ in range(4)]
    await asyncio.sleep(0.2)
    (path / "plugin.py").write_text(_counted("two"))
    result = await manager.reload_plugin("swap")
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*callers)
    assert result.outcome == "reloaded", result.error
    assert failures == []
    assert answers == {"one", "two"}


# --------------------------------------------------------------------------- the CLI


ELSEWHERE = """
    import os
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            self.host = ctx.plugin_config["host_pid"]

        def health_check(self):
            return os.getpid() != self.host  # healthy only outside the host's process
"""


def test_plugins_test_runs_a_plugin_in_a_worker(plugin):
    # an in-process plugin by its manifest, healthy only where it is not the host
    path = plugin("who", ELSEWHERE, config={"host_pid": {"type": "integer", "required": True}})
    pid = f"host_pid={os.getpid()}"
    inside = CliRunner().invoke(cli, ["plugins", "test", "--set", pid, str(path)])
    assert inside.exit_code == 1, inside.output
    assert re.search(r"health check\s+failed", inside.output), inside.output
    args = ["plugins", "test", "--isolation", "process", "--set", pid, str(path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for step in ("load", "initialize", "start", "health check", "stop", "cleanup"):
        assert re.search(rf"{step}\s+ok", result.output), (step, result.output)


def test_plugins_info_shows_isolation_and_limits(plugin):
    path = plugin(
        "limited",
        _counted("one"),
        isolation="process",
        resources={"memory": "128MiB", "cpu_time": "10s", "processes": 8},
        reload={"overlap": False},
    )
    result = CliRunner().invoke(cli, ["plugins", "info", str(path)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "Isolation process (from the manifest)" in output
    assert "memory 128MiB, cpu_time 10s, open_files 256, processes 8" in output
    assert "reload: stop first" in output


@asynctest
async def test_a_process_plugin_rolls_back_after_its_grace_period(manager, plugin):
    path = plugin("swap", _versioned("one"), isolation="process")
    await _bring_up(manager, path)
    (path / "plugin.py").write_text(textwrap.dedent(_versioned("two")))
    reloaded = await manager.reload_plugin("swap", config=tether.ReloadConfig(grace_period=0))
    assert reloaded.outcome == "reloaded", reloaded.error
    [[answer, two]] = manager.runtime.hooks.call("app.echo").results
    assert answer == "two"
    back = await manager.rollback_plugin("swap")
    assert back.outcome == "rolled_back", back.error
    [[answer, one]] = manager.runtime.hooks.call("app.echo").results
    assert answer == "one"  # the kept copy of 1.0.0's files, in a new worker
    assert one != two


# --------------------------------------------------------------------------- hostile workers

ROGUES = {
    "silent": "import time\ntime.sleep(60)\n",
    "exits": "import sys\nsys.exit(4)\n",
    "garbage": (
        "import os, socket\n"
        "sock = socket.socket(fileno=int(os.environ['TETHER_WORKER_FD']))\n"
        "sock.sendall(b'\\x00\\x00\\x00\\x05hello')\n"
        "import time\ntime.sleep(60)\n"
    ),
    "huge": (
        "import os, socket\n"
        "sock = socket.socket(fileno=int(os.environ['TETHER_WORKER_FD']))\n"
        "sock.sendall(b'\\xff\\xff\\xff\\xff')\n"
        "import time\ntime.sleep(60)\n"
    ),
}


@pytest.mark.parametrize("kind", sorted(ROGUES))
@asynctest
async def test_a_worker_that_does_not_shake_hands_is_refused_and_ended(manager, plugin, kind):
    path = plugin(
        "rogue",
        None,
        isolation="process",
        command=[sys.executable, "rogue.py"],
        files={"rogue.py": ROGUES[kind]},
        timeouts={"initialize": "2s"},
    )
    started = time.monotonic()
    with pytest.raises((WorkerProtocolError, PluginLoadError)) as caught:
        await manager.load_plugin(path)
    assert time.monotonic() - started < 20  # bounded by the plugin's initialize limit
    assert "rogue" in str(caught.value)
    assert not manager.is_loaded("rogue")
    assert _children_running(b"rogue.py") == []


MIDDLEWARE = """
    import os
    import tether
    from starlette.responses import JSONResponse


    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            ctx.register_middleware("tag", self.tag, priority=50)

        async def tag(self, request, call_next):
            if request.headers.get("x-block") == "yes":
                return JSONResponse({"blocked": request.url.path}, status_code=403)
            response = await call_next(request)
            response.headers["x-worker"] = str(os.getpid())
            return response
"""


def test_a_process_plugins_middleware_wraps_other_plugins_routes(live, plugin):
    routes = plugin("routes", ROUTES, permissions={"router": True})  # in-process routes
    server = live(routes, plugin("mw", MIDDLEWARE, isolation="process"))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        passed = client.get("/who", params={"q": "x"})
        blocked = client.get("/who", headers={"x-block": "yes"})
    assert passed.status_code == 200
    assert passed.json()["query"] == "x"  # the route ran, in the host
    assert passed.json()["pid"] == os.getpid()
    assert int(passed.headers["x-worker"]) != os.getpid()  # the middleware, in its worker
    assert blocked.status_code == 403
    assert blocked.json() == {"blocked": "/who"}


# --------------------------------------------------------------------------- review fixes

BINARY = """
    import tether
    from starlette.responses import Response


    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            ctx.router.post("/flip", self.flip)

        async def flip(self, request):
            return Response(bytes(reversed(await request.body())), media_type="image/png")
"""


def test_binary_bodies_cross_unchanged(live, plugin):
    server = live(plugin("bin", BINARY, isolation="process", permissions={"router": True}))
    payload = b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01" + bytes(range(256))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post("/flip", content=payload)
    assert answer.status_code == 200
    assert answer.content == bytes(reversed(payload))


SHADOWING = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            self.ctx = ctx
            ctx.on_release(self.goodbye)

        def close(self):
            return "the plugin's own close"

        def setup(self):
            return "the plugin's own setup"

        def describe(self):
            return "the plugin's own describe"

        async def goodbye(self):
            self.ctx.plugin_storage.set("released", True)  # a ctx call from on_release
"""


@asynctest
async def test_a_plugins_own_method_names_do_not_shadow_the_stand_in(manager, plugin):
    await _bring_up(manager, plugin("shadow", SHADOWING, isolation="process"))
    stand_in = manager.get_plugin("shadow")
    assert stand_in.close() == "the plugin's own close"
    assert stand_in.setup() == "the plugin's own setup"
    assert stand_in.describe() == "the plugin's own describe"
    pid = worker_pid(manager, "shadow")
    started = time.monotonic()
    await manager.unload_plugin("shadow")
    assert time.monotonic() - started < 5  # the release callback's ctx call did not hang
    assert wait_gone(pid)  # unloading ends the worker, whatever the plugin calls close
    kept = PluginStorage(manager.runtime.state_store(), "shadow")
    assert kept.get("released") is True  # its on_release ran, and reached the host


FLAKY = """
    import os
    import pathlib
    import tether

    MARK = pathlib.Path(__file__).with_name("broken")
    if MARK.exists():
        raise ImportError("the dependency is gone")

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            ctx.register_hook("app.crash", 10, self.crash)

        def crash(self, _):
            MARK.write_text("x")
            os._exit(1)
"""


@asynctest
async def test_a_restart_that_fails_is_a_crash_and_is_tried_again(manager, plugin):
    path = plugin("flaky", FLAKY, isolation="process")
    await _bring_up(manager, path)
    state = manager.get_plugin("flaky").tether_worker
    manager.runtime.hooks.call("app.crash")
    await _until(lambda: len(state.crashes) >= 2)  # the crash, then the failed restart
    assert state.state in ("restarting", "given up")
    (path / "broken").unlink()
    await _until(lambda: state.state in {"running", "given up"})
    assert state.state == "running", state.crashes
    assert state.restarts == 1
