"""tether.testing: PluginHarness drives a real plugin's lifecycle without a host, and
make_context gives a real PluginContext. Exercised with a plugin written here and with
the examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import PluginWriter
from tether import HookOutcome, PluginContext, TetherConfig
from tether.errors import PluginLifecycleError
from tether.testing import PluginHarness, make_context

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
    assert isinstance(harness.context, PluginContext)
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
    assert isinstance(ctx, PluginContext)
    assert ctx.name == "unit"
    assert ctx.version == "0.0.0"
    assert ctx.permissions == frozenset()
    ctx.plugin_storage.set("k", "v")
    assert ctx.plugin_storage.get("k") == "v"
    assert (tmp_path / "state.db").exists()
    ctx.runtime.close()


def test_make_context_can_drive_a_plugin_without_a_lifecycle(tmp_path):
    ctx = make_context(
        "greeter",
        config={"greeting": "hey"},
        framework_config=TetherConfig(),
        state_directory=tmp_path,
    )
    exporter = make_context("tools", state_directory=tmp_path / "tools")
    assert exporter.runtime is not ctx.runtime  # each context has its own runtime
    ctx.register_hook("pre_request", 10, lambda request: ctx.plugin_config["greeting"])
    assert ctx.runtime.hooks.call("pre_request", {}).results == ["hey"]
