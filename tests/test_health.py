"""Plugin health: the reference's PluginHealth from the manager, and health_check() polling."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import pytest

from helpers import PluginWriter
from ops_support import ASYNC_CHECK_PLUGIN, PLUGIN, start_plugins, write_plugin
from tether import PluginManager, PluginStatus, TetherConfig
from tether.errors import HealthCheckError, PluginLifecycleError, PluginNotFoundError
from tether.observability import PluginHealth, observe


def manager_for(tmp_path, **plugins_section) -> PluginManager:
    config = TetherConfig.model_validate({"plugins": plugins_section})
    return PluginManager(config=config, state_directory=tmp_path / "state")


def test_a_running_plugin_is_healthy_with_no_errors(tmp_path):
    async def main():
        async with manager_for(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            return manager.get_plugin_health("auth-plugin")

    health = asyncio.run(main())
    assert isinstance(health, PluginHealth)
    assert health.status is PluginStatus.RUNNING
    assert health.state == "running"
    assert health.enabled
    assert health.is_ready
    assert health.error_count == 0
    assert health.last_error is None
    assert health.last_error_at is None
    assert health.load_duration is not None
    assert health.load_duration >= 0
    assert health.degraded is False
    assert health.threshold is None


def test_hook_metrics_count_executions_durations_and_errors(tmp_path):
    async def main():
        async with manager_for(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            for _ in range(3):
                manager.runtime.hooks.call("pre_request", "ok")
            manager.get_plugin("auth-plugin").fail_hooks = True
            manager.runtime.hooks.call("pre_request", "bad")
            await manager.runtime.hooks.run("pre_request", "bad")
            return manager.get_plugin_health("auth-plugin")

    health = asyncio.run(main())
    hook = health.hook_metrics["pre_request"]
    assert hook.execution_count == 5
    assert hook.error_count == 2
    assert hook.total_duration >= timedelta(0)
    assert hook.average_duration == hook.total_duration / 5
    assert health.error_count == 2
    assert isinstance(health.last_error, ValueError)
    assert "auth-plugin refuses 'bad'" in str(health.last_error)
    assert isinstance(health.last_error_at, datetime)
    assert health.errors_by_type == {"ValueError": 2}


def test_health_carries_call_metrics_per_source_with_the_version_that_served_them(tmp_path):
    async def main():
        async with manager_for(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            for _ in range(3):
                manager.runtime.hooks.call("pre_request", "ok")
            manager.get_plugin("auth-plugin").fail_hooks = True
            await manager.runtime.hooks.run("pre_request", "bad")
            await manager.check_health("auth-plugin")
            return manager.get_plugin_health("auth-plugin")

    health = asyncio.run(main())
    assert set(health.calls) == {"hook:pre_request", "health_check"}
    hook = health.calls["hook:pre_request"]
    assert (hook.source, hook.calls, hook.errors) == ("hook:pre_request", 4, 1)
    assert hook.by_version == {"1.0.0": 4}
    assert hook.total_duration >= timedelta(0)
    assert hook.average_duration == hook.total_duration / 4
    check = health.calls["health_check"]
    assert (check.calls, check.errors, check.by_version) == (1, 0, {"1.0.0": 1})
    data = json.loads(json.dumps(health.to_dict()))["calls"]
    assert data["hook:pre_request"]["calls"] == 4
    assert data["hook:pre_request"]["errors"] == 1
    assert data["hook:pre_request"]["by_version"] == {"1.0.0": 4}


def test_call_metrics_keep_each_version_apart_across_a_reload(tmp_path):
    async def main():
        async with manager_for(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path / "v1", "auth-plugin"))
            manager.runtime.hooks.call("pre_request", "ok")
            await manager.unload_plugin("auth-plugin")
            newer = PluginWriter(tmp_path / "v2")("auth-plugin", PLUGIN, version="2.0.0")
            await start_plugins(manager, newer)
            manager.runtime.hooks.call("pre_request", "ok")
            manager.runtime.hooks.call("pre_request", "ok")
            return manager.get_plugin_health("auth-plugin")

    health = asyncio.run(main())
    assert health.version == "2.0.0"
    hook = health.calls["hook:pre_request"]
    assert hook.calls == 3
    assert hook.by_version == {"1.0.0": 1, "2.0.0": 2}


def test_all_health_covers_every_plugin_in_load_order(tmp_path):
    async def main():
        async with manager_for(tmp_path) as manager:
            base = write_plugin(tmp_path, "base")
            user = write_plugin(tmp_path, "user", depends_on=("base",))
            await start_plugins(manager, user, base)
            return manager.get_all_health()

    health = asyncio.run(main())
    assert list(health) == ["base", "user"]
    assert all(h.status is PluginStatus.RUNNING for h in health.values())


def test_health_of_an_unknown_plugin_names_the_closest(tmp_path):
    async def main():
        async with manager_for(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            with pytest.raises(PluginNotFoundError, match="plugin not found: 'auth-plugn'") as e:
                manager.get_plugin_health("auth-plugn")
            return e.value

    error = asyncio.run(main())
    assert error.hint == "did you mean 'auth-plugin'?"


def test_health_is_json_ready(tmp_path):
    async def main():
        async with manager_for(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            manager.get_plugin("auth-plugin").fail_hooks = True
            manager.runtime.hooks.call("pre_request", 1)
            return manager.get_plugin_health("auth-plugin").to_dict()

    data = json.loads(json.dumps(asyncio.run(main())))
    assert data["status"] == "running"
    assert data["error_count"] == 1
    assert data["last_error"] == "ValueError: auth-plugin refuses 1"
    assert data["hook_metrics"]["pre_request"]["execution_count"] == 1
    assert data["gate"] == "open"
    assert data["ready"] is True


# --------------------------------------------------------------------------- health checks


@pytest.mark.parametrize(
    ("healthy", "reason"),
    [
        pytest.param(
            False, "health_check() raised ConnectionError: database unreachable", id="raises"
        ),
        pytest.param("false", "health_check() returned False", id="returns-false"),
    ],
)
def test_a_failing_health_check_marks_the_plugin_degraded_and_counts_an_error(
    tmp_path, healthy, reason
):
    async def main():
        async with manager_for(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "db-plugin"))
            await manager.check_health()
            before = manager.get_plugin_health("db-plugin")
            manager.get_plugin("db-plugin").healthy = healthy
            await manager.check_health("db-plugin")
            failed = manager.get_plugin_health("db-plugin")
            manager.get_plugin("db-plugin").healthy = True
            await manager.check_health()
            return before, failed, manager.get_plugin_health("db-plugin")

    before, failed, recovered = asyncio.run(main())
    assert before.last_check is not None
    assert before.last_check.ok
    assert not before.degraded
    assert failed.degraded
    assert failed.state == "degraded"
    assert failed.status is PluginStatus.RUNNING  # a flag, not a lifecycle change
    assert failed.is_ready
    assert failed.error_count == 1
    assert isinstance(failed.last_error, HealthCheckError)
    assert str(failed.last_error) == f"plugin 'db-plugin' failed its health check: {reason}"
    assert failed.last_check is not None
    assert failed.last_check.error == reason
    assert failed.errors_by_type == {"HealthCheckError": 1}
    assert not recovered.degraded
    assert recovered.state == "running"
    assert recovered.error_count == 1  # the error stays counted


def test_async_health_checks_are_awaited_and_time_out(tmp_path):
    async def main():
        async with manager_for(tmp_path, health_check_timeout="50ms") as manager:
            await start_plugins(manager, write_plugin(tmp_path, "cache", code=ASYNC_CHECK_PLUGIN))
            plugin = manager.get_plugin("cache")
            await manager.check_health()
            ok = manager.get_plugin_health("cache")
            plugin.healthy = False
            await manager.check_health()
            failed = manager.get_plugin_health("cache")
            plugin.healthy = "hang"
            await manager.check_health()
            return ok, failed, manager.get_plugin_health("cache")

    ok, failed, hung = asyncio.run(main())
    assert ok.last_check is not None
    assert ok.last_check.ok
    assert failed.last_check is not None
    assert failed.last_check.error == "health_check() raised RuntimeError: cache cold"
    assert hung.last_check is not None
    assert hung.last_check.error == "health_check() did not return within 0.05s"
    assert hung.error_count == 2
    assert hung.in_flight == 0


def test_plugins_without_a_health_check_and_stopped_plugins_are_not_checked(tmp_path):
    no_check = """\
class Plugin:
    def initialize(self, ctx): pass
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass
"""

    async def main():
        async with manager_for(tmp_path) as manager:
            await start_plugins(
                manager,
                write_plugin(tmp_path, "plain", code=no_check),
                write_plugin(tmp_path, "db"),
            )
            await manager.stop_all()
            manager.get_plugin("db").healthy = False
            await manager.check_health()
            return manager.get_all_health()

    health = asyncio.run(main())
    assert health["plain"].last_check is None
    assert health["db"].last_check is None
    assert health["db"].error_count == 0
    assert not health["db"].is_ready
    assert health["db"].not_ready_reason == "it is stopped"


def test_the_background_task_polls_health_checks_on_the_interval(tmp_path):
    async def main():
        async with manager_for(tmp_path, health_check_interval="20ms") as manager:
            await start_plugins(manager, write_plugin(tmp_path, "db"))
            manager.get_plugin("db").healthy = False
            hub = observe(manager)
            await hub.start(persist=False)
            for _ in range(500):
                if manager.get_plugin_health("db").degraded:
                    break
                await asyncio.sleep(0.01)
            running = hub.is_running
            degraded = manager.get_plugin_health("db").degraded
            await hub.aclose()
            return running, degraded, hub.is_running

    running, degraded, still_running = asyncio.run(main())
    assert running
    assert degraded
    assert not still_running
    assert not (tmp_path / "state" / "state.db").exists()  # persist=False writes nothing


def test_health_check_interval_is_a_config_duration():
    config = TetherConfig.model_validate(
        {"plugins": {"health_check_interval": "30s", "health_check_timeout": "2s"}}
    )
    assert config.plugins.health_check_interval == 30.0
    assert config.plugins.health_check_timeout == 2.0
    assert TetherConfig().plugins.health_check_interval == 30.0


def test_a_plugin_that_failed_to_start_is_not_ready_and_says_why(tmp_path):
    broken = """\
class Plugin:
    def initialize(self, ctx): pass
    def start(self): raise OSError("port 80 is taken")
    def stop(self): pass
    def cleanup(self): pass
"""

    async def main():
        async with manager_for(tmp_path) as manager:
            await manager.load_plugin(write_plugin(tmp_path, "web", code=broken))
            await manager.initialize_all()
            with pytest.raises(PluginLifecycleError):
                await manager.start_all()
            return manager.get_plugin_health("web"), manager.readiness()

    health, (ready, waiting) = asyncio.run(main())
    assert health.status is PluginStatus.ERROR
    assert health.state == "error"
    assert isinstance(health.last_error, OSError)
    assert not ready
    assert waiting == {"web": "its start failed"}
