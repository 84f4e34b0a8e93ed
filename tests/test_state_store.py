"""The state tables: what is written, the reference's queries, enabled/disabled across restarts."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from ops_support import start_plugins, write_plugin
from tether import PluginManager, PluginStatus, TetherConfig
from tether._state_tables import read_enabled_flags
from tether.errors import DependentsRunningError, PluginLifecycleError, StorageError
from tether.observability import REFERENCE_QUERIES, ErrorThreshold, PluginStateStore, observe

pytest_plugins = ["pg"]


def make_manager(tmp_path, url: str | None = None) -> PluginManager:
    config = TetherConfig.model_validate({"state": {"url": url}} if url else {})
    return PluginManager(config=config, state_directory=tmp_path / "state")


async def busy_day(manager: PluginManager, tmp_path) -> None:
    """Two plugins with hook calls and errors, one disabled by an operator, then a flush."""
    hub = observe(manager)  # before the plugins run: it keeps the error rows it is told of
    await start_plugins(
        manager, write_plugin(tmp_path, "auth-plugin"), write_plugin(tmp_path, "logging-plugin")
    )
    for i in range(4):
        manager.runtime.hooks.call("pre_request", i)
    manager.get_plugin("auth-plugin").fail_hooks = True
    for i in range(3):
        manager.runtime.hooks.call("pre_request", i)
    await manager.disable_plugin("logging-plugin")
    await hub.aflush()


def rows(store: PluginStateStore, query: str) -> list[tuple[object, ...]]:
    return store.query(REFERENCE_QUERIES[query][store.dialect])


def check_reference_queries(store: PluginStateStore) -> None:
    status = rows(store, "plugin_status")
    assert [(r[0], r[1], r[2]) for r in status] == [("logging-plugin", "disabled", 0)]
    performance = rows(store, "hook_performance")
    assert {r[0] for r in performance} == {"auth-plugin", "logging-plugin"}
    auth = next(r for r in performance if r[0] == "auth-plugin")
    assert auth[1:3] == ("pre_request", 7)
    assert float(auth[3]) >= 0  # avg_duration_ms
    assert auth[4] == 3
    trends = rows(store, "error_trends")
    assert [(r[0], r[1]) for r in trends] == [("auth-plugin", 3)]
    assert trends[0][2] is not None
    state = rows(store, "plugin_state")
    assert len(state) == 1
    assert state[0][:3] == ("auth-plugin", "running", 3)
    assert str(state[0][3]).startswith("ValueError: auth-plugin refuses")
    hooks = rows(store, "plugin_hook_metrics")
    assert [(h[0], h[1], h[3]) for h in hooks] == [("pre_request", 7, 3)]
    recent = rows(store, "recent_errors")
    assert [(r[0], float(r[1])) for r in recent] == [("error", 1.0)] * 3


# --------------------------------------------------------------------------- SQLite


def test_the_tables_are_written_and_the_reference_queries_run_on_sqlite(tmp_path):
    async def main():
        async with make_manager(tmp_path) as manager:
            await busy_day(manager, tmp_path)
            return manager.state_target

    target = asyncio.run(main())
    assert target == str(tmp_path / "state" / "state.db")
    with PluginStateStore(target) as store:
        check_reference_queries(store)
        errors = store.recent_errors("auth-plugin")
        assert errors[0].labels is not None
        assert errors[0].labels["type"] == "ValueError"
        assert errors[0].labels["source"] == "hook:pre_request"
        loads = store.query(
            "SELECT plugin_name, metric_value FROM plugin_metrics "
            "WHERE metric_name = 'load_success' ORDER BY plugin_name"
        )
        assert loads == [("auth-plugin", 1.0), ("logging-plugin", 1.0)]


def test_a_started_writer_flushes_periodically_and_once_more_at_shutdown(tmp_path):
    config = TetherConfig.model_validate({"state": {"flush_interval": "20ms"}})

    async def main():
        manager = PluginManager(config=config, state_directory=tmp_path / "state")
        hub = observe(manager)
        async with manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            await hub.start()
            manager._slot("auth-plugin").gate.record_error(KeyError("k"))
            target = manager.state_target
            with PluginStateStore(target) as store:
                for _ in range(500):
                    if store.plugins() and store.plugins()[0].error_count == 1:
                        break
                    await asyncio.sleep(0.01)
                running = store.plugins()[0]
        # the manager no longer closes the hub: the host does, after the manager (as
        # tether serve does), for the last write
        still_running = hub.is_running
        await hub.aclose()
        return target, running, still_running, hub.is_running

    target, running, still_running, after = asyncio.run(main())
    assert (still_running, after) == (True, False)
    assert (running.status, running.error_count) == ("running", 1)
    assert running.last_error == "KeyError: 'k'"
    with PluginStateStore(target) as store:
        final = store.plugins("auth-plugin")[0]
        assert (final.status, final.lifecycle_status, final.error_count) == (
            "unloaded", "unloaded", 1,
        )  # fmt: skip
        assert [e.labels["type"] for e in store.recent_errors("auth-plugin")] == ["KeyError"]


def test_the_sqlite_error_trend_form_differs_only_in_the_time_arithmetic():
    pg = REFERENCE_QUERIES["error_trends"]["postgresql"]
    lite = REFERENCE_QUERIES["error_trends"]["sqlite"]
    assert pg.replace("NOW() - INTERVAL '1 hour'", "datetime('now', '-1 hour')") == lite
    for name, forms in REFERENCE_QUERIES.items():
        if name != "error_trends":
            assert forms["sqlite"] == forms["postgresql"]


def test_the_status_column_is_the_effective_state(tmp_path):
    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(
                manager, write_plugin(tmp_path, "db"), write_plugin(tmp_path, "auth")
            )
            manager.get_plugin("db").healthy = False
            await manager.check_health()
            manager.set_error_threshold("auth", ErrorThreshold(max_errors=1))
            manager._slot("auth").gate.record_error(RuntimeError("x"))
            observe(manager).flush()
            with PluginStateStore(manager.state_target) as store:
                return {r.name: r for r in store.plugins()}

    found = asyncio.run(main())
    assert (found["db"].status, found["db"].lifecycle_status, found["db"].degraded) == (
        "degraded", "running", True,
    )  # fmt: skip
    # disabled by its threshold: reported, but not saved as the operator's choice
    assert (found["auth"].status, found["auth"].enabled) == ("disabled", True)


# --------------------------------------------------------------------------- restarts


def test_a_disabled_plugin_stays_disabled_after_a_restart(tmp_path):
    base = write_plugin(tmp_path, "base")
    user = write_plugin(tmp_path, "user", depends_on=("base",))

    async def first_run():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, base, user)
            with pytest.raises(DependentsRunningError, match="cannot disable plugin 'base'"):
                await manager.disable_plugin("base")
            await manager.disable_plugin("base", force=True, reason="it is disabled")
            return manager.get_status("base"), manager.get_handle("base").closed_reason

    async def second_run():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, base, user)
            before = {i.name: (i.status, i.enabled) for i in manager.list_plugins()}
            health = manager.get_all_health()
            ready = manager.readiness()
            await manager.enable_plugin("base")
            after = {i.name: (i.status, i.enabled) for i in manager.list_plugins()}
            return before, health, ready, after

    status, reason = asyncio.run(first_run())
    assert status is PluginStatus.STOPPED
    assert reason == "it is disabled"
    before, health, (ready, waiting), after = asyncio.run(second_run())
    assert before == {"base": (PluginStatus.LOADING, False), "user": (PluginStatus.LOADING, True)}
    assert health["base"].unavailable_reason == "it is disabled"
    assert not ready
    assert waiting == {"base": "it is disabled", "user": "it is loading"}
    assert after == {"base": (PluginStatus.RUNNING, True), "user": (PluginStatus.RUNNING, True)}

    async def third_run():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, base, user)
            return manager.readiness()

    assert asyncio.run(third_run()) == (True, {})


def test_a_flag_written_offline_is_honoured_and_not_overwritten_by_a_running_server(tmp_path):
    path = write_plugin(tmp_path, "auth-plugin")

    async def run(*, then_disable_offline: bool):
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, path)
            enabled = manager.get_info("auth-plugin").enabled
            if then_disable_offline:  # what `tether plugins disable` does while it runs
                with PluginStateStore(manager.state_target) as store:
                    store.set_enabled("auth-plugin", False, "it is disabled")
                await observe(manager).aflush()
            return enabled

    with PluginStateStore(tmp_path / "state" / "state.db") as store:
        store.set_enabled("auth-plugin", False, "it is disabled")
        store.set_enabled("auth-plugin", True)
    assert asyncio.run(run(then_disable_offline=True)) is True
    assert read_enabled_flags(tmp_path / "state" / "state.db")["auth-plugin"].enabled is False
    assert asyncio.run(run(then_disable_offline=False)) is False


def test_enabling_a_plugin_in_the_error_state_is_refused(tmp_path):
    broken = """\
class Plugin:
    def initialize(self, ctx): pass
    def start(self): raise RuntimeError("no port")
    def stop(self): pass
    def cleanup(self): pass
"""

    async def main():
        async with make_manager(tmp_path) as manager:
            await manager.load_plugin(write_plugin(tmp_path, "broken", code=broken))
            await manager.initialize_all()
            with pytest.raises(PluginLifecycleError):
                await manager.start_all()
            with pytest.raises(PluginLifecycleError, match="it is in the error state"):
                await manager.enable_plugin("broken")

    asyncio.run(main())


def test_nothing_is_created_until_something_is_written(tmp_path):
    async def main():
        async with make_manager(tmp_path) as manager:
            await start_plugins(manager, write_plugin(tmp_path, "auth-plugin"))
            manager.get_plugin_health("auth-plugin")

    asyncio.run(main())
    assert not (tmp_path / "state" / "state.db").exists()
    assert read_enabled_flags(tmp_path / "missing.db") == {}


def test_an_unwritable_state_store_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(StorageError, match="failed to open"):
        PluginStateStore(blocker / "state.db")


def test_an_old_database_without_the_tables_reads_as_nothing_disabled(tmp_path):
    path = tmp_path / "state.db"
    sqlite3.connect(path).close()
    assert read_enabled_flags(path) == {}


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.slow
def test_the_reference_queries_run_as_written_on_postgresql(tmp_path, pg_url):
    async def main():
        async with make_manager(tmp_path, pg_url) as manager:
            await busy_day(manager, tmp_path)

    asyncio.run(main())
    with PluginStateStore(pg_url) as store:
        assert store.dialect == "postgresql"
        check_reference_queries(store)
        assert store.enabled_flags()["logging-plugin"].enabled is False


@pytest.mark.slow
def test_a_disabled_plugin_stays_disabled_after_a_restart_on_postgresql(tmp_path, pg_url):
    path = write_plugin(tmp_path, "auth-plugin")

    async def run(disable: bool):
        async with make_manager(tmp_path, pg_url) as manager:
            await start_plugins(manager, path)
            if disable:
                await manager.disable_plugin("auth-plugin")
            return manager.get_info("auth-plugin")

    asyncio.run(run(disable=True))
    info = asyncio.run(run(disable=False))
    assert not info.enabled
    assert info.status is PluginStatus.LOADING
    assert not (tmp_path / "state" / "state.db").exists()


def test_a_cancelled_write_never_lands_after_the_next_one(tmp_path, monkeypatch):
    """A periodic write cancelled at shutdown runs on in its thread; the last write must
    wait for it, or the older snapshot could overwrite the final state."""
    import threading

    async def main():
        manager = PluginManager(state_directory=tmp_path / "state")
        hub = observe(manager)
        written: list[int] = []
        first_started = threading.Event()
        release_first = threading.Event()
        snapshots = iter(range(1, 100))
        monkeypatch.setattr(hub, "_snapshot", lambda: next(snapshots))

        def write(snapshot):
            if snapshot == 1:
                first_started.set()
                release_first.wait(10)
            written.append(snapshot)

        monkeypatch.setattr(hub, "_write", write)
        periodic = asyncio.create_task(hub.aflush())
        await asyncio.to_thread(first_started.wait, 10)
        periodic.cancel()  # what aclose does to the background task
        final = asyncio.create_task(hub.aflush())
        await asyncio.sleep(0.05)
        release_first.set()
        await final
        with pytest.raises(asyncio.CancelledError):
            await periodic
        return written

    assert asyncio.run(main()) == [1, 2]
