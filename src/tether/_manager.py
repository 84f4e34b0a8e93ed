"""``PluginManager``: loads, orders, starts, stops and unloads plugins.

The API is async. Plugin methods may be plain or ``async def``; the manager
awaits whatever returns an awaitable. :class:`tether.SyncPluginManager` is the
blocking facade over this same class.

Each plugin name has a slot (``tether._slots``): its gate, its handle, its versions.
Loading a plugin imports its code beside nothing (or, later, beside the running
version), checks it against the contract its manifest names (``tether._contracts``),
and stages it; ``initialize`` commits it (its registrations go live) and opens its
gate. That up path, with its retries and the plugins a host may start without, is
``tether._bringup``'s (the manager's base class). Stopping and unloading, health, error
thresholds and the enabled flag kept in the state store live here, so a manager works
the same with or without the observability package.

Every plugin method the manager calls runs within a time limit, and whatever it raises
(``SystemExit`` and the other ``BaseException`` subclasses included) fails that step of
that plugin only: see ``tether._bounded`` and ``tether._steps``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Self

from tether._audit import CapabilityUse, save_capability_uses
from tether._audit import watch as _capability_watch
from tether._bounded import (
    OverrunError,
    PluginCode,
    plugin_error,
    run_bounded,
    threads_running,
)
from tether._bringup import BringUp
from tether._callstats import CallStats
from tether._config import (
    PluginConfig,
    TetherConfig,
    validate_plugin_config,
)
from tether._context import PluginScope
from tether._contracts import Contract, ContractRegistry
from tether._describe import error_text
from tether._flags import EnabledFlags
from tether._handle import PluginHandle
from tether._health import HealthCheckResult, PluginHealth
from tether._intake import LoadAttempt, validate_config
from tether._lifecycle import PluginStatus
from tether._locate import (
    Found,
    Locator,
    config_schema,
)
from tether._manifest import Manifest
from tether._oversight import Oversight
from tether._reload import Reloads
from tether._reload_result import ReloadConfig, ReloadResult
from tether._retries import FailedPlugin, RetryPolicy, Tries
from tether._runtime import Runtime
from tether._slots import PluginSlot, PluginVersion, SlotEvent
from tether._state_tables import PersistedFlag
from tether._steps import (
    code_of,
    retire_version,
    stop_version,
)
from tether._thresholds import (
    THRESHOLD_EVENT,
    ErrorThreshold,
    ThresholdStatus,
)
from tether._version import __version__
from tether.errors import (
    DependentsRunningError,
    PluginLifecycleError,
    StopAllError,
    TetherError,
)
from tether.types import PluginContext, PluginInfo

if TYPE_CHECKING:
    from tether._watch import PluginWatcher

__all__ = ["LoadAttempt", "PluginManager"]

log = logging.getLogger("tether")

ErrorListener = Callable[[str, str, BaseException], None]


class PluginManager(BringUp):
    """Loads plugins and drives their lifecycle.

    ``framework_version`` is what manifests' ``framework.version`` is checked
    against (tether's own version by default). ``stop_timeout`` bounds each
    plugin's ``stop()`` unless its ``timeouts.stop`` says otherwise. ``contracts``
    are the contracts plugins may provide (by default the ``plugin`` contract and
    those installed hosts register). ``retry_attempts`` replaces every plugin's
    ``retries.attempts`` (the CLI's ``--retries N``).

    Loading, initializing and starting (with retries, and without plugins that are
    not required and failed) are :class:`tether._bringup.BringUp`'s.

    ``leftover_threads`` maps each plugin unloaded with threads still running its code
    (or abandoned in one of its steps) to their names.
    """

    def __init__(
        self,
        *,
        config: TetherConfig | None = None,
        framework_version: str = __version__,
        stop_timeout: float = 10.0,
        drain_timeout: float = 5.0,
        state_directory: str | Path | None = None,
        runtime: Runtime | None = None,
        contracts: ContractRegistry | None = None,
        retry_attempts: int | None = None,
    ) -> None:
        if retry_attempts is not None:
            RetryPolicy(attempts=retry_attempts)  # refuses what a load would: now, by name
        self.framework_version = framework_version
        self.retry_attempts = retry_attempts
        self.stop_timeout = stop_timeout
        self.drain_timeout = drain_timeout
        self.config = config or TetherConfig()
        self.runtime = runtime or Runtime(config=self.config, state_directory=state_directory)
        self.contracts = contracts or ContractRegistry()
        self.load_attempts: list[LoadAttempt] = []
        self.leftover_threads: dict[str, tuple[str, ...]] = {}
        self._slots: dict[str, PluginSlot] = {}
        self._order: tuple[str, ...] = ()
        self._lock: asyncio.Lock | None = None
        self._locator: Locator | None = None
        self._stats = CallStats()
        self._oversight = Oversight(
            disable=self._threshold_disable,
            enable=self._threshold_enable,
            alert=self._alert,
            health_timeout=self.config.plugins.health_check_timeout,
        )
        self._thresholds = self._oversight.thresholds
        self._flags = EnabledFlags(lambda: self.state_target)
        self._error_listeners: list[ErrorListener] = []
        self._unload_listeners: list[Callable[[str], None]] = []
        self._failed: dict[str, FailedPlugin] = {}
        self._sources: dict[str, tuple[Found, Tries]] = {}
        self._reloads = Reloads(self)
        self._watchers: list[PluginWatcher] = []

    # ------------------------------------------------------------------ queries

    def get_plugin(self, name: str) -> object:
        """The plugin object itself (of the live version)."""
        return self._slot(name).current.instance

    def get_manifest(self, name: str) -> Manifest:
        return self._slot(name).current.manifest

    def get_context(self, name: str) -> PluginContext:
        """The context the plugin received (what it can reach, and nothing more)."""
        return self._slot(name).current.scope.context

    def get_scope(self, name: str) -> PluginScope:
        """The host-side view of the plugin's live version (hosts make entries with it)."""
        return self._slot(name).current.scope

    def get_contract(self, name: str) -> Contract:
        """The contract the plugin was loaded under (``plugin``, ``workload``...)."""
        return self._slot(name).current.contract

    def get_status(self, name: str) -> PluginStatus:
        return self._slot(name).current.status

    def get_info(self, name: str) -> PluginInfo:
        return self._info(self._slot(name))

    def get_handle(self, name: str) -> PluginHandle:
        """The handle hosts call the plugin through, whichever version is live."""
        return self._slot(name).handle

    def get_history(self, name: str) -> list[SlotEvent]:
        """What happened to the plugin's slot: versions loaded, committed, discarded."""
        return list(self._slot(name).history)

    def get_timeouts(self, name: str) -> dict[str, float]:
        """The plugin's time limits in seconds (manifest, then config), by step."""
        return self._limits(self._slot(name).current)

    def last_error(self, name: str) -> BaseException | None:
        return self._slot(name).current.last_error

    def undeclared_capabilities(self, name: str | None = None) -> list[CapabilityUse]:
        """Files, sockets or processes a plugin used without declaring the permission."""
        return _capability_watch.uses(name)

    def _save_capabilities(self, name: str) -> None:
        """Add what the watch saw of ``name`` to the state store, for `plugins info`."""
        uses = _capability_watch.take(name)
        if not uses:
            return
        try:
            save_capability_uses(self.runtime.state_store(), name, uses)
        except TetherError as exc:
            log.warning("could not save capability telemetry of %s: %s", name, exc)

    def list_plugins(self) -> list[PluginInfo]:
        """Every loaded plugin, in load order."""
        return [self._info(s) for s in self._ordered()]

    def is_loaded(self, name: str) -> bool:
        return name in self._slots

    def get_dependency_graph(self) -> dict[str, list[str]]:
        """Each loaded plugin and the plugins it depends on (absent optional ones left out)."""
        return {
            s.name: [
                d.name
                for d in s.current.manifest.dependencies
                if not d.optional or d.name in self._slots
            ]
            for s in self._ordered()
        }

    def dependents(self, name: str) -> list[str]:
        """Loaded plugins that depend on ``name``, directly or through others."""
        graph = self.get_dependency_graph()
        found: list[str] = []
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for plugin, deps in graph.items():
                if current in deps and plugin not in found:
                    found.append(plugin)
                    frontier.append(plugin)
        return [s.name for s in self._ordered() if s.name in found]

    # ------------------------------------------------------------------ lifecycle

    async def update_plugin_config(self, name: str, config: Mapping[str, object]) -> None:
        """Give a loaded plugin new config: validate it, then call ``on_config_change``.

        If the plugin's ``validate_config`` or ``on_config_change`` raises, the old
        config is kept and the failure is raised.
        """
        async with self._mutex():
            slot = self._slot(name)
            version = slot.current
            schema = config_schema(version.manifest, version.instance)
            values = validate_plugin_config(name, schema, config,
                                            additional_properties=version.manifest.open_config,
                                            host_keys=version.contract.config_keys)  # fmt: skip
            limits, code = self._limits(version), code_of(version)
            await validate_config(name, version.instance, values, limit=limits["initialize"],
                                  code=code)  # fmt: skip
            previous = version.scope.replace_config(values)
            change = getattr(version.instance, "on_config_change", None)
            if change is None:
                return
            try:
                await run_bounded(change, version.scope.config, code=code,
                                  what="on_config_change", limit=limits["call"])  # fmt: skip
            except OverrunError as exc:
                version.scope.replace_config(previous)
                late = f"on_config_change() did not return within {exc.limit:g}s"
                raise PluginLifecycleError(name, "configuration change", late) from None
            except Exception as exc:
                error = plugin_error(exc)
                version.scope.replace_config(previous)
                slot.gate.record_error(error, source="on_config_change")
                raise PluginLifecycleError(name, "configuration change", error) from error

    async def reload_plugin(self, name: str, *, config: ReloadConfig | None = None) -> ReloadResult:
        """Replace a running plugin with the version now on disk, without a call lost.

        The new version is imported beside the running one and checked; calls are held
        (``config.strategy`` ``block``) or refused (``reject``) while the old version drains
        and stops and the new one initializes and starts; then they go to it. If the new
        version fails anywhere (or trips its error threshold or fails its health check
        within ``grace_period``), the previous one is brought back: the result's outcome is
        ``rolled_back`` and its ``step`` and ``error`` say what failed; ``failed`` if even
        the previous version could not start again. A plugin that is not required and
        was set aside because it failed to come up, or a directory plugin left in error
        (a reload whose previous version could not start again), is loaded again from its
        directory and brought up (``failed`` if it fails again). See ``docs/reload.md``.
        """
        slot = self._slots.get(name)
        source = self._sources.get(name)
        if (
            slot is not None
            and slot.current.status is PluginStatus.ERROR
            and source
            and source[0].private
        ):
            async with self._mutex():  # in error (a reload that could not come back): start over
                why = slot.current.last_error or PluginLifecycleError(
                    name, "reload", "it is in error"
                )
                await self._take_down(slot, "reload", why)
        failed = self._failed.get(name)
        if failed is not None and name not in self._slots:  # set aside: try again
            return await self._reloads.bring_back(failed)  # no running version to hold calls for
        return await self._reloads.reload(name, config)

    async def rollback_plugin(
        self, name: str, *, config: ReloadConfig | None = None
    ) -> ReloadResult:
        """Bring the previous version back: the one still in memory within a grace period,
        else the copy of its files the last reload kept under the state directory."""
        return await self._reloads.rollback(name, config)

    def reload_history(self, name: str | None = None, *, limit: int = 50) -> list[ReloadResult]:
        """Reloads and rollbacks recorded in the state store, newest first."""
        return self._reloads.history(name, limit=limit)

    def on_reload(self, listener: Callable[[ReloadResult], None]) -> None:
        """Call ``listener(result)`` after every reload and rollback (automatic ones too)."""
        self._reloads.on_reload(listener)

    def in_grace_period(self, name: str) -> bool:
        """Whether ``name`` was reloaded and its previous version is still kept in memory."""
        return self._reloads.in_grace(name)

    async def stop_all(self, *, timeout: float | None = None) -> None:
        """Stop running plugins in reverse dependency order.

        Each ``stop()`` gets ``timeout`` seconds (by default its ``timeouts.stop``, else
        the manager's ``stop_timeout``). Failures do not stop the others; they are
        reported together in a ``StopAllError`` at the end.
        """
        failures: list[PluginLifecycleError] = []
        async with self._mutex():
            if any(s.current.status is PluginStatus.RUNNING for s in self._slots.values()):
                await self._run_lifecycle_hook("shutdown")
            for slot in reversed(self._ordered()):
                if slot.current.status is PluginStatus.RUNNING:
                    error = await self._stop(slot, timeout)
                    if error is not None:
                        failures.append(error)
        if failures:
            raise StopAllError(failures)

    def _stop_timeout(self, slot: PluginSlot, timeout: float | None) -> float:
        if timeout is not None:
            return timeout
        return self.get_timeouts(slot.name)["stop"]

    async def _stop(
        self, slot: PluginSlot, timeout: float | None, version: PluginVersion | None = None
    ) -> PluginLifecycleError | None:
        """Stop one version (the current one by default): drain its calls, call stop()."""
        limit = self._stop_timeout(slot, timeout)
        return await stop_version(slot, version or slot.current, limit, self.drain_timeout)

    async def unload_plugin(self, name: str, *, force: bool = False) -> None:
        """Stop, release its registrations, clean up and forget a plugin.

        Refused while running plugins depend on it, unless ``force``. If ``stop`` or
        ``cleanup`` fails the plugin is still unloaded, and the failure is raised
        afterwards.
        """
        async with self._mutex():
            slot = self._slot(name)
            running = [
                d
                for d in self.dependents(name)
                if self._slots[d].current.status is PluginStatus.RUNNING
            ]
            if running and not force:
                raise DependentsRunningError(name, running)
            if running:
                log.warning("force-unloading %s while %s depend on it", name, ", ".join(running))
            failure = await self._teardown(slot)
            del self._slots[name]
            self._order = tuple(n for n in self._order if n != name)
            log.info("unloaded plugin %s", name)
        if failure is not None:
            raise failure

    async def _teardown(self, slot: PluginSlot) -> PluginLifecycleError | None:
        failure: PluginLifecycleError | None = None
        await self._reloads.forget(slot)
        code = PluginCode(slot.name, tuple(
            d for v in slot.versions for d in code_of(v).directories
        ))  # fmt: skip
        for version in sorted(slot.versions, key=lambda v: v is not slot.live):  # live first
            if version.status is PluginStatus.RUNNING:
                stopped = await self._stop(slot, None, version)
                failure = failure or stopped
        for version in list(slot.versions):
            limit = self._limits(version)["stop"]
            retired = await retire_version(slot, version, reason="unloaded", limit=limit)
            failure = failure or retired
        self._report_threads(code)
        _capability_watch.untrack(slot.name)
        self._save_capabilities(slot.name)
        self.runtime.metrics.remove_plugin(slot.name)
        slot.gate.close("it was unloaded")
        for listener in self._unload_listeners:  # they see it unloaded, before it is forgotten
            try:
                listener(slot.name)
            except Exception:
                log.exception("an unload listener failed for plugin %s", slot.name)
        self._oversight.plugin_gone(slot.name)
        self._sources.pop(slot.name, None)
        return failure

    def _report_threads(self, code: PluginCode) -> None:
        """Warn about threads still running the plugin's code once it is unloaded."""
        left = threads_running(code)
        if not left:
            self.leftover_threads.pop(code.plugin, None)
            return
        names = tuple(t.name for t in left)
        self.leftover_threads[code.plugin] = names
        described = ", ".join(t.name if t.daemon else f"{t.name} (not a daemon)" for t in left)
        log.warning("plugin %s left %d thread(s) running after it was unloaded: %s; they "
                    "cannot be stopped in-process", code.plugin, len(left), described)  # fmt: skip

    # ------------------------------------------------------------------ errors and thresholds

    def on_error(self, listener: ErrorListener) -> None:
        """Call ``listener(plugin, source, error)`` for every error of every plugin."""
        self._error_listeners.append(listener)

    def on_unload(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(plugin)`` just before a plugin is torn down."""
        self._unload_listeners.append(listener)

    def _on_error(self, name: str, source: str, error: BaseException) -> None:
        self._thresholds.record_error(name, source, error)
        for listener in self._error_listeners:
            try:
                listener(name, source, error)
            except Exception:
                log.exception("an error listener failed for plugin %s", name)

    def set_error_threshold(self, name: str, threshold: ErrorThreshold | None) -> None:
        """Give a loaded plugin its own error threshold (``None``: none); kept across reloads."""
        self._slot(name)
        self._oversight.set_threshold(name, threshold)

    def threshold_status(self, name: str) -> ThresholdStatus | None:
        """Where the plugin stands against its error threshold (None: it has none)."""
        return self._oversight.status(name)

    def reset_threshold(self, name: str) -> None:
        """Empty the plugin's error window and close its breaker (a new version starts clean)."""
        self._thresholds.reset(name)

    def record_success(self, name: str) -> None:
        """Tell the error threshold that a call into ``name`` succeeded (``reset_on_success``)."""
        self._thresholds.record_success(name)

    def check_thresholds(self) -> list[str]:
        """Notice successful calls and retry plugins whose cooldown passed; those reopened.

        Called periodically by a host (``tether.observability`` does, every second).
        """
        return self._oversight.check(list(self._slots.values()))

    def _threshold_disable(self, name: str, reason: str) -> None:
        if self._reloads.tripped(name, reason):
            return  # within a reload's grace period: rolled back instead
        if name in self._slots:
            self.set_enabled(name, enabled=False, reason=reason, persist=False)

    def _threshold_enable(self, name: str) -> bool:
        return name in self._slots and self.set_enabled(name, enabled=True, persist=False)

    def _alert(self, name: str, data: dict[str, object]) -> None:
        try:
            self.runtime.events.publish_nowait(THRESHOLD_EVENT, data)
        except TetherError as exc:
            log.warning("could not publish %s for plugin %s: %s", THRESHOLD_EVENT, name, exc)

    # ------------------------------------------------------------------ health

    def get_plugin_health(self, name: str) -> PluginHealth:
        """Status, errors, call and hook metrics, health check and threshold of a plugin."""
        slot = self._slot(name)
        return self._oversight.health_of(
            slot,
            self._info(slot),
            hook_metrics=self.runtime.hooks.metrics(name),
            load_duration=self._load_duration(name),
        )

    def get_all_health(self) -> dict[str, PluginHealth]:
        """``get_plugin_health`` of every loaded plugin, in load order."""
        return {s.name: self.get_plugin_health(s.name) for s in self._ordered()}

    def health_status(self) -> str:
        """``healthy``; ``degraded`` when a plugin could not be brought up and the host
        runs without it (``failed_plugins``), or a plugin is in error or failed its
        health check."""
        if self._failed:
            return "degraded"
        for health in self.get_all_health().values():
            if health.degraded or health.status is PluginStatus.ERROR:
                return "degraded"
        return "healthy"

    def _load_duration(self, name: str) -> float | None:
        for attempt in reversed(self.load_attempts):
            if attempt.plugin == name and attempt.status == "success":
                return attempt.duration
        return None

    async def check_health(self, name: str | None = None) -> dict[str, HealthCheckResult]:
        """Run ``health_check()`` of one running plugin, or of every one, now.

        Returns the results of the plugins that have a check and took it.
        """
        slots = [self._slot(name)] if name is not None else list(self._slots.values())
        return await self._oversight.check_health(
            slots, timeout=self.config.plugins.health_check_timeout
        )

    def is_degraded(self, name: str) -> bool:
        return self._oversight.health.is_degraded(name)

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Whether every plugin is enabled and running; the others with the reason."""
        waiting = {
            name: health.not_ready_reason or ""
            for name, health in self.get_all_health().items()
            if not health.is_ready
        }
        return not waiting, waiting

    # ------------------------------------------------------------------ enabled flags

    @property
    def state_target(self) -> str:
        """Where the state tables live: ``state.url``, else ``<state directory>/state.db``."""
        target = self.config.state.target
        if target:
            return str(target)
        return str(Path(self.runtime.state_directory) / "state.db")

    def persisted_flag(self, name: str) -> PersistedFlag:
        """The enabled flag the state store holds for ``name`` (enabled if none)."""
        return self._flags.get(name)

    def take_unsaved_switches(self) -> frozenset[str]:
        """Plugins switched on or off whose flag could not be written yet (and forget them)."""
        return self._flags.take_unsaved()

    def _persist_switch(self, name: str, *, enabled: bool, reason: str | None) -> None:
        if enabled:
            self._thresholds.reset(name)
        self._flags.switch(name, enabled=enabled, reason=reason)

    def get_plugin_settings(self, name: str) -> PluginConfig:
        """The settings a plugin was loaded with (path, config, permissions...)."""
        return self._slot(name).current.settings

    def set_enabled(
        self, name: str, *, enabled: bool, reason: str | None = None, persist: bool = True
    ) -> bool:
        """Switch a plugin's gate at once, from any thread: the error threshold's breaker.

        Disabling closes the gate (calls are refused with ``reason``) and leaves the
        plugin running. Enabling reopens the gate of a running plugin; it returns False
        (and changes nothing) for a plugin that is not running. With ``persist`` the
        flag is written to the state store. ``enable_plugin``/``disable_plugin`` also
        start and stop the plugin.
        """
        slot = self._slot(name)
        if enabled:
            if slot.current.status is not PluginStatus.RUNNING:
                return False
            slot.enabled = True
            slot.gate.open(slot.current.door)
        else:
            slot.enabled = False
            slot.gate.close(reason or "it is disabled")
        slot.note("enabled" if enabled else "disabled", slot.current.version, reason or "")
        if persist:
            self._persist_switch(name, enabled=enabled, reason=reason)
        return True

    async def enable_plugin(self, name: str) -> PluginInfo:
        """Enable a plugin and bring it up: initialize and start it if needed.

        Plugins that waited for it (their dependency was disabled) are brought up too.
        The flag is written to the state store, so it holds after a restart.
        """
        async with self._mutex():
            slot = self._slot(name)
            version = slot.current
            if version.status is PluginStatus.ERROR:
                error = version.last_error
                why = "" if error is None else f" ({error_text(error)})"
                raise PluginLifecycleError(name, "enable", f"it is in the error state{why}")
            slot.enabled = True
            self._persist_switch(name, enabled=True, reason=None)
            await self.runtime.events.start()
            await self._bring_up(slot)
            for dependent in self.dependents(name):
                other = self._slots[dependent]
                if other.enabled and dependent not in self._held_back():
                    try:
                        await self._bring_up(other)
                    except PluginLifecycleError as exc:
                        log.warning("could not bring up %s after enabling %s: %s",
                                    dependent, name, exc)  # fmt: skip
            return self._info(slot)

    async def _bring_up(self, slot: PluginSlot) -> None:
        if slot.current.status is PluginStatus.LOADING:
            slot = await self._initialize(slot)  # a fresh copy, if it was tried again
        version = slot.current
        if version.status in {PluginStatus.INITIALIZED, PluginStatus.STOPPED}:
            await self._start(slot)
        elif version.status is PluginStatus.RUNNING:
            slot.gate.open(version.door)

    async def disable_plugin(
        self, name: str, *, force: bool = False, reason: str | None = None
    ) -> PluginInfo:
        """Disable a plugin: stop it and close its gate (calls are refused with ``reason``).

        Refused while running plugins depend on it, unless ``force``. The flag is
        written to the state store: after a restart the plugin is loaded, not started.
        """
        reason = reason or "it is disabled"
        async with self._mutex():
            slot = self._slot(name)
            running = [
                d
                for d in self.dependents(name)
                if self._slots[d].current.status is PluginStatus.RUNNING and self._slots[d].enabled
            ]
            if running and not force:
                raise DependentsRunningError(name, running, action="disable")
            slot.enabled = False
            self._persist_switch(name, enabled=False, reason=reason)
            failure = None
            if slot.current.status is PluginStatus.RUNNING:
                failure = await self._stop(slot, None)
            slot.gate.close(reason)
            log.info("disabled plugin %s", name)
        if failure is not None:
            raise failure
        return self._info(slot)

    async def watch(
        self, *plugins: str, debounce: float | None = None, config: ReloadConfig | None = None
    ) -> PluginWatcher:
        """Reload a plugin once per burst of saves in its directory (``tether._watch``).

        Watches ``plugins`` (by default every plugin loaded from a directory); a burst
        ends after ``debounce`` seconds without another change (default 0.5). ``config``
        goes to each ``reload_plugin``. Returns the started watcher; ``stop()`` ends it,
        and so does ``aclose``.
        """
        from tether._watch import DEBOUNCE, PluginWatcher

        chosen = DEBOUNCE if debounce is None else debounce
        watcher = PluginWatcher(self, plugins, debounce=chosen, config=config)
        self._watchers = [w for w in self._watchers if w.running]
        self._watchers.append(await watcher.start())
        return watcher

    async def aclose(self) -> None:
        """Stop every plugin, then unload all of them in reverse order."""
        while self._watchers:  # first: no reload starts while the plugins stop
            await self._watchers.pop().stop()
        try:
            await self.stop_all()
        except StopAllError as exc:
            log.warning("%s", exc)
        for slot in reversed(self._ordered()):
            async with self._mutex():
                await self._teardown(slot)
                self._slots.pop(slot.name, None)
        self._order = ()
        self._failed.clear()
        undelivered = await self.runtime.events.stop(timeout=self.drain_timeout)
        if undelivered:
            log.warning("%d event(s) were not delivered before shutdown", undelivered)
        self.runtime.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
