"""Process plugins: the call path and the zygote, against real worker processes.

A synchronous caller reads its own answer off the socket when nobody else reads it;
these tests drive that from several threads at once, with awaited calls and nested
calls back into the host in between, and check every answer reaches its own caller.
Workers after a host's first are forked by the zygote: these tests check that such a
worker is an ordinary one (its crash's exit code, its unload), and that neither the
zygote nor its workers outlive a host that is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import tether
from helpers import PluginWriter, is_alive, wait_gone
from tether.errors import PluginCrashedError
from tether.isolation import _zygote

pytestmark = pytest.mark.skipif(os.name != "posix", reason="worker processes need POSIX")

PLUGIN = """
    import os
    import tether


    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            self.ctx = ctx
            ctx.register_hook("app.echo", 10, self.echo)
            ctx.register_hook("app.aecho", 10, self.aecho)
            ctx.register_hook("app.nested", 10, self.nested)
            ctx.register_hook("app.exit", 10, self.exit)

        def echo(self, data):
            return {"pid": os.getpid(), "data": data}

        async def aecho(self, data):
            return ["async", data]

        def nested(self, data):
            # calls back into the host (storage) while the host waits for this answer
            self.ctx.plugin_storage.set(f"k{data}", data)
            return self.ctx.plugin_storage.get(f"k{data}")

        def exit(self, code):
            os._exit(code)
"""
HOOKS = ("app.echo", "app.aecho", "app.nested", "app.exit")


def _manager(root: Path) -> tether.PluginManager:
    made = tether.PluginManager(state_directory=root / "state", stop_timeout=5.0)
    for hook in HOOKS:
        made.runtime.hooks.declare(hook)
    return made


def _run(body: Callable[[tether.PluginManager], Awaitable[None]], root: Path) -> None:
    async def main() -> None:
        manager = _manager(root)
        try:
            await body(manager)
        finally:
            await manager.aclose()

    asyncio.run(main())


async def _bring_up(manager: tether.PluginManager, path: Path) -> None:
    await manager.load_plugin(path)
    await manager.initialize_all()
    await manager.start_all()


async def _forked(manager: tether.PluginManager, write: PluginWriter, name: str) -> tuple[str, int]:
    """Load process plugins named ``name``, ``name1``... until one's worker was forked
    by the zygote (the host's first worker starts directly while the zygote boots); its
    name and pid. Bounded: at most 20 loads, 15 s."""
    deadline = time.monotonic() + 15
    for attempt in range(20):
        label = name if attempt == 0 else f"{name}{attempt}"
        await _bring_up(manager, write(label, PLUGIN, isolation="process"))
        worker = manager.get_plugin(label).tether_worker.worker  # type: ignore[attr-defined]
        if isinstance(worker.process, _zygote.ForkedProcess):
            return label, int(worker.pid)
        await manager.unload_plugin(label)
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    raise AssertionError("no worker was forked by the zygote")


# --------------------------------------------------------------------------- the call path


def test_sync_calls_from_many_threads_each_get_their_own_answer(tmp_path):
    """Four threads call a sync hook at once while the loop awaits an async one: the
    read role passes between callers and the reader thread; nothing is lost or
    crossed, and nothing hangs (each thread is bounded)."""
    write = PluginWriter(tmp_path / "plugins")

    async def body(manager: tether.PluginManager) -> None:
        await _bring_up(manager, write("echo", PLUGIN, isolation="process"))
        hooks = manager.runtime.hooks
        wrong: list[object] = []

        def caller(n: int) -> None:
            for i in range(200):
                outcome = hooks.call("app.echo", [n, i])
                if outcome.failures or outcome.results[0]["data"] != [n, i]:
                    wrong.append((n, i, outcome.results, outcome.failures))

        threads = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(4)]
        for thread in threads:
            thread.start()
        for i in range(100):
            outcome = await asyncio.wait_for(hooks.run("app.aecho", i), 10)
            assert outcome.results == [["async", i]]
        for thread in threads:
            await asyncio.to_thread(thread.join, 30)
            assert not thread.is_alive()
        assert wrong == []

    _run(body, tmp_path)


def test_a_call_that_calls_back_into_the_host_nests(tmp_path):
    """The worker's handler calls the host's storage while the host's caller waits: the
    caller, reading the socket itself, serves that request in place."""
    write = PluginWriter(tmp_path / "plugins")

    async def body(manager: tether.PluginManager) -> None:
        await _bring_up(manager, write("echo", PLUGIN, isolation="process"))
        for i in range(50):
            assert manager.runtime.hooks.call("app.nested", i).results == [i]
        assert manager.get_scope("echo").storage().get("k49") == 49

    _run(body, tmp_path)


def test_many_awaited_calls_at_once_all_answer(tmp_path):
    """A batch of concurrent awaited calls (answers handed to the loop in batches, the
    worker starting a read's requests in one go) all answer, each with its own value."""
    write = PluginWriter(tmp_path / "plugins")

    async def body(manager: tether.PluginManager) -> None:
        await _bring_up(manager, write("echo", PLUGIN, isolation="process"))
        runs = [manager.runtime.hooks.run("app.aecho", i) for i in range(300)]
        outcomes = await asyncio.wait_for(asyncio.gather(*runs), 30)
        assert [o.results for o in outcomes] == [[["async", i]] for i in range(300)]

    _run(body, tmp_path)


# --------------------------------------------------------------------------- the zygote


def test_a_forked_worker_is_an_ordinary_worker(tmp_path):
    """A worker the zygote forked answers from its own process, its crash fails the call
    with its exit code, and it is gone after the crash."""
    write = PluginWriter(tmp_path / "plugins")

    async def body(manager: tether.PluginManager) -> None:
        name, pid = await _forked(manager, write, "forked")
        outcome = manager.runtime.hooks.call("app.echo", "hi")
        assert [r["pid"] for r in outcome.results] == [pid]
        [failure] = manager.runtime.hooks.call("app.exit", 3).failures
        assert isinstance(failure.error, PluginCrashedError)
        assert "exit code 3" in str(failure.error)
        assert name in str(failure.error)
        assert wait_gone(pid)

    _run(body, tmp_path)


def test_an_unloaded_forked_worker_is_gone(tmp_path):
    write = PluginWriter(tmp_path / "plugins")

    async def body(manager: tether.PluginManager) -> None:
        name, pid = await _forked(manager, write, "gone")
        await manager.unload_plugin(name)
        assert wait_gone(pid)

    _run(body, tmp_path)


HOST = """
import asyncio, sys, time
from pathlib import Path
import tether
from tether.isolation import _zygote

async def main():
    root = Path(sys.argv[1])
    manager = tether.PluginManager(state_directory=root / "state")
    for hook in ("app.echo", "app.aecho", "app.nested", "app.exit"):
        manager.runtime.hooks.declare(hook)
    pids = []
    for n in range(20):
        await manager.load_plugin(root / "plugins" / f"p{n}")
        await manager.initialize_all()
        await manager.start_all()
        worker = manager.get_plugin(f"p{n}").tether_worker.worker
        pids.append(worker.pid)
        if isinstance(worker.process, _zygote.ForkedProcess):
            break
        await asyncio.sleep(0.3)
    else:
        sys.exit("no worker was forked")
    print(_zygote._current.process.pid, *pids, flush=True)
    time.sleep(60)

asyncio.run(main())
"""


def test_a_killed_host_leaves_no_zygote_and_no_worker(tmp_path):
    """SIGKILL the host (no clean-up runs): the zygote sees its socket close and ends,
    the workers see theirs close and end; nothing of the host is left running."""
    write = PluginWriter(tmp_path / "plugins")
    for n in range(20):
        write(f"p{n}", textwrap.dedent(PLUGIN), isolation="process", directory=f"p{n}")
    src = str(Path(tether.__file__).resolve().parent.parent)
    tests = str(Path(__file__).resolve().parent)
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(tmp_path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([src, tests])},
    )
    try:
        assert host.stdout is not None
        line = host.stdout.readline().decode()
        pids = [int(p) for p in line.split()]
        assert len(pids) >= 2, line
        assert all(is_alive(pid) for pid in pids)
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        assert host.stdout is not None
        host.stdout.close()
    for pid in pids:
        assert wait_gone(pid), f"pid {pid} outlived its host"


# --------------------------------------------------------------------------- the channel


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_a_channel_pair_carries_small_large_and_unanswered_calls(codec):
    """Two channels over a real socket pair: small answers (one frame per read, decoded
    in place), a 1 MiB one (many reads), a call nobody answers (``TimeoutError``, and
    the channel still works after), with both codecs."""
    from tether.isolation._protocol import Channel, Request, codec_named

    left_sock, right_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    right: Channel

    def serve(request: Request) -> None:
        if request.target == "echo":
            right.answer(request.id, request.args[0])
        # "ignore": never answered

    left = Channel(
        left_sock, codec_named(codec), name="left", on_request=lambda _r: None,
        to_error=RuntimeError,
    )  # fmt: skip
    right = Channel(
        right_sock, codec_named(codec), name="right", on_request=serve, to_error=RuntimeError
    )
    left.start()
    right.start()
    try:
        for i in range(200):
            assert left.call("echo", [{"i": i}], timeout=10) == {"i": i}
        big = "x" * (1 << 20)
        assert left.call("echo", (big,), timeout=10) == big
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            left.call("ignore", [1], timeout=0.3)
        assert time.monotonic() - started < 5
        assert left.call("echo", ["after"], timeout=10) == "after"
    finally:
        left.close()
        right.close()


def test_workers_start_again_when_the_zygote_is_killed(tmp_path):
    """SIGKILL the zygote: its workers lose nothing they need from it (they keep
    answering), the next load starts its worker directly, and a new zygote forks the
    ones after."""
    write = PluginWriter(tmp_path / "plugins")

    async def body(manager: tether.PluginManager) -> None:
        _name, pid = await _forked(manager, write, "before")
        warm = _zygote._current  # the test kills the host's zygote
        assert warm is not None
        os.kill(warm.process.pid, signal.SIGKILL)
        warm.process.wait(10)
        assert [r["pid"] for r in manager.runtime.hooks.call("app.echo", 1).results] == [pid]
        await _bring_up(manager, write("direct", PLUGIN, isolation="process"))
        outcome = manager.runtime.hooks.call("app.echo", 2)
        assert sorted(r["data"] for r in outcome.results) == [2, 2]
        later, _pid = await _forked(manager, write, "after")
        assert _zygote._current is not warm
        assert later.startswith("after")

    _run(body, tmp_path)
