"""Plugins written in JavaScript for Node.js, speaking tether's worker protocol.

examples/node-plugin/tether-worker.js is the worker side of docs/reference/protocol.md
for Node.js (standard library only). tests/test_isolation_conformance.py runs the
shipped example beside a Python twin (hooks, events, storage, errors, routes, stop);
this module checks the rest of the library through a probe plugin written here, with
the library copied next to it as another JS plugin would reuse it: cancellation that
is answered (the worker lives on), heartbeats, ``ping`` and unknown targets, logs and
prints, JavaScript error classes as the host's types, services both ways, values JSON
cannot carry, a crash and the restart, a factory that fails the load. Real ``node``
processes: the session fixture installs Debian's ``nodejs`` when there is none.
"""

from __future__ import annotations

import logging
import os
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

import tether
from helpers import PluginWriter, is_alive, wait_gone
from node_support import LIBRARY, copy_node_example, find_node
from test_isolation import _until, asynctest
from tether.errors import CallTimeoutError, PluginCrashedError, PluginLoadError, RemoteError

pytestmark = pytest.mark.skipif(os.name != "posix", reason="worker processes need POSIX")

PROBE = """
    'use strict';

    const { Plugin, PluginError, currentSignal, run } = require('./tether-worker');

    class Broken extends Error {}

    class Probe extends Plugin {
      async initialize(ctx) {
        super.initialize(ctx);
        const hook = (point, fn, options) => ctx.registerHook(point, 10, fn, options);
        await hook('probe.wait', () => this.waitForCancel(), { async: true, timeout: 0.3 });
        await hook('probe.print', (text) => { console.log(`printed: ${text}`); return text; });
        await hook('probe.type_error', () => { throw new TypeError('not a number'); });
        await hook('probe.broken', () => { throw new Broken('it broke'); });
        await hook('probe.lookup', () => { throw new PluginError('LookupError', 'nobody'); });
        await hook('probe.bigint', () => 10n);
        await hook('probe.crash', (code) => process.exit(code));
        await hook('probe.double', (n) => this.double(n));
        await hook('probe.pid', () => process.pid);
        await ctx.exportService('shouter', {
          shout: (text) => `${text.toUpperCase()}!`,
          async whisper(text) { return text.toLowerCase(); },
        });
      }

      async double(n) {
        this.doubler ??= await this.ctx.importService('doubler', 'doubler');
        return this.doubler.double(n);
      }

      async waitForCancel() {
        const signal = currentSignal();
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        await this.ctx.storage.set('aborted', true);
        return 'not sent: the host cancelled this call';
      }
    }

    run(Probe);
"""

DOUBLER = """
    import tether


    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            ctx.export_service("doubler", Doubler())
            ctx.register_hook("probe.shout", 10, self.shout)

        def start(self):
            self.shouter = self.ctx.import_service("probe", "shouter")

        def shout(self, text):
            return [self.shouter.shout(text)]


    class Doubler:
        def double(self, n):
            return n * 2
"""

HOOKS = ("probe.wait", "probe.print", "probe.type_error", "probe.broken", "probe.lookup",
         "probe.bigint", "probe.crash", "probe.double", "probe.pid", "probe.shout",
         "greet.make", "greet.recall")  # fmt: skip


@pytest.fixture(scope="session")
def node() -> str:
    found = find_node()
    if found is None:
        pytest.skip("node is not installed and `apt-get install -y nodejs` failed")
    return found


@pytest.fixture
def manager(tmp_path: Path) -> tether.PluginManager:
    made = tether.PluginManager(state_directory=tmp_path / "state", stop_timeout=5.0)
    for hook in HOOKS:
        made.runtime.hooks.declare(hook)
    return made


def _js_plugin(root: Path, node: str, name: str, source: str, **fields: object) -> Path:
    """A JS plugin directory: ``plugin.js`` and a copy of the library beside it."""
    root.mkdir(parents=True)
    manifest = {"name": name, "version": "1.0.0", "description": f"the {name} JS plugin",
                "author": "tests", "isolation": "process", "command": [node, "plugin.js"],
                **fields}  # fmt: skip
    (root / "plugin.yaml").write_text(yaml.safe_dump(manifest))
    (root / "plugin.js").write_text(textwrap.dedent(source))
    shutil.copy(LIBRARY, root / "tether-worker.js")
    return root


@pytest.fixture
def probe(tmp_path: Path, node: str) -> list[Path]:
    """The JS probe and the in-process Python plugin it trades services with."""
    js = _js_plugin(tmp_path / "probe", node, "probe", PROBE,
                    dependencies=[{"name": "doubler"}])  # fmt: skip
    python = PluginWriter(tmp_path / "py")("doubler", DOUBLER)
    return [python, js]


async def _up(manager: tether.PluginManager, *paths: Path) -> None:
    for path in paths:
        await manager.load_plugin(path)
    await manager.initialize_all()
    await manager.start_all()


def _worker(manager: tether.PluginManager, name: str = "probe"):  # type: ignore[no-untyped-def]
    return manager.get_plugin(name).tether_worker.worker  # type: ignore[attr-defined]


@asynctest
async def test_a_cancelled_call_is_answered_and_the_worker_lives_on(manager, probe):
    await _up(manager, *probe)
    worker = _worker(manager)
    [failure] = (await manager.runtime.hooks.run("probe.wait")).failures
    assert isinstance(failure.error, CallTimeoutError)
    storage = manager.get_scope("probe").storage()
    # the handler saw its AbortSignal fire and went on to the host's storage
    await _until(lambda: storage.get("aborted", False))
    assert storage.get("aborted") is True
    # the worker answered the cancel itself, so it is not killed for ignoring it
    await _until(lambda: not worker.channel.pending_cancels)
    assert not worker.channel.pending_cancels
    assert worker.ended is None
    assert manager.runtime.hooks.call("probe.pid").results == [worker.pid]


@asynctest
async def test_it_answers_ping_and_refuses_an_unknown_target(manager, probe):
    await _up(manager, *probe)
    worker = _worker(manager)
    assert worker.call("ping", [{"a": [1, 2.5, None, "x"]}], timeout=10) == {
        "a": [1, 2.5, None, "x"]
    }
    with pytest.raises(LookupError, match=r"no target 'no\.such' in this worker"):
        worker.call("no.such", timeout=10)


@asynctest
async def test_it_sends_heartbeats(manager, probe):
    await _up(manager, *probe)
    channel = _worker(manager).channel
    await _until(lambda: channel.last_heartbeat >= 2, limit=15)
    assert channel.last_heartbeat >= 2


@asynctest
async def test_logs_and_prints_reach_the_host_log_and_not_the_protocol(manager, node, tmp_path,
                                                                       caplog):  # fmt: skip
    caplog.set_level(logging.INFO)
    greeter = copy_node_example(node, tmp_path / "node-plugin")
    await _up(manager, greeter)
    logged = [r for r in caplog.records if r.name == "tether.plugin.node-greeter"]
    assert any(r.getMessage().startswith("node-greeter is ready") for r in logged)
    caplog.clear()
    probe = _js_plugin(tmp_path / "printer", node, "printer", PROBE)
    await _up(manager, probe)
    assert manager.runtime.hooks.call("probe.print", "hi").results == ["hi"]
    await _until(lambda: any("printed: hi" in r.getMessage() for r in caplog.records))
    printed = [r for r in caplog.records if "printed: hi" in r.getMessage()]
    assert [(r.name, r.levelno) for r in printed] == [("tether.worker.printer", logging.INFO)]


@asynctest
async def test_javascript_errors_arrive_as_the_hosts_types(manager, probe):
    await _up(manager, *probe)
    [type_error] = manager.runtime.hooks.call("probe.type_error").failures
    assert isinstance(type_error.error, TypeError)
    assert str(type_error.error) == "not a number"
    assert "plugin.js" in "".join(type_error.error.__notes__)  # the JS stack, as a note
    [broken] = manager.runtime.hooks.call("probe.broken").failures
    assert isinstance(broken.error, RemoteError)
    assert (broken.error.kind, broken.error.text) == ("js.Broken", "it broke")
    [lookup] = manager.runtime.hooks.call("probe.lookup").failures
    assert isinstance(lookup.error, LookupError)
    assert str(lookup.error) == "nobody"


@asynctest
async def test_a_value_json_cannot_carry_fails_the_call_with_a_type_error(manager, probe):
    await _up(manager, *probe)
    [failure] = manager.runtime.hooks.call("probe.bigint").failures
    assert isinstance(failure.error, TypeError)
    assert "bigint cannot be sent to the host" in str(failure.error)
    assert manager.runtime.hooks.call("probe.pid").failures == []  # and it still serves


@asynctest
async def test_services_cross_between_node_and_python(manager, probe):
    await _up(manager, *probe)
    # the JS plugin calls the Python plugin's service...
    assert manager.runtime.hooks.call("probe.double", 21).results == [42]
    # ...and the Python plugin calls the JS plugin's (a sync and an async method)
    assert manager.runtime.hooks.call("probe.shout", "hey").results == [["HEY!"]]
    shouter = manager.get_scope("doubler").context.import_service("probe", "shouter")
    assert await shouter.whisper("QUIET") == "quiet"


@asynctest
async def test_a_crashed_node_worker_is_restarted_with_its_hooks(manager, probe):
    await _up(manager, *probe)
    first = _worker(manager).pid
    [failure] = manager.runtime.hooks.call("probe.crash", 3).failures
    assert isinstance(failure.error, PluginCrashedError)
    assert "exit code 3" in str(failure.error)
    stand_in = manager.get_plugin("probe").tether_worker  # type: ignore[attr-defined]
    await _until(lambda: stand_in.restarts == 1, limit=15)  # type: ignore[attr-defined]
    assert wait_gone(first)
    [pid] = manager.runtime.hooks.call("probe.pid").results
    assert pid == _worker(manager).pid != first


@asynctest
async def test_a_factory_that_throws_fails_the_load_naming_the_plugin(manager, node, tmp_path):
    source = """
        const { run } = require('./tether-worker');
        run(() => { throw new Error('no config file'); });
    """
    path = _js_plugin(tmp_path / "bad", node, "bad", source)
    with pytest.raises(PluginLoadError, match="bad") as caught:
        await manager.load_plugin(path)
    assert "no config file" in str(caught.value)


def _cwd_and_program(
    pid: int | None, directory: Path | None = None, program: str | None = None
) -> tuple[str, str]:
    """Where process ``pid`` runs and what program; without a pid, ``directory`` and
    ``program`` resolved the same way."""
    if pid is not None:
        directory, program = Path(f"/proc/{pid}/cwd"), f"/proc/{pid}/exe"
    return os.path.realpath(str(directory)), os.path.realpath(str(program))


@asynctest
async def test_the_example_runs_under_its_own_manifest(manager, node, tmp_path):
    """The shipped example, as it is: its worker is `node`, in its directory."""
    greeter = copy_node_example(node, tmp_path / "node-plugin")
    await _up(manager, greeter)
    worker = _worker(manager, "node-greeter")
    assert _cwd_and_program(worker.pid) == _cwd_and_program(None, greeter, node)
    await manager.unload_plugin("node-greeter")
    assert wait_gone(worker.pid)
    assert not is_alive(worker.pid)


def test_the_cli_validates_and_describes_a_plugin_without_python_code():
    """A `command` plugin has no entry to find: validate passes it, info says so."""
    from click.testing import CliRunner

    from node_support import EXAMPLE
    from tether.cli import cli

    runner = CliRunner()
    validated = runner.invoke(cli, ["plugins", "validate", str(EXAMPLE)])
    assert validated.exit_code == 0, validated.output
    assert "node-greeter 1.0.0 (worker: node plugin.js)" in validated.output
    info = runner.invoke(cli, ["plugins", "info", str(EXAMPLE)])
    assert info.exit_code == 0, info.output
    assert "entry: none (its worker is a program of its own" in info.output
    assert "worker program: node plugin.js" in info.output
