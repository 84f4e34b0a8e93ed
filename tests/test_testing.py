"""tether.testing: PluginHarness drives a real plugin's lifecycle without a host,
make_context gives a real plugin context, make_scope its host side, and host_door a door
for a test's own registrations. Exercised with a plugin written here and with the
examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import PluginWriter
from tether import HookOutcome, TetherConfig
from tether._context import Context
from tether._runtime import Runtime
from tether.errors import PluginLifecycleError, ServiceNotFoundError
from tether.testing import PluginHarness, host_door, make_context, make_scope

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "plugins"

GREETER = """
import tether


class Plugin(tether.Plugin):
    def initialize(self, ctx):
        super().initialize(ctx)
        self.greeting = ctx.plugin_config["greeting"]
        ctx.register_hook("pre_request", 100, self.tag_request)
        ctx.subscribe_event("user.created", self.on_user_created)

    async def start(self):
        self.ctx.plugin_storage.set("started", True)

    def greet(self, name):
        return f"{self.greeting}, {name}"

    def tag_request(self, request):
        request["greeted"] = True
        return "tagged"

    async def on_user_created(self, event):
        name = event.data["name"]
        greeted = self.ctx.plugin_storage.get("greeted", 0)
        self.ctx.plugin_storage.set("greeted", greeted + 1)
        self.ctx.plugin_storage.set(f"last:{name}", self.greet(name))
        await self.ctx.publish_event("user.welcomed", {"name": name})

    def stop(self):
        self.ctx.plugin_storage.set("stopped", True)
"""

BROKEN = """
import tether


class Plugin(tether.Plugin):
    def start(self):
        raise RuntimeError("cannot start")
"""


@pytest.fixture
def greeter(tmp_path):
    return PluginWriter(tmp_path / "plugins")(
        "greeter",
        GREETER,
        config={"greeting": {"type": "string", "default": "hello"}},
        hooks=[{"type": "pre_request", "priority": 100}],
        events={"publishes": ["user.welcomed"], "subscribes": ["user.created"]},
    )


@pytest.fixture
def harness(greeter, tmp_path):
    with PluginHarness(
        greeter, config={"greeting": "hi"}, state_directory=tmp_path / "state"
    ) as harness:
        yield harness


def test_the_harness_starts_the_plugin_with_its_config(harness):
    assert harness.name == "greeter"
    assert harness.status == "running"
    assert harness.plugin.greet("ada") == "hi, ada"
    assert isinstance(harness.context, Context)
    assert harness.context.name == "greeter"
    assert harness.context.plugin_config == {"greeting": "hi"}
    assert harness.storage() == {"started": True}


def test_fire_hook_runs_the_plugins_handler(harness):
    request: dict[str, object] = {"path": "/"}
    outcome = harness.fire_hook("pre_request", request)
    assert isinstance(outcome, HookOutcome)
    assert outcome.results == ["tagged"]
    assert outcome.ok
    assert request == {"path": "/", "greeted": True}
    metrics = harness.hook_metrics()
    assert set(metrics) == {"pre_request"}
    assert metrics["pre_request"].execution_count == 1
    assert metrics["pre_request"].error_count == 0


def test_publish_waits_until_the_plugin_has_handled_the_event(harness):
    event = harness.publish("user.created", {"name": "ada"})
    assert event.name == "user.created"
    assert event.source == "tether.testing"
    # No waiting here: publish returned only once the handler had finished.
    assert harness.storage() == {"started": True, "greeted": 1, "last:ada": "hi, ada"}
    welcomed = harness.published("user.welcomed")
    assert [(e.name, e.data, e.source) for e in welcomed] == [
        ("user.welcomed", {"name": "ada"}, "greeter")
    ]


def test_published_lists_only_what_the_plugin_published(harness):
    assert harness.published() == []
    harness.publish("user.created", {"name": "ada"})
    harness.publish("user.created", {"name": "bob"})
    assert [e.data for e in harness.published()] == [{"name": "ada"}, {"name": "bob"}]
    assert harness.published("user.created") == []  # the test published those, not the plugin
    assert harness.published("user.deleted") == []


def test_stop_then_start_again(harness):
    harness.stop()
    assert harness.status == "stopped"
    assert harness.storage()["stopped"] is True
    harness.run(harness.manager.start_all())
    assert harness.status == "running"


def test_close_removes_the_temporary_state_directory(greeter):
    harness = PluginHarness(greeter)
    harness.start()
    state = harness.state_directory
    assert state.is_dir()
    harness.close()
    assert not state.exists()


def test_a_given_state_directory_is_kept(greeter, tmp_path):
    state = tmp_path / "kept"
    with PluginHarness(greeter, state_directory=state) as harness:
        harness.publish("user.created", {"name": "ada"})
    assert state.is_dir()
    with PluginHarness(greeter, state_directory=state) as harness:
        assert harness.storage()["last:ada"] == "hello, ada"  # storage is durable


def test_a_plugin_that_fails_to_start_is_closed_and_the_error_raised(tmp_path):
    broken = PluginWriter(tmp_path / "plugins")("broken", BROKEN)
    harness = PluginHarness(broken)
    with pytest.raises(PluginLifecycleError, match="cannot start"), harness:
        pytest.fail("the block must not run")
    assert not harness.state_directory.exists()


def test_permissions_are_passed_to_the_plugin(tmp_path):
    writer = PluginWriter(tmp_path / "more")
    reader = writer(
        "reader",
        "import tether\nclass Plugin(tether.Plugin):\n    pass\n",
        permissions={"cache": True, "database": True},
    )
    with PluginHarness(
        reader, permissions={"cache": True}, state_directory=tmp_path / "state"
    ) as harness:
        assert harness.context.permissions == frozenset({"cache"})


# --------------------------------------------------------------------------- the examples


@pytest.fixture
def users(tmp_path):
    with PluginHarness(
        EXAMPLES / "user-plugin",
        dependencies=[EXAMPLES / "cache-plugin", (EXAMPLES / "auth-plugin", {"secret": "k"})],
        state_directory=tmp_path / "state",
    ) as harness:
        yield harness


def test_the_user_plugin_signs_in_through_the_auth_plugin(users):
    assert users.status == "running"
    token = users.plugin.login("ada")
    auth = users.manager.get_plugin("auth-plugin")
    assert auth.verify(token) == "ada"
    assert auth.verify(token + "x") is None
    users.wait_for_events()
    stored = users.storage()
    assert list(stored) == ["last_login:ada"]
    assert isinstance(stored["last_login:ada"], str)


def test_the_user_plugin_refuses_unknown_users(users):
    with pytest.raises(KeyError, match="unknown user 'mallory'"):
        users.plugin.login("mallory")
    assert users.storage() == {}


def test_the_example_dependencies_are_running_with_their_config(users):
    manager = users.manager
    assert [info.name for info in manager.list_plugins()] == [
        "cache-plugin",
        "auth-plugin",
        "user-plugin",
    ]
    assert manager.get_context("auth-plugin").plugin_config["secret"] == "k"
    assert users.context.plugin_config["default_users"] == ["ada", "grace"]


# --------------------------------------------------------------------------- make_context


def test_make_context_is_a_real_context(tmp_path):
    ctx = make_context("unit", config={"n": 1}, state_directory=tmp_path)
    assert isinstance(ctx, Context)
    assert ctx.name == "unit"
    assert ctx.version == "0.0.0"
    assert ctx.permissions == frozenset()
    ctx.plugin_storage.set("k", "v")
    assert ctx.plugin_storage.get("k") == "v"
    assert (tmp_path / "state.db").exists()


def test_make_context_gives_each_context_its_own_runtime(tmp_path):
    tools = make_context("tools", state_directory=tmp_path / "tools")
    other = make_context("other", state_directory=tmp_path / "other")
    tools.export_service("slugify", lambda text: text.lower())
    with pytest.raises(ServiceNotFoundError, match="plugin 'tools' does not export 'slugify'"):
        other.import_service("tools", "slugify")
    assert tools.import_service("tools", "slugify")("Hi") == "hi"


def test_make_scope_can_drive_a_plugin_without_a_lifecycle(tmp_path):
    scope = make_scope(
        "greeter",
        config={"greeting": "hey"},
        framework_config=TetherConfig(),
        state_directory=tmp_path,
    )
    ctx = scope.context
    exporter = make_scope("tools", state_directory=tmp_path / "tools")
    assert exporter.runtime is not scope.runtime  # each scope has its own runtime by default
    ctx.register_hook("pre_request", 10, lambda request: ctx.plugin_config["greeting"])
    assert scope.runtime.hooks.call("pre_request", {}).results == ["hey"]
    scope.runtime.close()


def test_scopes_on_one_runtime_see_each_other(tmp_path):
    runtime = Runtime(state_directory=tmp_path)
    tools = make_scope("tools", runtime=runtime)
    user = make_scope("user", runtime=runtime, version="1.2.0")
    assert (user.name, user.version, user.runtime) == ("user", "1.2.0", runtime)
    assert tools.door.gate is not user.door.gate  # one gate per plugin
    tools.context.export_service("slugify", lambda text: text.lower())
    assert user.context.import_service("tools", "slugify")("Hi") == "hi"


def test_make_scope_commits_and_opens_its_door_unless_asked_to_stage(tmp_path):
    runtime = Runtime(state_directory=tmp_path)
    live = make_scope("live", runtime=runtime)
    staged = make_scope("staged", runtime=runtime, committed=False)
    assert (live.is_committed, live.door.is_open, live.door.gate.state) == (True, True, "open")
    assert (staged.is_committed, staged.door.is_open) == (False, False)
    assert staged.door.gate.state == "closed"
    staged.context.register_hook("pre_request", 10, lambda request: "staged")
    live.context.register_hook("pre_request", 20, lambda request: "live")
    assert runtime.hooks.call("pre_request", {}).results == ["live"]


def test_host_door_is_committed_and_open_for_a_tests_own_registrations(tmp_path):
    door = host_door("observer")
    assert (door.plugin, door.committed, door.is_open) == ("observer", True, True)
    runtime = Runtime(state_directory=tmp_path)
    seen: list[object] = []
    runtime.hooks.register(door, "pre_request", 10, seen.append)
    assert runtime.hooks.call("pre_request", "request").ok
    assert seen == ["request"]
