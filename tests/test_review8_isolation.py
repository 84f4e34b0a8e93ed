"""Review 8 reproducers: one plugin's failure or reach affecting other plugins or the host.

Each test asserts the documented behaviour, so it fails while the bug exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

import tether
from helpers import PluginWriter
from tether import TetherConfig
from tether.errors import TetherError
from tether.testing import PluginHarness

# --------------------------------------------------------------------------- events


@pytest.mark.parametrize("kind", ["asyncio.CancelledError", "Poison"])
def test_an_event_handler_raising_a_base_exception_does_not_kill_its_subscription(tmp_path, kind):
    """A handler that raises ``CancelledError`` (say, from awaiting a task that was
    cancelled) or another ``BaseException`` kills its subscription's worker for good:
    later events are never delivered, nothing is counted against the plugin, the
    subscription still says active, and under ``events.policy: wait`` publishers block
    forever once its queue is full."""
    code = f"""
    import asyncio

    class Poison(BaseException):
        pass

    class Plugin:
        def initialize(self, ctx):
            self.seen = 0
            ctx.subscribe_event("x.*", self.on)
        def start(self): pass
        def stop(self): pass
        def cleanup(self): pass

        def on(self, event):
            self.seen += 1
            if self.seen == 1:
                raise {kind}("poison")
    """
    write = PluginWriter(tmp_path / "plugins")
    path = write("sub", code, events={"subscribes": ["x.*"]})
    framework = TetherConfig.model_validate({"events": {"queue_size": 10}})
    with PluginHarness(path, framework_config=framework) as harness:
        runtime = harness.manager.runtime

        async def publish() -> None:
            for i in range(30):
                await runtime.events.publish("x.y", {"i": i})

        harness.run(asyncio.wait_for(publish(), 5))  # observed: TimeoutError (blocked)
        deadline = time.monotonic() + 5
        while harness.plugin.seen < 30 and time.monotonic() < deadline:
            harness.run(asyncio.sleep(0.05))
        assert harness.plugin.seen == 30
        assert harness.manager.get_handle("sub").error_count == 1


# --------------------------------------------------------------------------- odd exceptions


BAD_STR = """
class Odd(Exception):
    def __str__(self):
        raise RuntimeError("__str__ exploded")


class Plugin:
    def initialize(self, ctx): pass
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass

    def boom(self):
        raise Odd()
"""


def test_an_exception_with_a_broken_str_does_not_break_health(tmp_path):
    """One exception whose ``__str__`` raises, recorded as a plugin's last error, makes
    ``PluginHealth.to_dict()`` raise: ``GET /admin/health`` (every plugin) and
    ``/admin/plugins/NAME`` answer 500 until another error replaces it, and the state
    store flush and the unload listener fail."""
    write = PluginWriter(tmp_path / "plugins")
    path = write("odd", BAD_STR)
    with PluginHarness(path) as harness:
        with contextlib.suppress(Exception):  # the plugin's own Odd()
            harness.manager.get_handle("odd").call("boom")
        health = harness.manager.get_plugin_health("odd").to_dict()
        assert health["error_count"] == 1
        assert "Odd" in str(health["last_error"])


SLOTTED = """
class Slotted(Exception):
    def __setattr__(self, name, value):
        raise AttributeError(name)  # an exception that takes no attributes


class Plugin:
    def initialize(self, ctx):
        ctx.export_service("Svc", self)
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass

    def boom(self):
        raise Slotted("x")
"""
CALLER = """
class Plugin:
    def initialize(self, ctx):
        self.svc = ctx.import_service("svc", "Svc")
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass

    def call(self):
        return self.svc.boom()
"""


def test_an_exception_refusing_attributes_is_counted_against_the_innermost_plugin_only(
    tmp_path,
):
    """Attribution marks the exception; one that refuses attributes is counted against
    every plugin it passes up through (the caller too), and ``tether.blame`` is None.
    Docs: an error counts against the innermost plugin it leaves, once."""
    write = PluginWriter(tmp_path / "plugins")
    svc = write("svc", SLOTTED, exports=[{"name": "Svc"}])
    caller = write("caller", CALLER, dependencies=[{"name": "svc"}])
    with PluginHarness(caller, dependencies=[svc]) as harness:
        with pytest.raises(Exception, match="x"):
            harness.manager.get_handle("caller").call("call")
        assert harness.manager.get_handle("svc").error_count == 1
        assert harness.manager.get_handle("caller").error_count == 0


def test_validate_config_raising_something_else_fails_the_load_cleanly(tmp_path):
    """``validate_config`` (Configurable) raising, say, KeyError escapes ``load_plugin``
    raw, and ``tether plugins test`` prints a bare traceback instead of a failed load
    step. Expected: a TetherError naming the plugin."""
    code = """
    class Plugin:
        def initialize(self, ctx): pass
        def start(self): pass
        def stop(self): pass
        def cleanup(self): pass
        def validate_config(self, config):
            return config["missing"]
    """
    write = PluginWriter(tmp_path / "plugins")
    path = write("cfg", code)
    harness = PluginHarness(path)
    try:
        with pytest.raises(TetherError, match="cfg"):
            harness.start()
    finally:
        harness.close()


def test_an_async_validate_config_is_not_silently_ignored(tmp_path):
    """``async def validate_config`` is called and never awaited (RuntimeWarning): its
    refusal is lost and the plugin loads with the config it refused."""
    code = """
    class Plugin:
        def initialize(self, ctx): pass
        def start(self): pass
        def stop(self): pass
        def cleanup(self): pass
        async def validate_config(self, config):
            raise ValueError("refused")
    """
    write = PluginWriter(tmp_path / "plugins")
    path = write("acfg", code)
    harness = PluginHarness(path)
    try:
        with pytest.raises(TetherError):
            harness.start()
    finally:
        harness.close()


KILLER = """
class Bye(KeyboardInterrupt):
    pass


class Plugin:
    def initialize(self, ctx):
        self.ctx = ctx
        ctx.subscribe_event("boom.*", self.on)
        ctx.router.get("/trigger", self.trigger)
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass

    async def trigger(self, request):
        await self.ctx.publish_event("boom.now", {})
        return "published"

    def on(self, event):
        raise Bye("a plugin bug")
"""


def test_an_event_handler_raising_keyboard_interrupt_does_not_take_the_server_down(tmp_path):
    """Observed with ``tether serve``: after ``GET /trigger`` the whole server exits 130
    ("Interrupted.", no graceful shutdown): the worker task re-raises the
    KeyboardInterrupt out of the event loop (the seam only catches ``Exception``). Run
    in a subprocess: in a LiveServer the interrupt aborts the whole pytest session."""
    write = PluginWriter(tmp_path / "plugins")
    write(
        "killer",
        KILLER,
        directory="killer",
        permissions={"router": True},
        events={"publishes": ["boom.now"], "subscribes": ["boom.*"]},
    )
    config = tmp_path / "app.yaml"
    config.write_text(
        yaml.safe_dump({"plugins": {"plugins": [{"name": "killer", "path": "plugins/killer"}]}}),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(Path(tether.__file__).parent.parent)}
    command = [sys.executable, "-c", "from tether.cli import main; main()"]
    server = subprocess.Popen(
        [*command, "--config", str(config), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url is not None, line
        assert httpx.get(url.group() + "/trigger", timeout=10).text == "published"
        time.sleep(1)
        assert server.poll() is None, f"tether serve exited with {server.returncode}"
        assert httpx.get(url.group() + "/healthz", timeout=5).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        if server.stdout is not None:
            server.stdout.close()
