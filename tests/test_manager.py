"""PluginManager end to end: real plugins in tmp_path, real imports, real event loops."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import re
import shutil
import threading
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from helpers import PluginWriter
from tether import PluginInfo, PluginManager, PluginStatus, SyncPluginManager
from tether._loader import loaded_namespaces
from tether.errors import (
    ConfigError,
    DependentsRunningError,
    FrameworkVersionMismatchError,
    InterfaceError,
    MissingDependencyError,
    PermissionMismatchError,
    PluginImportError,
    PluginLifecycleError,
    PluginLoadError,
    PluginNameConflictError,
    PluginNotFoundError,
    StopAllError,
)

S = PluginStatus
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# One module serves every recording plugin. Each plugin directory carries a
# behaviour.json saying its name, the shared log file, and which lifecycle
# methods fail or hang. Every call appends "<name>:<method>" to the log.
RECORDER = """\
import asyncio
import json
import threading
from pathlib import Path

SETTINGS = json.loads(Path(__file__).with_name("behaviour.json").read_text(encoding="utf-8"))
NAME = SETTINGS["name"]


def record(event):
    with Path(SETTINGS["log"]).open("a", encoding="utf-8") as handle:
        handle.write(f"{NAME}:{event}\\n")


class Failure(RuntimeError):
    pass


class SyncPlugin:
    def __init__(self):
        self.release = threading.Event()
        self.thread = None

    def _step(self, method):
        record(method)
        if method in SETTINGS["fail"]:
            raise Failure(f"{NAME} {method} exploded")
        if method in SETTINGS["hang"]:
            self.thread = threading.current_thread()
            self.release.wait(5)

    def initialize(self, ctx):
        self.ctx = ctx
        ctx.on_release(lambda: record("release"))
        self._step("initialize")

    def start(self):
        self._step("start")

    def stop(self):
        self._step("stop")

    def cleanup(self):
        self._step("cleanup")


class AsyncPlugin:
    async def _step(self, method):
        record(method)
        await asyncio.sleep(0)
        if method in SETTINGS["fail"]:
            raise Failure(f"{NAME} {method} exploded")
        if method in SETTINGS["hang"]:
            await asyncio.sleep(5)

    async def initialize(self, ctx):
        self.ctx = ctx
        ctx.on_release(lambda: record("release"))
        await self._step("initialize")

    async def start(self):
        await self._step("start")

    async def stop(self):
        await self._step("stop")

    async def cleanup(self):
        await self._step("cleanup")
"""


class Plugins:
    """Write recording plugins into tmp_path and read back what they did."""

    def __init__(self, root: Path) -> None:
        self.write = PluginWriter(root / "plugins")
        self.log = root / "events.log"

    def __call__(
        self,
        name: str,
        *,
        deps: tuple[str, ...] = (),
        fail: tuple[str, ...] = (),
        hang: tuple[str, ...] = (),
        style: str = "sync",
        **fields: object,
    ) -> Path:
        behaviour = {"name": name, "log": str(self.log), "fail": fail, "hang": hang}
        return self.write(
            name,
            RECORDER,
            entry=f"plugin:{style.capitalize()}Plugin",
            dependencies=[{"name": d} for d in deps],
            files={"behaviour.json": json.dumps(behaviour)},
            **fields,
        )

    def events(self) -> list[str]:
        if not self.log.exists():
            return []
        return self.log.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def plugins(tmp_path):
    return Plugins(tmp_path)


@pytest.fixture
def make_plugin(tmp_path):
    return PluginWriter(tmp_path / "other")


@pytest.fixture
def manager():
    manager = PluginManager(stop_timeout=2.0)
    yield manager
    asyncio.run(manager.aclose())  # stop and unload whatever a test left loaded


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


def statuses(manager):
    return {info.name: info.status for info in manager.list_plugins()}


# --------------------------------------------------------------------------- lifecycle


@asynctest
async def test_lifecycle_in_dependency_order_and_stop_in_reverse(manager, plugins):
    paths = {
        "c": plugins("c", deps=("b",)),
        "a": plugins("a"),
        "b": plugins("b", deps=("a",), style="async"),
    }
    for path in paths.values():  # loaded dependents first, on purpose
        await manager.load_plugin(path)
    assert set(statuses(manager).values()) == {S.LOADING}
    assert plugins.events() == []  # loading imports, it does not initialize

    await manager.initialize_all()
    assert statuses(manager) == {"a": S.INITIALIZED, "b": S.INITIALIZED, "c": S.INITIALIZED}
    await manager.start_all()
    assert statuses(manager) == {"a": S.RUNNING, "b": S.RUNNING, "c": S.RUNNING}
    await manager.stop_all()
    assert statuses(manager) == {"a": S.STOPPED, "b": S.STOPPED, "c": S.STOPPED}

    assert plugins.events() == [
        "a:initialize",
        "b:initialize",
        "c:initialize",
        "a:start",
        "b:start",
        "c:start",
        "c:stop",
        "b:stop",
        "a:stop",
    ]
    assert [info.name for info in manager.list_plugins()] == ["a", "b", "c"]
    assert manager.get_dependency_graph() == {"a": [], "b": ["a"], "c": ["b"]}
    assert manager.dependents("a") == ["b", "c"]


@asynctest
async def test_stopped_plugins_start_again(manager, plugins):
    await manager.load_plugin(plugins("a"))
    await manager.initialize_all()
    await manager.start_all()
    await manager.stop_all()
    await manager.start_all()
    assert manager.get_status("a") is S.RUNNING
    assert plugins.events() == ["a:initialize", "a:start", "a:stop", "a:start"]


@asynctest
async def test_initialize_failure_stops_the_run(manager, plugins):
    for name, deps, fail in [("a", (), ()), ("b", ("a",), ("initialize",)), ("c", ("b",), ())]:
        await manager.load_plugin(plugins(name, deps=deps, fail=fail))

    with pytest.raises(PluginLifecycleError) as caught:
        await manager.initialize_all()

    error = caught.value
    assert str(error) == "plugin initialization failed: plugin 'b': Failure: b initialize exploded"
    assert (error.plugin, error.step) == ("b", "initialization")
    assert type(error.__cause__).__name__ == "Failure"
    assert manager.last_error("b") is error.__cause__
    assert statuses(manager) == {"a": S.INITIALIZED, "b": S.ERROR, "c": S.LOADING}
    assert plugins.events() == ["a:initialize", "b:initialize"]

    await manager.start_all()  # only what initialized starts
    assert statuses(manager) == {"a": S.RUNNING, "b": S.ERROR, "c": S.LOADING}


@asynctest
async def test_async_initialize_failure(manager, plugins):
    await manager.load_plugin(plugins("a", fail=("initialize",), style="async"))
    with pytest.raises(PluginLifecycleError, match="plugin initialization failed: plugin 'a'"):
        await manager.initialize_all()
    assert manager.get_status("a") is S.ERROR


@asynctest
async def test_start_failure_stops_the_run(manager, plugins):
    for name, deps, fail in [("a", (), ()), ("b", ("a",), ("start",)), ("c", ("b",), ())]:
        await manager.load_plugin(plugins(name, deps=deps, fail=fail, style="async"))
    await manager.initialize_all()

    with pytest.raises(PluginLifecycleError) as caught:
        await manager.start_all()

    assert str(caught.value) == "plugin start failed: plugin 'b': Failure: b start exploded"
    assert caught.value.step == "start"
    assert statuses(manager) == {"a": S.RUNNING, "b": S.ERROR, "c": S.INITIALIZED}
    assert plugins.events()[-2:] == ["a:start", "b:start"]

    await manager.stop_all()
    assert statuses(manager) == {"a": S.STOPPED, "b": S.ERROR, "c": S.INITIALIZED}


@asynctest
async def test_stop_all_carries_on_past_failures_and_reports_them_all(manager, plugins):
    await manager.load_plugin(plugins("first"))
    await manager.load_plugin(plugins("raises", fail=("stop",)))
    await manager.load_plugin(plugins("hangs-sync", hang=("stop",)))
    await manager.load_plugin(plugins("hangs-async", hang=("stop",), style="async"))
    await manager.load_plugin(plugins("last", style="async"))
    await manager.initialize_all()
    await manager.start_all()
    hung = manager.get_plugin("hangs-sync")

    try:
        with pytest.raises(StopAllError) as caught:
            await manager.stop_all(timeout=0.2)
    finally:
        hung.release.set()  # let the blocked thread finish while this loop still runs
        if hung.thread is not None:
            hung.thread.join(5)

    error = caught.value
    by_plugin = {f.plugin: f for f in error.failures}
    assert set(by_plugin) == {"raises", "hangs-sync", "hangs-async"}
    assert all(f.step == "stop" for f in error.failures)
    assert by_plugin["raises"].cause_text == "Failure: raises stop exploded"
    assert "did not return within 0.2s" in by_plugin["hangs-sync"].cause_text
    assert "did not return within 0.2s" in by_plugin["hangs-async"].cause_text
    assert str(error).startswith("3 plugin(s) failed to stop: ")
    for name in by_plugin:
        assert name in str(error)
    assert statuses(manager) == {
        "first": S.STOPPED,
        "raises": S.ERROR,
        "hangs-sync": S.ERROR,
        "hangs-async": S.ERROR,
        "last": S.STOPPED,
    }
    stops = [e for e in plugins.events() if e.endswith(":stop")]
    assert stops == [
        "last:stop",
        "hangs-async:stop",
        "hangs-sync:stop",
        "raises:stop",
        "first:stop",
    ]


@asynctest
async def test_manager_stop_timeout_is_the_default(plugins):
    manager = PluginManager(stop_timeout=0.2)
    await manager.load_plugin(plugins("hangs", hang=("stop",), style="async"))
    await manager.initialize_all()
    await manager.start_all()
    with pytest.raises(StopAllError, match=r"did not return within 0\.2s"):
        await manager.stop_all()
    await manager.aclose()


def test_hung_sync_stop_finishing_after_the_loop_closed_is_quiet(manager, plugins, monkeypatch):
    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)

    async def scenario():
        await manager.load_plugin(plugins("hangs", hang=("stop",)))
        await manager.initialize_all()
        await manager.start_all()
        with pytest.raises(StopAllError):
            await manager.stop_all(timeout=0.2)

    asyncio.run(scenario())  # the loop closes while stop() is still blocked
    hung = manager.get_plugin("hangs")
    hung.release.set()
    hung.thread.join(5)
    assert [args.exc_value for args in thread_errors] == []


def test_sync_stop_returning_an_awaitable_is_awaited(manager, make_plugin, tmp_path):
    log = tmp_path / "awaited.log"
    code = f"""\
        from pathlib import Path

        LOG = Path({str(log)!r})


        class Plugin:
            def initialize(self, ctx):
                return self._record("initialize")

            def start(self):
                return self._record("start")

            def stop(self):
                return self._record("stop")

            def cleanup(self):
                return None

            async def _record(self, what):
                with LOG.open("a") as handle:
                    handle.write(what + "\\n")
    """

    async def scenario():
        await manager.load_plugin(make_plugin("returns-awaitables", code))
        await manager.initialize_all()
        await manager.start_all()
        await manager.stop_all()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "coroutine ... never awaited"
        asyncio.run(scenario())
        gc.collect()
    assert log.read_text().split() == ["initialize", "start", "stop"]


@asynctest
async def test_timeout_error_raised_by_stop_is_not_reported_as_a_hang(manager, make_plugin):
    code = """\
        class Plugin:
            def initialize(self, ctx):
                pass

            def start(self):
                pass

            def stop(self):
                raise TimeoutError("database did not answer")

            def cleanup(self):
                pass
    """
    await manager.load_plugin(make_plugin("times-out", code))
    await manager.initialize_all()
    await manager.start_all()
    with pytest.raises(StopAllError) as caught:
        await manager.stop_all(timeout=5)
    assert "database did not answer" in caught.value.failures[0].cause_text


# --------------------------------------------------------------------------- unload


@asynctest
async def test_unload_refused_while_running_plugins_depend_on_it(manager, plugins):
    await manager.load_plugin(plugins("base"))
    await manager.load_plugin(plugins("middle", deps=("base",)))
    await manager.load_plugin(plugins("top", deps=("middle",)))
    await manager.load_plugin(plugins("idle", deps=("base",)))
    await manager.initialize_all()
    await manager.start_all()
    await manager.unload_plugin("idle")  # nothing depends on it

    with pytest.raises(DependentsRunningError) as caught:
        await manager.unload_plugin("base")

    assert str(caught.value) == (
        "cannot unload plugin 'base': running plugins depend on it: 'middle', 'top'"
    )
    assert caught.value.dependents == ("middle", "top")
    assert "force=True" in caught.value.hint
    assert manager.get_status("base") is S.RUNNING
    assert "base:stop" not in plugins.events()


@asynctest
async def test_unload_of_a_dependency_of_stopped_plugins_is_allowed(manager, plugins):
    await manager.load_plugin(plugins("base"))
    await manager.load_plugin(plugins("user", deps=("base",)))
    await manager.initialize_all()
    await manager.start_all()
    await manager.stop_all()
    await manager.unload_plugin("base")
    assert not manager.is_loaded("base")
    assert manager.is_loaded("user")


@asynctest
async def test_forced_unload_proceeds(manager, plugins):
    await manager.load_plugin(plugins("base"))
    await manager.load_plugin(plugins("user", deps=("base",)))
    await manager.initialize_all()
    await manager.start_all()

    await manager.unload_plugin("base", force=True)

    assert not manager.is_loaded("base")
    assert manager.get_status("user") is S.RUNNING
    assert plugins.events()[-3:] == ["base:stop", "base:release", "base:cleanup"]


@pytest.mark.parametrize("style", ["sync", "async"])
@asynctest
async def test_unload_stops_releases_cleans_up_and_forgets(manager, plugins, style):
    await manager.load_plugin(plugins("solo", style=style))
    await manager.initialize_all()
    await manager.start_all()
    context = manager.get_context("solo")
    released = []
    context.on_release(lambda: released.append("first registered"))
    context.on_release(lambda: released.append("last registered"))
    namespace = manager.get_plugin("solo").__module__.rpartition(".")[0]
    assert namespace in loaded_namespaces()

    await manager.unload_plugin("solo")

    assert plugins.events() == [
        "solo:initialize",
        "solo:start",
        "solo:stop",
        "solo:release",
        "solo:cleanup",
    ]
    assert released == ["last registered", "first registered"]
    assert not manager.is_loaded("solo")
    assert manager.list_plugins() == []
    assert namespace not in loaded_namespaces()
    with pytest.raises(PluginNotFoundError):
        manager.get_plugin("solo")


@asynctest
async def test_a_failing_release_callback_does_not_stop_the_unload(manager, plugins):
    await manager.load_plugin(plugins("solo"))
    await manager.initialize_all()

    def broken():
        raise RuntimeError("release failed")

    manager.get_context("solo").on_release(broken)
    await manager.unload_plugin("solo")
    assert plugins.events() == ["solo:initialize", "solo:release", "solo:cleanup"]
    assert not manager.is_loaded("solo")


@asynctest
async def test_unload_of_a_never_initialized_plugin_skips_cleanup(manager, plugins):
    await manager.load_plugin(plugins("fresh"))
    await manager.unload_plugin("fresh")
    assert plugins.events() == []
    assert not manager.is_loaded("fresh")


@asynctest
async def test_cleanup_failure_still_unloads_then_raises(manager, plugins):
    await manager.load_plugin(plugins("messy", fail=("cleanup",)))
    await manager.initialize_all()
    with pytest.raises(PluginLifecycleError, match="plugin cleanup failed: plugin 'messy'"):
        await manager.unload_plugin("messy")
    assert not manager.is_loaded("messy")


# --------------------------------------------------------------------------- loading


@asynctest
async def test_name_conflict_names_both_places(manager, plugins, make_plugin):
    first = plugins("twin")
    second = make_plugin("twin", "", directory="elsewhere")
    await manager.load_plugin(first)
    before = loaded_namespaces()

    with pytest.raises(PluginNameConflictError) as caught:
        await manager.load_plugin(second)

    assert str(caught.value) == (
        f"plugin name conflict: twin already loaded from {first} (also found at {second})"
    )
    assert (caught.value.first, caught.value.second) == (str(first), str(second))
    assert loaded_namespaces() == before


@asynctest
async def test_framework_version_mismatch(plugins):
    path = plugins("future", framework={"version": ">=2.0.0"})
    manager = PluginManager(framework_version="1.4.0")
    with pytest.raises(FrameworkVersionMismatchError) as caught:
        await manager.load_plugin(path)
    assert str(caught.value) == "framework version mismatch: plugin requires >=2.0.0, found 1.4.0"
    assert caught.value.plugin == "future"
    assert not manager.is_loaded("future")

    newer = PluginManager(framework_version="2.1.0")
    await newer.load_plugin(path)
    assert newer.is_loaded("future")
    await newer.aclose()


@asynctest
async def test_permissions_from_config(manager, plugins):
    path = plugins("guarded", permissions={"cache": True, "config": True})
    with pytest.raises(PermissionMismatchError) as caught:
        await manager.load_plugin(path, {"permissions": {"database": True}})
    assert str(caught.value) == (
        "permission mismatch: plugin requests 'database' permission but manifest does not "
        "declare it"
    )
    assert not manager.is_loaded("guarded")

    await manager.load_plugin(path, {"permissions": {"cache": True}})
    assert manager.get_context("guarded").permissions == {"cache"}
    assert manager.get_context("guarded").has_permission("cache")
    assert not manager.get_context("guarded").has_permission("config")


@asynctest
async def test_without_a_permissions_block_the_manifest_decides(manager, plugins):
    await manager.load_plugin(plugins("guarded", permissions={"cache": True}))
    assert manager.get_context("guarded").permissions == {"cache"}


SCHEMA = {
    "port": {"type": "integer", "default": 8080},
    "timeout": {"type": "duration", "default": "30s"},
    "hosts": {"type": "array", "default": ["a"]},
}


@asynctest
async def test_plugin_config_is_validated_against_the_manifest(manager, plugins):
    path = plugins("web", config=SCHEMA)
    before = loaded_namespaces()
    with pytest.raises(ConfigError) as caught:
        await manager.load_plugin(path, {"config": {"port": "80"}})
    assert str(caught.value) == (
        "invalid configuration for plugin 'web': configuration 'port' must be an integer, got str"
    )
    assert not manager.is_loaded("web")
    assert loaded_namespaces() == before  # the imported code was dropped again

    with pytest.raises(ConfigError, match=r"unknown configuration key 'extra'"):
        await manager.load_plugin(path, {"config": {"timeout": "2m", "extra": True}})
    assert not manager.is_loaded("web")

    await manager.load_plugin(path, {"config": {"timeout": "2m"}})
    assert manager.get_context("web").plugin_config == {
        "port": 8080,
        "timeout": timedelta(minutes=2),
        "hosts": ["a"],
    }


@asynctest
async def test_plugin_config_is_a_copy(manager, plugins):
    await manager.load_plugin(plugins("web", config=SCHEMA))
    context = manager.get_context("web")
    config = context.plugin_config
    config["hosts"].append("b")
    config["port"] = 1
    assert context.plugin_config["hosts"] == ["a"]
    assert context.plugin_config["port"] == 8080


@asynctest
async def test_plugin_class_can_declare_config_keys(manager, make_plugin):
    code = """\
        from datetime import timedelta

        import tether


        class Plugin(tether.Plugin):
            config_schema = {
                "interval": {"type": "duration", "default": "5s"},
                "port": {"type": "string", "default": "ignored: the manifest wins"},
            }

            def initialize(self, ctx):
                super().initialize(ctx)
                assert ctx.plugin_config["interval"] == timedelta(seconds=5)
    """
    path = make_plugin("declares", code, config={"port": {"type": "integer", "default": 1}})
    await manager.load_plugin(path)
    await manager.initialize_all()
    assert manager.get_context("declares").plugin_config == {
        "interval": timedelta(seconds=5),
        "port": 1,
    }
    assert manager.get_plugin("declares").ctx is manager.get_context("declares")


@asynctest
async def test_config_name_must_match_the_manifest(manager, plugins):
    with pytest.raises(ConfigError, match="is named 'real' in its manifest"):
        await manager.load_plugin(plugins("real"), {"name": "other"})


@asynctest
async def test_a_manifest_file_path_loads_its_directory(manager, plugins):
    directory = plugins("by-file")
    info = await manager.load_plugin(directory / "plugin.json")
    assert info.path == str(directory)
    with pytest.raises(
        PluginNameConflictError, match=re.escape(f"already loaded from {directory}") + "$"
    ):
        await manager.load_plugin(directory)


@asynctest
async def test_missing_path(manager, tmp_path):
    with pytest.raises(PluginNotFoundError, match="plugin file not found"):
        await manager.load_plugin(tmp_path / "nowhere")


# --------------------------------------------------------------------------- retries

FLAKY = """\
    from pathlib import Path

    COUNTER = Path(__file__).with_name("attempts.txt")
    FAILURES = {failures}


    def _attempt():
        count = int(COUNTER.read_text()) if COUNTER.exists() else 0
        COUNTER.write_text(str(count + 1))
        if count < FAILURES:
            raise ConnectionError(f"registry unreachable (attempt {{count + 1}})")

    {where}

    class Plugin:
        def initialize(self, ctx):
            pass

        def start(self):
            pass

        def stop(self):
            pass

        def cleanup(self):
            pass


    def create():
        {in_factory}
        return Plugin()
"""


def _flaky(make_plugin, failures, where):
    code = FLAKY.format(
        failures=failures,
        where="_attempt()" if where == "import" else "",
        in_factory="_attempt()" if where == "factory" else "pass",
    )
    return make_plugin(f"flaky-{where}", code, entry="plugin:create")


@pytest.mark.parametrize("where", ["factory", "import"])
@asynctest
async def test_transient_failures_are_retried(manager, make_plugin, where):
    path = _flaky(make_plugin, 2, where)
    before = set(loaded_namespaces())
    info = await manager.load_plugin(path, retries=2, retry_backoff=0)
    assert info.name == f"flaky-{where}"
    assert [a.status for a in manager.load_attempts] == ["failure", "failure", "success"]
    assert all(a.plugin == f"flaky-{where}" for a in manager.load_attempts)
    assert "registry unreachable (attempt 1)" in manager.load_attempts[0].error
    assert "registry unreachable (attempt 2)" in manager.load_attempts[1].error
    assert manager.load_attempts[2].error is None
    assert all(a.duration >= 0 for a in manager.load_attempts)
    assert len(set(loaded_namespaces()) - before) == 1  # failed tries left nothing behind


@pytest.mark.parametrize("where", ["factory", "import"])
@asynctest
async def test_too_few_retries_fail(manager, make_plugin, where):
    path = _flaky(make_plugin, 2, where)
    before = loaded_namespaces()
    with pytest.raises(PluginLoadError, match=r"ConnectionError: registry unreachable \(attempt 2"):
        await manager.load_plugin(path, retries=1, retry_backoff=0)
    assert [a.status for a in manager.load_attempts] == ["failure", "failure"]
    assert not manager.is_loaded(f"flaky-{where}")
    assert loaded_namespaces() == before


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("class Plugin:\n    pass\n", InterfaceError),
        ("def broken(:\n    pass\n", PluginImportError),
        ("import tether_no_such_module_here\n", PluginImportError),
    ],
    ids=["interface", "syntax", "module-not-found"],
)
@asynctest
async def test_permanent_failures_are_not_retried(manager, make_plugin, code, error):
    with pytest.raises(error):
        await manager.load_plugin(make_plugin("broken", code), retries=3, retry_backoff=0)
    assert [a.status for a in manager.load_attempts] == ["failure"]


# --------------------------------------------------------------------------- from config


@asynctest
async def test_example_application(manager, monkeypatch):
    monkeypatch.setenv("TETHER_EXAMPLE_SECRET", "example-signing-key")
    infos = await manager.load_plugins_from_config(EXAMPLES / "app.yaml")

    order = [info.name for info in infos]
    assert sorted(order) == ["auth-plugin", "cache-plugin", "logging-plugin", "user-plugin"]
    for dependent, dependency in [
        ("auth-plugin", "cache-plugin"),
        ("user-plugin", "auth-plugin"),
        ("user-plugin", "logging-plugin"),  # optional, but present: it goes first
    ]:
        assert order.index(dependency) < order.index(dependent)
    assert order == ["logging-plugin", "cache-plugin", "auth-plugin", "user-plugin"]
    assert [info.name for info in manager.list_plugins()] == order

    await manager.initialize_all()
    await manager.start_all()
    assert set(statuses(manager).values()) == {S.RUNNING}

    auth = manager.get_plugin("auth-plugin")
    token = auth.issue("ada")
    assert auth.verify(token) == "ada"
    signature = token.partition(".")[2]
    forged = auth.issue("mallory").partition(".")[0] + "." + signature
    assert auth.verify(forged) is None
    assert auth.verify("not-a-token") is None

    context = manager.get_context("auth-plugin")
    assert context.plugin_config == {
        "secret": "example-signing-key",
        "token_ttl": timedelta(hours=1),
    }
    assert context.permissions == {"cache", "config"}
    assert manager.get_context("cache-plugin").plugin_config["max_entries"] == 500
    assert manager.get_plugin("user-plugin").users == {"ada", "grace"}

    await manager.stop_all()
    assert set(statuses(manager).values()) == {S.STOPPED}


def _app_config(tmp_path, entries, *, enabled=True):
    path = tmp_path / "tether.yaml"
    plugins = EXAMPLES / "plugins"
    for entry in entries:
        entry.setdefault("path", str(plugins / entry["name"]))
    data = {"plugins": {"enabled": enabled, "plugins": entries}}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@asynctest
async def test_disabled_dependency_is_named_as_disabled(manager, tmp_path):
    path = _app_config(
        tmp_path,
        [
            {"name": "cache-plugin", "enabled": False},
            {"name": "auth-plugin", "config": {"secret": "x"}},
        ],
    )
    before = loaded_namespaces()
    with pytest.raises(MissingDependencyError) as caught:
        await manager.load_plugins_from_config(path)
    message = str(caught.value)
    assert "plugin 'auth-plugin' requires 'cache-plugin'" in message
    assert "(it is disabled in the config)" in message
    assert manager.list_plugins() == []
    assert loaded_namespaces() == before  # resolved before anything was imported


@asynctest
async def test_plugin_system_disabled_loads_nothing(manager, tmp_path):
    path = _app_config(tmp_path, [{"name": "cache-plugin"}], enabled=False)
    assert await manager.load_plugins_from_config(path) == []
    assert manager.list_plugins() == []


@asynctest
async def test_relative_paths_are_relative_to_the_config_file(manager, tmp_path):
    shutil.copytree(EXAMPLES / "plugins" / "cache-plugin", tmp_path / "mine" / "cache")
    path = _app_config(tmp_path, [{"name": "cache-plugin", "path": "./mine/cache"}])
    [info] = await manager.load_plugins_from_config(path)
    assert info.path == str(tmp_path / "mine" / "cache")


# --------------------------------------------------------------------------- queries


@asynctest
async def test_unknown_plugin_suggests_a_close_name(manager, plugins):
    await manager.load_plugin(plugins("auth-plugin"))
    with pytest.raises(PluginNotFoundError) as caught:
        manager.get_plugin("auth-plugn")
    assert str(caught.value) == "plugin not found: 'auth-plugn'"
    assert caught.value.hint == "did you mean 'auth-plugin'?"
    assert isinstance(caught.value, LookupError)
    with pytest.raises(PluginNotFoundError) as caught:
        await manager.unload_plugin("zzz")
    assert "did you mean" not in caught.value.hint


@asynctest
async def test_list_plugins_fields(manager, plugins):
    before = datetime.now(UTC)
    path = plugins("described", version="2.3.4")
    returned = await manager.load_plugin(path)
    after = datetime.now(UTC)

    [info] = manager.list_plugins()
    assert isinstance(info, PluginInfo)
    assert returned == info
    assert info.name == "described"
    assert info.version == "2.3.4"
    assert info.description == "the described test plugin"
    assert info.author == "tests"
    assert info.loaded is True
    assert info.enabled is True
    assert before <= info.load_time <= after
    assert info.status is S.LOADING
    assert info.path == str(path)
    assert info.isolation == "inprocess"

    await manager.initialize_all()
    assert manager.get_info("described").status is S.INITIALIZED
    await manager.start_all()
    assert manager.list_plugins()[0].status == "running"


# --------------------------------------------------------------------------- sync facade


def test_sync_manager_runs_the_same_flow_without_a_loop_in_the_caller(plugins):
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # a plain, loop-less caller
    a, b = plugins("a"), plugins("b", deps=("a",), style="async")

    with SyncPluginManager(stop_timeout=2.0) as manager:
        assert manager.load_plugin(b).status is S.LOADING
        manager.load_plugin(a)
        manager.initialize_all()
        manager.start_all()
        assert [(i.name, i.status) for i in manager.list_plugins()] == [
            ("a", S.RUNNING),
            ("b", S.RUNNING),
        ]
        assert manager.resolve_dependencies().order == ("a", "b")
        assert manager.get_dependency_graph() == {"a": [], "b": ["a"]}
        assert manager.is_loaded("b")
        assert manager.get_plugin("b").ctx.name == "b"
        manager.stop_all()
        manager.unload_plugin("b")
        assert not manager.is_loaded("b")

    assert plugins.events() == [
        "a:initialize",
        "b:initialize",
        "a:start",
        "b:start",
        "b:stop",
        "a:stop",
        "b:release",
        "b:cleanup",
        "a:release",  # closing unloads what is left
        "a:cleanup",
    ]
    with pytest.raises(RuntimeError, match="closed"):
        manager.initialize_all()
    manager.close()  # twice is harmless


def test_sync_manager_raises_the_same_errors(plugins):
    with SyncPluginManager() as manager:
        manager.load_plugin(plugins("a", fail=("initialize",)))
        with pytest.raises(PluginLifecycleError, match="plugin initialization failed"):
            manager.initialize_all()


def test_sync_manager_loads_from_config(monkeypatch):
    monkeypatch.setenv("TETHER_EXAMPLE_SECRET", "k")
    with SyncPluginManager() as manager:
        infos = manager.load_plugins_from_config(EXAMPLES / "app.yaml")
        assert len(infos) == 4
        manager.initialize_all()
        auth = manager.get_plugin("auth-plugin")
        assert auth.verify(auth.issue("grace")) == "grace"
