"""Hot reload: a new version beside the running one, a swap behind the gate, and the way back.

:class:`Reloads` is the local reload coordinator of one :class:`tether.PluginManager`.
A reload of a running directory plugin::

    stage      read and check the new manifest (framework, isolation, contract, lock),
               check dependencies both ways (its own, and every loaded plugin that
               depends on it must accept the new version), import its code into a fresh
               private package beside the running one, validate its config against the
               new schema: nothing has stopped yet, a failure here leaves the old version
               serving (outcome ``rolled_back``, ``step`` says where)
    hold       the gate holds new calls (``block``: they wait, up to ``queue_timeout``,
               at most ``max_queue_size``; ``reject``: refused at once), calls in flight
               in the old version drain, ``export_state()`` is asked, the old version stops
    swap       storage is snapshotted; the new version initializes with a fresh context
               (its registrations go live at once: routes, hooks, services, middleware,
               subscriptions), gets ``import_state(state)``, starts; the gate opens to it
               and the held calls go through
    grace      for ``grace_period`` seconds the old version stays in memory (stopped); if
               the new one trips its error threshold or fails its health check, it is
               rolled back; once the period ends the old version is cleaned up and its
               modules dropped. Its files are written under the state directory
               (``tether._kept``) for ``rollback_plugin`` later

A failure in ``initialize`` or ``start`` (or in the grace period) rolls back: the failed
version is stopped and discarded, the storage snapshot is written back, and the previous
version (its code still imported: nothing is imported again) gets a fresh object and
context, is initialized and started, and takes the held calls. If even that fails the
plugin is left in error with both failures named. Every reload is recorded
(``plugin_reloads`` in the state store) and told to the ``on_reload`` listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.machinery
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tether._audit import watch as capability_watch
from tether._bounded import OverrunError, plugin_error, run_bounded
from tether._describe import error_line, error_text
from tether._intake import check_before_import, checked_config, import_code, new_version
from tether._kept import (
    CapturedFiles,
    KeptVersions,
    StorageSnapshot,
    capture,
    restore_storage,
    snapshot_storage,
)
from tether._lifecycle import PluginStatus
from tether._loader import code_directory, renew_code, unload_code
from tether._locate import Found, isolation_of
from tether._manifest import Manifest, load_manifest
from tether._reload_result import Outcome, ReloadConfig, ReloadResult, ResolvedReload
from tether._state_tables import PluginStateStore, read_reloads
from tether._steps import (
    code_of,
    initialize_version,
    retire_version,
    start_version,
    stop_version,
    threads_left,
)
from tether._versions import parse_constraint
from tether.errors import (
    FrameworkVersionMismatchError,
    MissingDependencyError,
    PluginLifecycleError,
    TetherError,
    VersionMismatchError,
)
from tether.isolation._remote import RemotePlugin, renew_remote

if TYPE_CHECKING:
    from tether._config import PluginConfig, TetherConfig
    from tether._contracts import ContractRegistry
    from tether._health import HealthCheckResult
    from tether._intake import LoadAttempt
    from tether._retries import FailedPlugin, Tries
    from tether._runtime import Runtime
    from tether._slots import PluginSlot, PluginVersion
    from tether._thresholds import ThresholdStatus
    from tether.types import PluginInfo

__all__ = ["ReloadHost", "Reloads"]

log = logging.getLogger("tether")

ReloadListener = Callable[[ReloadResult], None]


class ReloadHost(Protocol):
    """What the coordinator needs of its manager."""

    config: TetherConfig
    runtime: Runtime
    contracts: ContractRegistry
    framework_version: str
    drain_timeout: float
    load_attempts: list[LoadAttempt]
    _slots: dict[str, PluginSlot]
    _sources: dict[str, tuple[Found, Tries]]

    _failed: dict[str, FailedPlugin]
    leftover_threads: dict[str, tuple[str, ...]]

    def _mutex(self) -> asyncio.Lock: ...
    async def load_plugin(
        self, path: Path | str, config: PluginConfig | None = None, *, retries: int | None = None
    ) -> PluginInfo: ...
    async def enable_plugin(self, name: str) -> PluginInfo: ...
    async def unload_plugin(self, name: str, *, force: bool = False) -> None: ...
    def _slot(self, name: str) -> PluginSlot: ...
    def _limits(self, version: PluginVersion) -> dict[str, float]: ...
    def threshold_status(self, name: str) -> ThresholdStatus | None: ...
    def reset_threshold(self, name: str) -> None: ...
    async def check_health(self, name: str | None = None) -> dict[str, HealthCheckResult]: ...
    @property
    def state_target(self) -> str: ...


def _refusal(plugin: str, action: str, why: str, hint: str) -> PluginLifecycleError:
    error = PluginLifecycleError(plugin, action, why)
    error.hint = hint
    return error


class _StepFailedError(Exception):
    """The new version failed at ``step`` before anything of the old one stopped."""

    def __init__(self, step: str, error: BaseException, version: str | None) -> None:
        super().__init__(step)
        self.step = step
        self.error = error
        self.version = version


@dataclass(slots=True)
class _Attempt:
    """One reload or rollback in progress: what the result will say."""

    plugin: str
    kind: str
    from_version: str
    to_version: str | None
    settings: ResolvedReload
    started: float = field(default_factory=time.perf_counter)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    held_before: int = 0
    refused_before: int = 0

    def result(
        self,
        slot: PluginSlot,
        outcome: Outcome,
        *,
        step: str | None = None,
        error: BaseException | str | None = None,
        discarded: int = 0,
    ) -> ReloadResult:
        text = error if isinstance(error, str) or error is None else error_text(error)
        return ReloadResult(
            plugin=self.plugin,
            outcome=outcome,
            from_version=self.from_version,
            to_version=self.to_version,
            step=step,
            error=text,
            duration=time.perf_counter() - self.started,
            held=slot.gate.held_total - self.held_before,
            rejected=slot.gate.refused_total - self.refused_before,
            discarded_writes=discarded,
            at=self.at,
            kind="rollback" if self.kind == "rollback" else "reload",
        )


@dataclass(slots=True, eq=False)
class _Grace:
    """The grace period after a reload: the previous version kept, the new one watched."""

    previous: PluginVersion
    current: PluginVersion
    state: object
    snapshot: StorageSnapshot | None
    ends: float
    exceeded_before: int
    tripped: str | None = None
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


def _overlaps(old: PluginVersion, new: PluginVersion) -> bool:
    """Whether a reload runs both versions at once (blue/green): process plugins, unless
    the manifest says ``reload: {overlap: false}``."""
    remote = isinstance(old.instance, RemotePlugin) and isinstance(new.instance, RemotePlugin)
    return remote and new.manifest.reload.overlap


class Reloads:
    """The local reload coordinator of one manager (see the module docstring)."""

    def __init__(self, host: ReloadHost) -> None:
        self._host = host
        self._captured: dict[PluginVersion, CapturedFiles] = {}
        self._graces: dict[str, _Grace] = {}
        self._listeners: list[ReloadListener] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def kept(self) -> KeptVersions:
        return KeptVersions(Path(self._host.runtime.state_directory) / "versions")

    # ------------------------------------------------------------------ listening

    def on_reload(self, listener: ReloadListener) -> None:
        self._listeners.append(listener)

    def loaded(self, version: PluginVersion) -> None:
        """A version was loaded: keep its files in memory, for a rollback after it is gone
        (a directory plugin's: one in a private namespace, or in a worker of its own)."""
        if version.code.namespace is None and not isinstance(version.instance, RemotePlugin):
            return
        captured = capture(version.manifest)
        if captured is not None:
            self._captured[version] = captured

    def in_grace(self, name: str) -> bool:
        return name in self._graces

    def tripped(self, name: str, reason: str) -> bool:
        """The plugin's error threshold tripped (from any thread). In a grace period the new
        version is rolled back instead of disabled: True (handled)."""
        grace = self._graces.get(name)
        loop = self._loop
        if grace is None or loop is None or loop.is_closed():
            return False
        grace.tripped = reason
        grace.current.door.gate.hold()  # no more calls into the failing version meanwhile
        loop.call_soon_threadsafe(grace.wake.set)
        return True

    # ------------------------------------------------------------------ history

    def history(self, name: str | None = None, *, limit: int = 50) -> list[ReloadResult]:
        return read_reloads(self._host.state_target, name, limit)

    def _record(self, result: ReloadResult) -> ReloadResult:
        try:
            with PluginStateStore(self._host.state_target) as store:
                store.add_reload(result)
        except TetherError as exc:
            log.warning("could not record the reload of %s: %s", result.plugin, exc)
        for listener in self._listeners:
            try:
                listener(result)
            except Exception:
                log.exception("a reload listener failed for plugin %s", result.plugin)
        return result

    # ------------------------------------------------------------------ reload

    async def reload(self, name: str, config: ReloadConfig | None = None) -> ReloadResult:
        """Reload ``name`` from its directory (see the module docstring)."""
        host = self._host
        self._loop = asyncio.get_running_loop()
        settings = (config or ReloadConfig()).resolve(host.config.reload)
        async with host._mutex():  # noqa: SLF001 - the manager's own lock
            slot = host._slot(name)  # noqa: SLF001
            await self._end_grace(slot)
            live = self._running(slot, "reload")
            found = self._found(name, "reload")
            return await self._replace(slot, live, found.location, settings, kind="reload")

    async def rollback(self, name: str, config: ReloadConfig | None = None) -> ReloadResult:
        """Go back to the previous version: the one still in memory during a grace period,
        else the copy of its files kept under the state directory."""
        host = self._host
        self._loop = asyncio.get_running_loop()
        settings = (config or ReloadConfig()).resolve(host.config.reload)
        async with host._mutex():  # noqa: SLF001
            slot = host._slot(name)  # noqa: SLF001
            grace = self._graces.get(name)
            if grace is not None:
                self._stop_watching(grace)
                attempt = self._attempt(slot, grace.current, grace.previous.version, settings,
                                        kind="rollback")  # fmt: skip
                self._hold(slot, settings)
                return await self._roll_back(slot, attempt, grace, step=None,
                                             error="rolled back by request")  # fmt: skip
            live = self._running(slot, "roll back")
            self._found(name, "roll back")
            copy = self.kept.latest(name, other_than=live.location)
            if copy is None:
                raise _refusal(
                    name, "rollback", "no previous version is kept to roll back to",
                    f"a copy of each version is kept under {self.kept.root} when a reload "
                    "replaces it; reload the plugin from a directory holding the version you want",
                )  # fmt: skip
            result = await self._replace(slot, live, str(copy.directory), settings,
                                         kind="rollback")  # fmt: skip
            if result.step is not None:
                raise PluginLifecycleError(
                    name, "rollback", f"the kept copy of {copy.version} failed at "
                    f"{result.step}: {result.error}; {live.version} keeps running",
                )  # fmt: skip
            return result

    async def bring_back(self, failed: FailedPlugin) -> ReloadResult:
        """A plugin that is not required and was set aside (it failed to come up): load it
        again from its directory and bring it up; if it fails again it stays set aside
        (outcome ``failed``: it still has no running version)."""
        host = self._host
        name = failed.name
        if failed.path is None:
            raise _refusal(
                name, "reload", f"it was set aside ({failed.step}) with no directory to load from",
                "fix what it depends on and restart the host",
            )  # fmt: skip
        started, at = time.perf_counter(), datetime.now(UTC)
        to_version: str | None = None
        try:
            info = await host.load_plugin(failed.path, failed.settings, retries=0)
            to_version = info.version
            await host.enable_plugin(name)
        except TetherError as exc:
            step = self._failed_step(name, to_version)
            if name in host._slots:  # noqa: SLF001
                await host.unload_plugin(name, force=True)
            host._failed[name] = dataclasses.replace(  # noqa: SLF001
                failed, step=step, error=exc, version=to_version or failed.version,
                at=datetime.now(UTC),
            )  # fmt: skip
            log.error("plugin %s: reload failed at %s: %s; it stays set aside", name, step,  # noqa: TRY400 - one line names it
                      error_line(exc))  # fmt: skip
            result = ReloadResult(name, "failed", failed.version, to_version, step=step,
                                  error=error_text(exc), duration=time.perf_counter() - started,
                                  at=at)  # fmt: skip
            return self._record(result)
        log.info("plugin %s %s was set aside; it is running now", name, to_version)
        result = ReloadResult(name, "reloaded", failed.version, to_version,
                              duration=time.perf_counter() - started, at=at)  # fmt: skip
        return self._record(result)

    def _failed_step(self, name: str, version: str | None) -> str:
        slot = self._host._slots.get(name)  # noqa: SLF001
        if version is None or slot is None:
            return "import"
        return "start" if slot.current.initialized else "initialize"

    def _running(self, slot: PluginSlot, action: str) -> PluginVersion:
        live = slot.live
        if not slot.enabled:
            raise _refusal(
                slot.name, action, f"it is disabled ({slot.gate.closed_reason})",
                f"enable it first (`tether plugins enable {slot.name}`), then reload it",
            )  # fmt: skip
        if live is None or live.status is not PluginStatus.RUNNING:
            status = slot.current.status.value
            raise _refusal(
                slot.name, action, f"it is {status}: only a running plugin can be reloaded",
                "start it first (`tether plugins enable`), or fix it and restart the host",
            )  # fmt: skip
        return live

    def _found(self, name: str, action: str) -> Found:
        source = self._host._sources.get(name)  # noqa: SLF001
        if source is None or not source[0].private:
            raise _refusal(
                name, action, "it was not loaded from a directory (it comes from an installed "
                "distribution, whose modules Python imports once)",
                "reinstall the distribution and restart the host, or load the plugin from its "
                "directory (plugins: [{path: ...}]) to reload it in place",
            )  # fmt: skip
        return source[0]

    def _attempt(
        self,
        slot: PluginSlot,
        live: PluginVersion,
        to_version: str | None,
        settings: ResolvedReload,
        *,
        kind: str,
    ) -> _Attempt:
        return _Attempt(
            slot.name, kind, live.version, to_version, settings,
            held_before=slot.gate.held_total, refused_before=slot.gate.refused_total,
        )  # fmt: skip

    async def _replace(
        self,
        slot: PluginSlot,
        live: PluginVersion,
        location: str,
        settings: ResolvedReload,
        *,
        kind: str,
    ) -> ReloadResult:
        attempt = self._attempt(slot, live, None, settings, kind=kind)
        try:
            new = await self._stage(slot, live, location)
        except _StepFailedError as failed:
            attempt.to_version = failed.version
            log.error("plugin %s: reload to %s failed at %s: %s; %s keeps running", slot.name,  # noqa: TRY400 - the error is the plugin's, told in one line
                      failed.version or "?", failed.step, error_line(failed.error),
                      live.version)  # fmt: skip
            result = attempt.result(slot, "rolled_back", step=failed.step, error=failed.error)
            return self._record(result)
        attempt.to_version = new.version
        if _overlaps(live, new):
            return await self._swap_overlapping(slot, live, new, attempt)
        return await self._swap(slot, live, new, attempt)

    # ------------------------------------------------------------------ stage

    async def _stage(self, slot: PluginSlot, live: PluginVersion, location: str) -> PluginVersion:
        host = self._host
        name = slot.name
        version: str | None = None
        try:
            manifest = load_manifest(Path(location))
            version = manifest.version
            if manifest.name != name:
                raise _refusal(
                    name,
                    "reload",
                    f"the manifest at {location} now names '{manifest.name}'",
                    "a reload keeps the plugin's name; load the other plugin separately",
                )
            found = Found(manifest, str(manifest.directory or location), private=True)
            contract, permissions = check_before_import(
                found, live.settings, contracts=host.contracts,
                framework_version=host.framework_version, config=host.config,
            )  # fmt: skip
            if contract.name != live.contract.name:
                raise _refusal(
                    name, "reload", f"it now provides '{contract.name}', not "
                    f"'{live.contract.name}'",
                    "a reload keeps the contract a plugin provides; restart the host",
                )  # fmt: skip
        except TetherError as exc:
            raise _StepFailedError("manifest", exc, version) from exc
        try:
            self._check_dependencies(manifest)
        except TetherError as exc:
            raise _StepFailedError("dependencies", exc, version) from exc
        changed = self._changed_extension(live, found)
        if changed is not None:
            raise _StepFailedError("import", changed, version)
        limits = host._limits(live)  # noqa: SLF001
        limit = limits["initialize"]
        process = limits if isolation_of(manifest, live.settings) == "process" else None
        try:
            code = await import_code(manifest, contract, private=True,
                                     attempts=host.load_attempts, limit=limit,
                                     process=process)  # fmt: skip
        except TetherError as exc:
            raise _StepFailedError("import", exc, version) from exc
        try:
            values = await checked_config(manifest, code, contract, live.settings, host.config,
                                          limit)  # fmt: skip
            staged = new_version(slot, found, live.settings, code, contract, permissions,
                                 values=values, config=host.config,
                                 runtime=host.runtime)  # fmt: skip
        except TetherError as exc:
            unload_code(code)
            raise _StepFailedError("config", exc, version) from exc
        except BaseException:
            unload_code(code)
            raise
        directory = code_directory(code)
        if directory is not None:
            capability_watch.track(name, directory, permissions)
        self.loaded(staged)
        return staged

    def _changed_extension(self, live: PluginVersion, found: Found) -> TetherError | None:
        """A C extension the live version imported whose file changed since: the process
        cannot load it again (the dynamic loader hands back the library already loaded)."""
        captured = self._captured.get(live)
        namespace = live.code.namespace
        directory = found.manifest.directory
        if captured is None or namespace is None or directory is None:
            return None
        suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
        prefix = namespace + "."
        loaded = set()
        for name, module in list(sys.modules.items()):
            origin = str(getattr(module, "__file__", ""))
            if name.startswith(prefix) and origin.endswith(suffixes):
                loaded.add(Path(origin).resolve())
        before = dict(captured.files)
        for relative, _ in captured.files:
            path = directory / relative
            if not relative.endswith(suffixes):
                continue
            if (Path(captured.source) / relative).resolve() not in loaded:
                continue
            try:
                now = path.read_bytes()
            except OSError:
                continue
            if now != before[relative]:
                return TetherError(
                    f"the C extension {relative} changed since {live.version} loaded it; a "
                    "process cannot load a C extension twice (it would keep running the old "
                    "build): restart the host to run the new one",
                    plugin=live.name, path=path,
                    hint="restart the host; keep C extensions in a separate, versioned package "
                    "if the plugin must reload without a restart",
                )  # fmt: skip
        return None

    def _check_dependencies(self, manifest: Manifest) -> None:
        """Its dependencies are loaded in versions it accepts, and every loaded plugin that
        depends on it accepts its new version."""
        slots = self._host._slots  # noqa: SLF001
        constraint = manifest.framework.version
        if not parse_constraint(constraint).allows(self._host.framework_version):
            raise FrameworkVersionMismatchError(manifest.name, constraint,
                                                self._host.framework_version)  # fmt: skip
        for dependency in manifest.dependencies:
            other = slots.get(dependency.name)
            if other is None:
                if not dependency.optional:
                    raise MissingDependencyError(manifest.name, dependency.name, dependency.version)
                continue
            if not parse_constraint(dependency.version).allows(other.current.version):
                raise VersionMismatchError(manifest.name, dependency.name, dependency.version,
                                           other.current.version)  # fmt: skip
        for other in slots.values():
            for dependency in other.current.manifest.dependencies:
                if dependency.name != manifest.name:
                    continue
                if not parse_constraint(dependency.version).allows(manifest.version):
                    raise VersionMismatchError(other.name, manifest.name, dependency.version,
                                               manifest.version)  # fmt: skip

    # ------------------------------------------------------------------ swap

    def _hold(self, slot: PluginSlot, settings: ResolvedReload) -> None:
        gate = slot.gate
        gate.hold_timeout = settings.queue_timeout
        gate.max_waiting = settings.max_queue_size
        gate.hold(reject=settings.strategy == "reject")

    def _release(self, slot: PluginSlot, version: PluginVersion) -> None:
        """Open the gate to ``version``; the held calls go to it."""
        gate = slot.gate
        waiting = gate.waiting
        reload = self._host.config.reload
        gate.open(version.door)
        gate.hold_timeout, gate.max_waiting = reload.queue_timeout, reload.max_queue_size
        if waiting:
            log.info("Processing %d queued requests", waiting)

    async def _quiesce(
        self, slot: PluginSlot, old: PluginVersion, new: PluginVersion, attempt: _Attempt
    ) -> object:
        """Hold the callers, let ``old``'s calls drain, take its state (for ``new``)."""
        host = self._host
        self._hold(slot, attempt.settings)
        if not await slot.gate.drain(host.drain_timeout, door=old.door):
            log.warning("plugin %s: %d call(s) still in %s after %.1fs; going on anyway",
                        slot.name, old.door.in_flight, old.version, host.drain_timeout)  # fmt: skip
        return await self._export_state(old, host._limits(new)["call"])  # noqa: SLF001

    async def _swap(
        self, slot: PluginSlot, old: PluginVersion, new: PluginVersion, attempt: _Attempt
    ) -> ReloadResult:
        host = self._host
        state = await self._quiesce(slot, old, new, attempt)
        stopped = await stop_version(slot, old, host._limits(old)["stop"], host.drain_timeout,  # noqa: SLF001
                                     keep_gate=True)  # fmt: skip
        if stopped is not None:
            log.warning("plugin %s: stopping %s for the reload failed: %s", slot.name,
                        old.version, stopped)  # fmt: skip
        snapshot = self._snapshot(slot.name)
        grace = _Grace(old, new, state, snapshot, ends=0.0,
                       exceeded_before=self._exceeded(slot.name))  # fmt: skip
        try:
            await self._bring_in(slot, new, state)
        except _StepFailedError as failed:
            return await self._roll_back(slot, attempt, grace, step=failed.step,
                                         error=failed.error)  # fmt: skip
        host.reset_threshold(slot.name)
        grace.exceeded_before = self._exceeded(slot.name)
        self._release(slot, new)
        return await self._finish(slot, old, new, attempt, grace)

    async def _finish(
        self,
        slot: PluginSlot,
        old: PluginVersion,
        new: PluginVersion,
        attempt: _Attempt,
        grace: _Grace,
    ) -> ReloadResult:
        """The new version runs: record it, and watch it for the grace period (or retire
        the old version at once)."""
        self._keep_files(old, new)
        done: Outcome = "rolled_back" if attempt.kind == "rollback" else "reloaded"
        log.info("%s plugin %s %s -> %s", done.replace("_", " "), slot.name, old.version,
                 new.version)  # fmt: skip
        result = self._record(attempt.result(slot, done))
        period = attempt.settings.grace_period
        if period > 0:
            grace.ends = time.monotonic() + period
            self._graces[slot.name] = grace
            grace.task = asyncio.get_running_loop().create_task(
                self._watch(slot, grace, attempt), name=f"tether-grace-{slot.name}"
            )
        else:
            await self._retire(slot, old, reason=f"replaced by {new.version}")
        return result

    async def _swap_overlapping(
        self, slot: PluginSlot, old: PluginVersion, new: PluginVersion, attempt: _Attempt
    ) -> ReloadResult:
        """Blue/green, for process plugins: the new version's worker is initialized,
        started and health-checked while the old one still runs; only then does the gate
        switch and the old worker stop. On any failure before the switch the old version
        was never stopped: it takes the held calls again."""
        host = self._host
        limits = host._limits(new)  # noqa: SLF001
        state = await self._quiesce(slot, old, new, attempt)
        snapshot = self._snapshot(slot.name)
        grace = _Grace(old, new, state, snapshot, ends=0.0,
                       exceeded_before=self._exceeded(slot.name))  # fmt: skip
        try:
            await self._bring_in(slot, new, state)
            await self._check_new(new, limits["call"])
        except _StepFailedError as failed:
            return await self._keep_old(slot, attempt, grace, failed)
        host.reset_threshold(slot.name)
        grace.exceeded_before = self._exceeded(slot.name)
        self._release(slot, new)
        stopped = await stop_version(slot, old, host._limits(old)["stop"], host.drain_timeout,  # noqa: SLF001
                                     keep_gate=True)  # fmt: skip
        if stopped is not None:
            log.warning("plugin %s: stopping %s after the switch failed: %s", slot.name,
                        old.version, stopped)  # fmt: skip
        return await self._finish(slot, old, new, attempt, grace)

    async def _check_new(self, version: PluginVersion, limit: float) -> None:
        """The new version's health check, before anything is switched to it."""
        check = getattr(version.instance, "health_check", None)
        if not callable(check):
            return
        try:
            healthy = await run_bounded(check, code=code_of(version), what="health_check",
                                        limit=limit)  # fmt: skip
        except OverrunError as exc:
            late = PluginLifecycleError(
                version.name, "health_check", f"no answer in {exc.limit:g}s"
            )
            raise _StepFailedError("health_check", late, version.version) from None
        except Exception as exc:
            failed = PluginLifecycleError(version.name, "health_check", plugin_error(exc))
            raise _StepFailedError("health_check", failed, version.version) from exc
        if healthy is False:
            failed = PluginLifecycleError(version.name, "health_check", "it answered False")
            raise _StepFailedError("health_check", failed, version.version)

    async def _keep_old(
        self, slot: PluginSlot, attempt: _Attempt, grace: _Grace, failed: _StepFailedError
    ) -> ReloadResult:
        """The new version failed before the switch: take it down, give the old one (which
        never stopped) its registrations and the held calls back."""
        host = self._host
        old, new = grace.previous, grace.current
        log.error("Plugin reload failed: %s v%s: %s error: %s", slot.name, new.version,
                  failed.step, error_line(failed.error))  # fmt: skip
        log.info("Rolling back to previous version: %s v%s", slot.name, old.version)
        if new.status is PluginStatus.RUNNING:
            await stop_version(slot, new, host._limits(new)["stop"], host.drain_timeout,  # noqa: SLF001
                               keep_gate=True)  # fmt: skip
        discarded = self._restore(slot.name, grace.snapshot)
        slot.commit(old)
        host.reset_threshold(slot.name)
        self._release(slot, old)
        log.info("Previous version restored successfully")
        await self._retire(slot, new, reason=f"failed at {failed.step}")
        result = attempt.result(slot, "rolled_back", step=failed.step, error=failed.error,
                                discarded=discarded)  # fmt: skip
        return self._record(result)

    def _keep_files(self, old: PluginVersion, new: PluginVersion) -> None:
        captured = self._captured.pop(old, None)
        if captured is None:
            return
        try:
            self.kept.keep(captured, running_from=new.location)
        except OSError as exc:
            log.warning("plugin %s: could not keep a copy of %s for `plugins rollback`: %s",
                        old.name, old.version, exc)  # fmt: skip

    def _snapshot(self, name: str) -> StorageSnapshot | None:
        try:
            store = self._host.runtime.state_store()
        except TetherError as exc:
            log.warning("plugin %s: no storage snapshot before the reload: %s", name, exc)
            return None
        return snapshot_storage(store, name)

    def _exceeded(self, name: str) -> int:
        status = self._host.threshold_status(name)
        return 0 if status is None else status.exceeded_count

    async def _bring_in(self, slot: PluginSlot, version: PluginVersion, state: object) -> None:
        """Initialize (its registrations go live), hand it ``state``, start: the gate stays
        held. ``_StepFailedError`` names the step that failed."""
        limits = self._host._limits(version)  # noqa: SLF001
        step = "initialize"
        try:
            await initialize_version(slot, version, limits["initialize"], open_gate=False,
                                     quiet=True)  # fmt: skip
            step = "import_state"
            await self._import_state(version, state, limits["call"])
            step = "start"
            await start_version(slot, version, limits["start"], open_gate=False, quiet=True)
        except PluginLifecycleError as exc:
            raise _StepFailedError(step, exc, version.version) from exc

    # ------------------------------------------------------------------ state hand-off

    async def _export_state(self, version: PluginVersion, limit: float) -> object:
        export = getattr(version.instance, "export_state", None)
        if not callable(export):
            return None
        try:
            return await run_bounded(export, code=code_of(version), what="export_state",
                                     limit=limit)  # fmt: skip
        except OverrunError as exc:
            log.warning("plugin %s %s: export_state() did not return within %gs; the next "
                        "version starts without its state", version.name, version.version,
                        exc.limit)  # fmt: skip
        except Exception as exc:
            log.warning("plugin %s %s: export_state() raised %s; the next version starts "
                        "without its state", version.name, version.version,
                        error_line(plugin_error(exc)))  # fmt: skip
        return None

    async def _import_state(self, version: PluginVersion, state: object, limit: float) -> None:
        take = getattr(version.instance, "import_state", None)
        if state is None or not callable(take):
            return
        try:
            await run_bounded(take, state, code=code_of(version), what="import_state",
                              limit=limit)  # fmt: skip
        except OverrunError as exc:
            late = f"import_state() did not return within {exc.limit:g}s"
            raise PluginLifecycleError(version.name, "import_state", late) from None
        except Exception as exc:
            error = plugin_error(exc)
            raise PluginLifecycleError(version.name, "import_state", error) from error

    # ------------------------------------------------------------------ rolling back

    async def _roll_back(
        self,
        slot: PluginSlot,
        attempt: _Attempt,
        grace: _Grace,
        *,
        step: str | None,
        error: BaseException | str,
    ) -> ReloadResult:
        """Take the failed version down and bring the previous one back (held calls wait)."""
        host = self._host
        failed, previous = grace.current, grace.previous
        self._graces.pop(slot.name, None)
        if step is not None:
            cause = error if isinstance(error, str) else error.__cause__ or error
            log.error("Plugin reload failed: %s v%s: %s error: %s", slot.name, failed.version,
                      step, error if isinstance(error, str) else error_line(error))  # fmt: skip
            if isinstance(cause, BaseException):
                log.debug("plugin %s: the failure of %s", slot.name, failed.version,
                          exc_info=cause)  # fmt: skip
        log.info("Rolling back to previous version: %s v%s", slot.name, previous.version)
        if failed.status is PluginStatus.RUNNING:
            stopped = await stop_version(slot, failed, host._limits(failed)["stop"],  # noqa: SLF001
                                         host.drain_timeout, keep_gate=True)  # fmt: skip
            if stopped is not None:
                log.warning("plugin %s: stopping the failed %s: %s", slot.name, failed.version,
                            stopped)  # fmt: skip
        discarded = self._restore(slot.name, grace.snapshot)
        try:
            revived = self._revive(slot, previous)
            await self._bring_in(slot, revived, grace.state)
        except _StepFailedError as again:
            return await self._give_up(slot, attempt, grace, step, error, again.error, discarded)
        except TetherError as second:  # its object could not be made again
            return await self._give_up(slot, attempt, grace, step, error, second, discarded)
        host.reset_threshold(slot.name)
        self._release(slot, revived)
        log.info("Previous version restored successfully")
        await self._retire(slot, failed, reason=f"failed at {step}" if step else "rolled back")
        await self._retire(slot, previous, reason="revived")
        outcome: Outcome = "rolled_back"
        result = attempt.result(slot, outcome, step=step, error=None if step is None else error,
                                discarded=discarded)  # fmt: skip
        if discarded:
            log.info("plugin %s: %d storage key(s) written by %s were restored", slot.name,
                     discarded, failed.version)  # fmt: skip
        return self._record(result)

    async def _give_up(
        self,
        slot: PluginSlot,
        attempt: _Attempt,
        grace: _Grace,
        step: str | None,
        error: BaseException | str,
        second: BaseException,
        discarded: int,
    ) -> ReloadResult:
        """Not even the previous version came back: the plugin is in error, both named."""
        first = error if isinstance(error, str) else error_line(error)
        both = (
            f"{grace.current.version} failed at {step}: {first}; the previous version "
            f"{grace.previous.version} could not start again: {error_line(second)}"
        )
        log.error("plugin %s: %s", slot.name, both)
        for version in list(slot.versions):
            if version is slot.current and version.status is PluginStatus.ERROR:
                continue  # the revived one stays, in error, so the plugin reports it
            if version.status is PluginStatus.RUNNING:
                await stop_version(slot, version, 1.0, 0.0, keep_gate=True)
            await self._retire(slot, version, reason="reload failed")
        slot.gate.close(f"its reload failed and the previous version could not start: {both}")
        result = attempt.result(slot, "failed", step=step, error=both, discarded=discarded)
        return self._record(result)

    def _revive(self, slot: PluginSlot, previous: PluginVersion) -> PluginVersion:
        """A fresh object and context for the previous version's code (nothing imported)."""
        host = self._host
        code = (
            renew_remote(previous.code)
            if isinstance(previous.instance, RemotePlugin)
            else renew_code(previous.code, contract=previous.contract)
        )
        found = Found(previous.manifest, previous.location, private=True)
        revived = new_version(slot, found, previous.settings, code, previous.contract,
                              previous.scope.permissions, values=previous.scope.config,
                              config=host.config, runtime=host.runtime)  # fmt: skip
        captured = self._captured.pop(previous, None)
        if captured is not None:
            self._captured[revived] = captured
        return revived

    def _restore(self, name: str, snapshot: StorageSnapshot | None) -> int:
        if snapshot is None:
            return 0
        try:
            return restore_storage(self._host.runtime.state_store(), snapshot)
        except TetherError as exc:
            log.error("plugin %s: could not restore its storage snapshot: %s", name, exc)  # noqa: TRY400 - one line names it
            return 0

    # ------------------------------------------------------------------ the grace period

    async def _watch(self, slot: PluginSlot, grace: _Grace, attempt: _Attempt) -> None:
        """Watch the new version until the grace period ends; roll back if it fails."""
        has_check = callable(getattr(grace.current.instance, "health_check", None))
        step = min(1.0, max((grace.ends - time.monotonic()) / 10, 0.05))
        while (left := grace.ends - time.monotonic()) > 0 and grace.tripped is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(grace.wake.wait(), min(step, left))
            if grace.tripped is None and self._exceeded(slot.name) > grace.exceeded_before:
                grace.tripped = "its error threshold was exceeded"
            if grace.tripped is None and has_check and slot.live is grace.current:
                checked = (await self._host.check_health(slot.name)).get(slot.name)
                if checked is not None and not checked.ok:
                    grace.tripped = f"its health check failed: {checked.error}"
        async with self._host._mutex():  # noqa: SLF001
            if self._graces.get(slot.name) is not grace:
                return  # ended meanwhile (a new reload, an unload)
            if grace.tripped is None:
                self._graces.pop(slot.name, None)
                await self._retire(slot, grace.previous,
                                   reason=f"replaced by {grace.current.version}")  # fmt: skip
                return
            crash = self._attempt(slot, grace.current, grace.previous.version, attempt.settings,
                                  kind="reload")  # fmt: skip
            crash.from_version, crash.to_version = grace.previous.version, grace.current.version
            self._hold(slot, attempt.settings)
            await self._roll_back(slot, crash, grace, step="grace", error=grace.tripped)

    def _stop_watching(self, grace: _Grace) -> None:
        task = grace.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _end_grace(self, slot: PluginSlot) -> None:
        """End a grace period now (the new version stays): a new reload, an unload."""
        grace = self._graces.pop(slot.name, None)
        if grace is None:
            return
        self._stop_watching(grace)
        if grace.previous in slot.versions:
            await self._retire(slot, grace.previous, reason=f"replaced by {grace.current.version}")

    async def forget(self, slot: PluginSlot) -> None:
        """The plugin is being unloaded: end its grace period, drop its captures."""
        grace = self._graces.pop(slot.name, None)
        if grace is not None:
            self._stop_watching(grace)
        for version in [v for v in self._captured if v.name == slot.name]:
            del self._captured[version]

    async def _retire(self, slot: PluginSlot, version: PluginVersion, *, reason: str) -> None:
        if version not in slot.versions:
            return
        limit = self._host._limits(version)["stop"]  # noqa: SLF001
        failure = await retire_version(slot, version, reason=reason, limit=limit)
        if failure is not None:
            log.warning("plugin %s %s: %s", slot.name, version.version, failure)
        self._captured.pop(version, None)
        left = threads_left(slot, version)
        if left:
            self._host.leftover_threads[slot.name] = tuple(left)
            log.warning("plugin %s %s left %d thread(s) running after it was retired: %s; they "
                        "cannot be stopped in-process", slot.name, version.version, len(left),
                        ", ".join(left))  # fmt: skip
