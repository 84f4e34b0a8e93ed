"""Error thresholds: the sliding window, the reference's log lines, the actions, cooldowns."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from ops_support import start_plugins, write_plugin
from tether import GateState, PluginManager, TetherConfig
from tether._thresholds import merge_settings
from tether.errors import ConfigError, PluginNotFoundError, PluginUnavailableError
from tether.observability import DISABLED_REASON, THRESHOLD_EVENT, ErrorThreshold
from tether.testing import host_door

LOGGER = "tether.observability"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_manager(tmp_path, plugins_section=None) -> PluginManager:
    config = TetherConfig.model_validate({"plugins": plugins_section or {}})
    return PluginManager(config=config, state_directory=tmp_path / "state")


def fail(manager: PluginManager, name: str, times: int) -> None:
    gate = manager._slot(name).gate
    for i in range(times):
        gate.record_error(RuntimeError(f"failure {i}"), source="call")


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


# --------------------------------------------------------------------------- the value


def test_the_threshold_takes_durations_in_any_form():
    assert ErrorThreshold(time_window="5m").time_window == timedelta(minutes=5)
    assert ErrorThreshold(time_window=90).time_window == timedelta(seconds=90)
    assert ErrorThreshold(cooldown="30s").cooldown == timedelta(seconds=30)
    assert ErrorThreshold().warn_count == 95
    assert ErrorThreshold(max_errors=10).warn_count == 10  # 9.5 rounds up


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"max_errors": 0}, "max_errors must be at least 1", id="max-errors"),
        pytest.param(
            {"action": "explode"}, "action must be one of disable, log, alert", id="action"
        ),
        pytest.param({"time_window": "soon"}, "time_window not a duration", id="window"),
        pytest.param({"time_window": 0}, "time_window must be longer than zero", id="zero"),
        pytest.param({"warn_at": 1.5}, r"warn_at must be a fraction in \(0, 1\]", id="warn-at"),
    ],
)
def test_a_bad_threshold_is_a_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ErrorThreshold(**kwargs)


def test_the_config_block_applies_to_all_and_entries_override_key_by_key():
    config = TetherConfig.model_validate(
        {
            "plugins": {
                "error_threshold": {"max_errors": 100, "time_window": "5m", "action": "log"},
                "plugins": [{"name": "auth", "error_threshold": {"max_errors": 10}}],
            }
        }
    )
    section = config.plugins.error_threshold
    entry = config.plugins.plugins[0].error_threshold
    assert merge_settings(section, None) == ErrorThreshold(100, timedelta(minutes=5), "log")
    assert merge_settings(section, entry) == ErrorThreshold(10, timedelta(minutes=5), "log")
    assert merge_settings(None, entry) == ErrorThreshold(max_errors=10)
    assert merge_settings(section.model_copy(update={"enabled": False}), None) is None
    assert merge_settings(None, None) is None


# --------------------------------------------------------------------------- actions


def test_log_warns_at_95_percent_and_errors_at_100(tmp_path, caplog):
    caplog.set_level(logging.INFO, LOGGER)

    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            manager.set_error_threshold("auth-plugin", ErrorThreshold(100, "5m", "log"))
            fail(manager, "auth-plugin", 94)
            at_94 = messages(caplog)
            fail(manager, "auth-plugin", 1)
            at_95 = messages(caplog)
            fail(manager, "auth-plugin", 5)
            return at_94, at_95, messages(caplog), manager.get_plugin_health("auth-plugin")

    at_94, at_95, at_100, health = asyncio.run(main())
    assert at_94 == []
    assert at_95 == ["Plugin auth-plugin approaching error threshold: 95/100 errors in 5m"]
    assert at_100 == [
        "Plugin auth-plugin approaching error threshold: 95/100 errors in 5m",
        "Plugin auth-plugin exceeded error threshold: 100/100 errors in 5m",
    ]
    assert health.enabled  # log only
    assert health.threshold is not None
    assert health.threshold.errors_in_window == 100
    assert health.threshold.exceeded_count == 1


def test_disable_closes_the_gate_and_reports_the_plugin_disabled(tmp_path, caplog):
    caplog.set_level(logging.INFO, LOGGER)

    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            manager.set_error_threshold("auth-plugin", ErrorThreshold(max_errors=5))
            manager.get_plugin("auth-plugin").fail_hooks = True
            for i in range(5):
                manager.runtime.hooks.call("pre_request", i)
            outcome = manager.runtime.hooks.call("pre_request", "after")
            ready = manager.readiness()
            return (
                manager.get_info("auth-plugin"),
                manager.get_plugin_health("auth-plugin"),
                outcome,
                ready,
            )

    info, health, outcome, (ready, waiting) = asyncio.run(main())
    assert not info.enabled
    assert health.state == "disabled"
    assert health.gate.value == "closed"
    assert (
        health.unavailable_reason == DISABLED_REASON == "it was disabled: error threshold exceeded"
    )
    assert health.threshold is not None
    assert health.threshold.state == "open"
    assert isinstance(outcome.failures[0].error, PluginUnavailableError)
    assert "it was disabled: error threshold exceeded" in str(outcome.failures[0].error)
    assert health.hook_metrics["pre_request"].execution_count == 5  # the refused call never ran
    assert not ready
    assert waiting == {"auth-plugin": DISABLED_REASON}
    assert messages(caplog)[-2:] == [
        "Plugin auth-plugin exceeded error threshold: 5/5 errors in 5m",
        "Plugin auth-plugin automatically disabled due to error threshold",
    ]


def test_alert_publishes_an_event_and_keeps_the_plugin_running(tmp_path, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    received = []

    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            arrived = asyncio.Event()

            def receive(event):
                received.append(event)
                arrived.set()

            manager.runtime.events.subscribe(host_door("watcher"), THRESHOLD_EVENT, receive)
            manager.set_error_threshold("auth-plugin", ErrorThreshold(3, "1m", "alert"))
            fail(manager, "auth-plugin", 3)
            await asyncio.wait_for(arrived.wait(), 10)
            return manager.get_info("auth-plugin")

    info = asyncio.run(main())
    assert info.enabled
    assert len(received) == 1
    event = received[0]
    assert event.name == "plugin.error_threshold_exceeded"
    assert event.data["plugin"] == "auth-plugin"
    assert event.data["errors"] == 3
    assert event.data["max_errors"] == 3
    assert event.data["time_window"] == "1m"
    assert "Plugin auth-plugin exceeded error threshold: 3/3 errors in 1m" in messages(caplog)


# --------------------------------------------------------------------------- the window


def test_errors_leave_the_window_after_time_window(tmp_path):
    clock = Clock()

    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            manager._thresholds.clock = clock
            manager.set_error_threshold("auth-plugin", ErrorThreshold(10, "1m"))
            fail(manager, "auth-plugin", 9)
            clock.now += 61
            fail(manager, "auth-plugin", 9)
            status = manager.get_plugin_health("auth-plugin").threshold
            fail(manager, "auth-plugin", 1)
            return status, manager.get_info("auth-plugin")

    status, info = asyncio.run(main())
    assert status is not None
    assert status.errors_in_window == 9
    assert status.state == "closed"
    assert not info.enabled  # the 10th error inside the window


def test_reset_on_success_empties_the_window(tmp_path):
    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            manager.set_error_threshold("auth-plugin", ErrorThreshold(10))
            fail(manager, "auth-plugin", 9)
            manager.record_success("auth-plugin")
            after_report = manager.get_plugin_health("auth-plugin").threshold
            fail(manager, "auth-plugin", 9)
            manager.runtime.hooks.call("pre_request", "fine")  # a successful hook call
            manager.check_thresholds()  # successes come from the call metrics
            after_hook = manager.get_plugin_health("auth-plugin").threshold
            manager.set_error_threshold("auth-plugin", ErrorThreshold(10, reset_on_success=False))
            fail(manager, "auth-plugin", 9)
            manager.record_success("auth-plugin")
            return after_report, after_hook, manager.get_plugin_health("auth-plugin").threshold

    after_report, after_hook, kept = asyncio.run(main())
    assert after_report is not None
    assert after_report.errors_in_window == 0
    assert after_hook is not None
    assert after_hook.errors_in_window == 0
    assert kept is not None
    assert kept.errors_in_window == 9


def test_health_check_failures_count_against_the_threshold(tmp_path):
    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "db"))
            manager.set_error_threshold("db", ErrorThreshold(max_errors=2))
            manager.get_plugin("db").healthy = False
            await manager.check_health()
            await manager.check_health()
            return manager.get_info("db")

    assert not asyncio.run(main()).enabled


# --------------------------------------------------------------------------- cooldown


def test_after_the_cooldown_the_plugin_is_tried_again_and_the_first_failure_disables_it(
    tmp_path, caplog
):
    caplog.set_level(logging.INFO, LOGGER)
    clock = Clock()

    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            manager._thresholds.clock = clock
            manager.set_error_threshold("auth-plugin", ErrorThreshold(3, "1m", cooldown="30s"))
            fail(manager, "auth-plugin", 3)
            states = [manager.get_info("auth-plugin").enabled]
            clock.now += 29
            states.append(manager.check_thresholds())
            clock.now += 1
            states.append(manager.check_thresholds())
            states.append(manager.get_plugin_health("auth-plugin").threshold.state)
            states.append(manager.get_handle("auth-plugin").state is GateState.OPEN)
            fail(manager, "auth-plugin", 1)  # on trial: the first failure is enough
            states.append(manager.get_info("auth-plugin").enabled)
            clock.now += 30
            manager.check_thresholds()
            manager.runtime.hooks.call("pre_request", "works")
            manager.check_thresholds()  # the success (from the call metrics) closes the breaker
            health = manager.get_plugin_health("auth-plugin")
            states.append((health.enabled, health.threshold.state))
            fail(manager, "auth-plugin", 1)  # closed again: one error is not enough
            states.append(manager.get_info("auth-plugin").enabled)
            return states

    states = asyncio.run(main())
    assert states == [False, [], ["auth-plugin"], "half-open", True, False, (True, "closed"), True]
    logged = messages(caplog)
    assert "Plugin auth-plugin re-enabled on trial after a cooldown of 30s (half-open)" in logged
    assert "Plugin auth-plugin failed on trial: disabled again" in logged
    assert "Plugin auth-plugin recovered: a call succeeded on trial" in logged


def test_a_trial_without_errors_closes_the_breaker_after_another_cooldown(tmp_path):
    clock = Clock()

    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            manager._thresholds.clock = clock
            manager.set_error_threshold("auth-plugin", ErrorThreshold(1, cooldown=10))
            fail(manager, "auth-plugin", 1)
            clock.now += 10
            manager.check_thresholds()
            clock.now += 10
            manager.check_thresholds()
            return manager.get_plugin_health("auth-plugin")

    health = asyncio.run(main())
    assert health.enabled
    assert health.threshold is not None
    assert health.threshold.state == "closed"


def test_without_a_cooldown_the_plugin_stays_disabled_until_an_operator_enables_it(tmp_path):
    clock = Clock()

    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            manager._thresholds.clock = clock
            manager.set_error_threshold("auth-plugin", ErrorThreshold(2))
            fail(manager, "auth-plugin", 2)
            clock.now += 3600
            manager.check_thresholds()
            still = manager.get_info("auth-plugin").enabled
            await manager.enable_plugin("auth-plugin")
            health = manager.get_plugin_health("auth-plugin")
            return still, health, manager.persisted_flag("auth-plugin")

    still, health, flag = asyncio.run(main())
    assert not still
    assert health.enabled
    assert health.gate.value == "open"
    assert health.threshold is not None
    assert (health.threshold.state, health.threshold.errors_in_window) == ("closed", 0)
    assert flag.enabled


def test_the_config_block_gives_every_plugin_a_threshold(tmp_path):
    section = {
        "error_threshold": {"max_errors": 4, "time_window": "10m", "action": "log"},
    }

    async def main():
        async with make_manager(tmp_path, section) as manager:
            entry = {"error_threshold": {"max_errors": 2, "action": "disable"}}
            await manager.load_plugin(write_plugin(tmp_path, "strict"), entry)
            await start_plugins(manager, write_plugin(tmp_path, "lenient"))
            fail(manager, "strict", 2)
            fail(manager, "lenient", 4)
            return manager.get_all_health()

    health = asyncio.run(main())
    assert not health["strict"].enabled
    assert health["lenient"].enabled
    assert health["lenient"].threshold is not None
    assert health["lenient"].threshold.threshold == ErrorThreshold(4, "10m", "log")


def test_an_explicit_threshold_survives_a_reload_and_none_removes_it(tmp_path):
    async def main():
        async with make_manager(tmp_path) as manager:
            path = write_plugin(tmp_path, "auth-plugin")
            await start_plugins(manager, path)
            manager.set_error_threshold("auth-plugin", ErrorThreshold(7))
            await manager.unload_plugin("auth-plugin")
            await start_plugins(manager, path)
            kept = manager.get_plugin_health("auth-plugin").threshold
            manager.set_error_threshold("auth-plugin", None)
            return kept, manager.get_plugin_health("auth-plugin").threshold

    kept, removed = asyncio.run(main())
    assert kept is not None
    assert kept.threshold.max_errors == 7
    assert removed is None


def test_a_threshold_for_an_unknown_plugin_is_refused(tmp_path):
    manager = make_manager(tmp_path)
    with pytest.raises(PluginNotFoundError, match="plugin not found: 'ghost'"):
        manager.set_error_threshold("ghost", ErrorThreshold())
