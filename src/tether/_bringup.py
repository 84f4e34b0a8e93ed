"""The manager's up path: loading plugins (with retries), initializing and starting them
in dependency order, and going on without a plugin that is not required.

:class:`BringUp` is the half of :class:`tether.PluginManager` that brings plugins up;
the manager adds what runs once they are up (queries, stop and unload, health, error
thresholds, enabled flags). The policy (how many tries, which failures may pass, what a
failed plugin leaves behind) is ``tether._retries``.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
from collections.abc import Mapping
from pathlib import Path

from tether._bounded import EscapedError, OverrunError, PluginCode, frame_in, run_bounded
from tether._callstats import CallStats
from tether._config import PluginConfig, TetherConfig, load_config
from tether._contracts import ContractRegistry
from tether._describe import error_line
from tether._flags import EnabledFlags
from tether._hooks import HookOutcome
from tether._intake import LoadAttempt, load_slot
from tether._lifecycle import PluginStatus
from tether._locate import Found, Locator, check_name, settings_of, timeouts_of
from tether._manifest import Manifest, load_manifest
from tether._oversight import Oversight
from tether._reload import Reloads
from tether._resolver import Resolution, resolve
from tether._retries import (
    FailedPlugin,
    RetryPolicy,
    Tries,
    describe,
    failed_dependency,
    needs_failed,
)
from tether._runtime import Runtime
from tether._slots import PluginSlot, PluginVersion
from tether._steps import code_of, initialize_version, start_version
from tether.errors import (
    PluginLifecycleError,
    PluginNameConflictError,
    PluginNotFoundError,
    TetherError,
)
from tether.isolation._remote import WORKER_EVENT, RemotePlugin
from tether.types import SHUTDOWN, STARTUP, PluginInfo

__all__ = ["BringUp"]

log = logging.getLogger("tether")

_INITIALIZED = frozenset({PluginStatus.INITIALIZED, PluginStatus.RUNNING, PluginStatus.STOPPED})


class BringUp:
    """Load, initialize and start plugins; the state :class:`tether.PluginManager` sets up."""

    config: TetherConfig
    runtime: Runtime
    contracts: ContractRegistry
    framework_version: str
    stop_timeout: float
    retry_attempts: int | None
    load_attempts: list[LoadAttempt]
    _slots: dict[str, PluginSlot]
    _order: tuple[str, ...]
    _lock: asyncio.Lock | None
    _locator: Locator | None
    _stats: CallStats
    _oversight: Oversight
    _flags: EnabledFlags
    _failed: dict[str, FailedPlugin]
    _sources: dict[str, tuple[Found, Tries]]
    _reloads: Reloads

    # what the manager provides
    def _on_error(self, name: str, source: str, error: BaseException) -> None:
        raise NotImplementedError

    async def _teardown(self, slot: PluginSlot) -> PluginLifecycleError | None:
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers

    def _mutex(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _slot(self, name: str) -> PluginSlot:
        slot = self._slots.get(name)
        if slot is None:
            close = difflib.get_close_matches(name, list(self._slots), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "`tether plugins list` shows them"
            raise PluginNotFoundError(f"plugin not found: '{name}'", plugin=name, hint=hint)
        return slot

    def _info(self, slot: PluginSlot) -> PluginInfo:
        version = slot.current
        m = version.manifest
        return PluginInfo(
            name=m.name,
            version=m.version,
            description=m.description,
            author=m.author,
            loaded=True,
            enabled=slot.enabled,
            load_time=version.load_time,
            status=version.status,
            path=version.location,
            isolation=version.settings.isolation or m.isolation,
            provides=m.provides,
        )

    def _limits(self, version: PluginVersion) -> dict[str, float]:
        return timeouts_of(
            version.manifest, version.settings, self.config, {"stop": self.stop_timeout}
        )

    def _ordered(self) -> list[PluginSlot]:
        if set(self._order) == set(self._slots):
            return [self._slots[n] for n in self._order]
        return list(self._slots.values())

    def resolve_dependencies(self) -> Resolution:
        """Check the loaded plugins' dependencies; return their load order and graph."""
        slots = list(self._slots.values())
        resolution = resolve(
            [s.current.manifest for s in slots],
            framework_version=self.framework_version,
            priorities={s.name: s.current.settings.priority for s in slots},
        )
        self._order = resolution.order
        return resolution

    # ------------------------------------------------------------------ loading

    async def load_plugin(
        self,
        path: Path | str,
        config: PluginConfig | Mapping[str, object] | None = None,
        *,
        retries: int | None = None,
        retry_backoff: float | None = None,
    ) -> PluginInfo:
        """Load one plugin from its directory (or manifest file).

        The plugin's code is imported and its object created; it is not initialized
        (see ``initialize_all``). Failures that may pass are tried again as the entry's
        ``retries`` say; ``retries`` (tries after the first) and ``retry_backoff``
        (seconds) override them. The load is tried whatever ``required`` says.
        """
        settings = settings_of(config)
        path = Path(path)
        if not path.exists():
            raise PluginNotFoundError(
                f"failed to load plugin: plugin file not found: {path}",
                path=path,
                plugin=settings.name,
                hint="check the path (relative paths in a config file are relative to the file)",
            )
        manifest = load_manifest(path)
        check_name(manifest, settings, path)
        found = Found(manifest, str(manifest.directory or path), private=True)
        policy = RetryPolicy.overridden(
            self._policy(settings), retries=retries, backoff=retry_backoff
        )
        return await self._load_found(found, settings, Tries(manifest.name, policy))

    def _policy(self, settings: PluginConfig) -> RetryPolicy:
        return RetryPolicy.of(settings, attempts=self.retry_attempts)

    async def _load_found(self, found: Found, settings: PluginConfig, tries: Tries) -> PluginInfo:
        async with self._mutex():
            slot = await self._load(found, settings, tries)
            self._slots[slot.name] = slot
            self._failed.pop(slot.name, None)
            self._order = ()
            return self._info(slot)

    async def _load(self, found: Found, settings: PluginConfig, tries: Tries) -> PluginSlot:
        """Load the plugin, trying again while ``tries`` allow."""
        manifest = found.manifest
        existing = self._slots.get(manifest.name)
        if existing is not None:
            location = existing.current.location
            if location == found.location:
                raise PluginNameConflictError.same_place(manifest.name, found.location)
            raise PluginNameConflictError(manifest.name, location, found.location)
        while True:
            tries.begin()
            try:
                slot = await load_slot(
                    found,
                    settings,
                    contracts=self.contracts,
                    framework_version=self.framework_version,
                    config=self.config,
                    runtime=self.runtime,
                    stats=self._stats,
                    attempts=self.load_attempts,
                    on_error=functools.partial(self._on_error, manifest.name),
                )
            except TetherError as exc:
                if not await tries.again("load", exc):
                    raise tries.exhausted(exc)  # noqa: B904 - the error itself, annotated
                continue
            self._sources[slot.name] = (found, tries)
            self._observe_load(slot, settings)
            return slot

    def _watch_worker(self, slot: PluginSlot) -> None:
        """A process plugin tells the manager when its worker crashes, is restarted, or
        is given up on (disabled, with an alert)."""
        instance = slot.current.instance
        if isinstance(instance, RemotePlugin):
            instance.tether_worker.listeners.append(functools.partial(self._worker_event, slot))

    def _worker_event(self, slot: PluginSlot, kind: str, detail: str) -> None:
        version = slot.current.version
        slot.note(f"worker {kind}", version, detail)
        if kind != "gave_up":
            return
        reason = f"its worker process was given up on: {detail}"
        log.error("plugin %s disabled: %s", slot.name, reason)
        slot.enabled = False
        slot.gate.close(reason)
        slot.note("disabled", version, reason)
        try:
            self._flags.switch(slot.name, enabled=False, reason=reason)
            self.runtime.events.publish_nowait(
                WORKER_EVENT, {"plugin": slot.name, "version": version, "reason": reason}
            )
        except TetherError as exc:
            log.warning("plugin %s: could not disable it or tell it: %s", slot.name, exc)

    def _observe_load(self, slot: PluginSlot, settings: PluginConfig) -> None:
        """Give the new plugin its threshold; keep it disabled if the state store says so."""
        name = slot.name
        self._watch_worker(slot)
        self._reloads.loaded(slot.current)
        self._oversight.plugin_loaded(slot, settings, self.config.plugins.error_threshold)
        flag = self._flags.get(name)
        if not flag.enabled:
            slot.enabled = False
            slot.gate.close(flag.reason or "it is disabled")
            log.info("plugin %s is disabled in the state store: loaded, not started", name)

    async def load_plugins_from_config(
        self, config: TetherConfig | Path | str | None = None
    ) -> list[PluginInfo]:
        """Load every enabled plugin of a config, dependencies first.

        All manifests are read and resolved before any plugin code is imported, so a
        missing or circular dependency fails without side effects. A plugin with
        ``required: false`` that fails to load is set aside (``failed_plugins``).
        """
        if isinstance(config, str | Path):
            config = load_config(config)
        if config is not None:
            self.config = config
        section = self.config.plugins
        if not section.enabled:
            log.info("plugin system disabled in the config (plugins.enabled: false)")
            return []
        locator = self._locator = Locator(self.config)
        located = [
            (index, locator.locate(entry), entry)
            for index, entry in enumerate(section.plugins)
            if entry.enabled
        ]
        # an entry by name and another by path may turn out to be one plugin
        self.config.check_plugin_names([(i, found.manifest.name) for i, found, _ in located])
        wanted = [(found, entry) for _, found, entry in located]
        unavailable = {
            e.name: "it is disabled in the config"
            for e in section.plugins
            if not e.enabled and e.name
        }
        wanted_by_name = {found.manifest.name: (found, entry) for found, entry in wanted}
        loaded = [s.current.manifest for s in self._slots.values()]
        resolution = resolve(
            [*loaded, *(f.manifest for f, _ in wanted if f.manifest.name not in self._slots)],
            framework_version=self.framework_version,
            priorities={f.manifest.name: e.priority for f, e in wanted},
            unavailable=unavailable,
        )
        infos = []
        for name in resolution.order:
            if name in self._slots or name not in wanted_by_name:
                continue
            found, entry = wanted_by_name[name]
            if not await self._dependencies_came_up(found.manifest, entry):
                continue
            tries = Tries(name, self._policy(entry))
            try:
                infos.append(await self._load_found(found, entry, tries))
            except TetherError as exc:
                if entry.required:
                    raise
                self._set_aside(found.manifest, "load", exc, tries.made, path=found.location,
                                settings=entry)  # fmt: skip
        self._order = tuple(n for n in resolution.order if n not in self._failed)
        return infos

    # ------------------------------------------------------------------ plugins set aside

    def failed_plugins(self) -> dict[str, FailedPlugin]:
        """Plugins with ``required: false`` that could not be brought up: the host runs
        without them."""
        return dict(self._failed)

    def _set_aside(
        self,
        manifest: Manifest,
        step: str,
        error: BaseException,
        attempts: int,
        *,
        path: str | None,
        settings: PluginConfig | None = None,
    ) -> None:
        """Go on without a plugin that is not required (its slot already taken down)."""
        name = manifest.name
        self._sources.pop(name, None)
        self._failed[name] = FailedPlugin(name, step, error, attempts, manifest.version, path,
                                          settings=settings)  # fmt: skip
        self._order = tuple(n for n in self._order if n != name)
        log.warning(
            "plugin %s failed (%s) and is not required: going on without it: %s",
            name, step, describe(error),
        )  # fmt: skip

    async def _take_down(self, slot: PluginSlot, step: str, error: BaseException) -> None:
        """Unload a plugin that is not required and failed ``step``; set it aside."""
        version = slot.current
        attempts = self._attempts_made(slot.name)
        await self._teardown(slot)
        self._slots.pop(slot.name, None)
        self._set_aside(version.manifest, step, error, attempts, path=version.location,
                        settings=version.settings)  # fmt: skip

    def _attempts_made(self, name: str) -> int:
        source = self._sources.get(name)
        return source[1].made if source is not None else 1

    async def _dependencies_came_up(self, manifest: Manifest, settings: PluginConfig) -> bool:
        """Whether the plugin's dependencies came up; if one was set aside, a plugin that is
        not required is set aside too, and a required one fails (naming both)."""
        dependency = failed_dependency(manifest, self._failed)
        if dependency is None:
            return True
        if settings.required:
            raise needs_failed(manifest, dependency)
        why = TetherError(
            f"its dependency '{dependency.name}' failed ({dependency.step}): {dependency.reason}",
            plugin=manifest.name,
        )
        slot = self._slots.get(manifest.name)
        if slot is not None:
            await self._take_down(slot, "dependency", why)
        else:
            self._set_aside(manifest, "dependency", why, 0, path=None)
        return False

    # ------------------------------------------------------------------ lifecycle

    async def initialize_all(self) -> None:
        """Initialize loaded plugins in dependency order; stop at the first failure of a
        required plugin (one with ``required: false`` is set aside).

        Plugins initialized before the failure stay initialized.
        """
        async with self._mutex():
            order = self.resolve_dependencies().order
            await self.runtime.events.start()  # plugins may publish from initialize()
            held = self._held_back()
            for name in order:
                slot = self._slots.get(name)
                if slot is None or not slot.enabled:
                    continue
                if slot.current.status is not PluginStatus.LOADING:
                    continue
                if name in held:
                    log.info("not initializing plugin %s: %s", name, held[name])
                    continue
                await self._bring_up_step(slot, "initialization")

    async def _bring_up_step(self, slot: PluginSlot, step: str) -> None:
        """Initialize or start one plugin; set it aside if it fails and is not required."""
        settings = slot.current.settings
        if not await self._dependencies_came_up(slot.current.manifest, settings):
            return
        try:
            if step == "start":
                await self._start(slot)
            else:
                await self._initialize(slot)
        except TetherError as exc:
            if settings.required:
                raise
            current = self._slots.get(slot.name)
            if current is not None:
                await self._take_down(current, step, exc)
            else:  # its fresh copy failed to load
                version = slot.current
                attempts = self._attempts_made(slot.name)
                self._set_aside(version.manifest, step, exc, attempts, path=version.location,
                                settings=version.settings)  # fmt: skip

    def _check_dependencies(self, slot: PluginSlot, step: str, ready: set[PluginStatus]) -> None:
        for dependency in slot.current.manifest.dependencies:
            other = self._slots.get(dependency.name)
            if other is None or other.current.status in ready:
                continue  # absent ones were settled by the resolver (optional)
            raise PluginLifecycleError(
                slot.name,
                step,
                f"its dependency '{dependency.name}' is {other.current.status.value}",
            )

    async def _initialize(self, slot: PluginSlot) -> PluginSlot:
        """``initialize``; a failure that may pass is tried again on a fresh copy while
        the plugin's tries allow. The slot that came up."""
        found, tries = self._sources.get(slot.name) or (None, None)
        if tries is None:
            tries = Tries(slot.name, self._policy(slot.current.settings), made=1)
        while True:
            self._check_dependencies(slot, "initialization", set(_INITIALIZED))
            version = slot.current
            limit = self._limits(version)["initialize"]
            try:
                await initialize_version(slot, version, limit, quiet=tries.policy.attempts > 1)
            except PluginLifecycleError as exc:
                if found is None or not await tries.again("initialization", exc):
                    raise tries.exhausted(exc)  # noqa: B904 - the error itself, annotated
                slot = await self._fresh_copy(slot, found, tries)
                continue
            return slot

    async def _fresh_copy(self, slot: PluginSlot, found: Found, tries: Tries) -> PluginSlot:
        """Unload a plugin whose ``initialize`` failed and load it again, for another try."""
        settings = slot.current.settings
        await self._teardown(slot)
        del self._slots[slot.name]
        fresh = await self._load(found, settings, tries)
        self._slots[fresh.name] = fresh
        return fresh

    async def start_all(self) -> None:
        """Start initialized (or stopped) plugins in dependency order; stop at the first
        failure of a required plugin (one with ``required: false`` is set aside)."""
        async with self._mutex():
            await self.runtime.events.start()
            await self._run_lifecycle_hook("startup")
            held = self._held_back()
            for slot in self._ordered():
                if slot.name not in self._slots or not slot.enabled:
                    continue
                if slot.current.status not in {PluginStatus.INITIALIZED, PluginStatus.STOPPED}:
                    continue
                if slot.name in held:
                    log.info("not starting plugin %s: %s", slot.name, held[slot.name])
                    continue
                await self._bring_up_step(slot, "start")

    async def _start(self, slot: PluginSlot) -> None:
        self._check_dependencies(slot, "start", {PluginStatus.RUNNING})
        version = slot.current
        await start_version(slot, version, self._limits(version)["start"])

    def _held_back(self) -> dict[str, str]:
        """Enabled plugins that a disabled dependency keeps from starting, and why."""
        held: dict[str, str] = {}
        for slot in self._ordered():  # dependencies come first
            for dependency in slot.current.manifest.dependencies:
                other = self._slots.get(dependency.name)
                if other is not None and (not other.enabled or other.name in held):
                    held[slot.name] = f"its dependency '{dependency.name}' is disabled"
                    break
        return held

    async def _run_lifecycle_hook(self, hook_type: str) -> None:
        """Run the ``startup`` or ``shutdown`` hook, within the longest ``timeouts.start``
        (``stop``) of the loaded plugins; a handler's failure is logged, never raised."""
        point = STARTUP if hook_type == "startup" else SHUTDOWN
        if not self.runtime.hooks.has_handlers(point):
            return
        slots = self._ordered()
        names = tuple(s.name for s in slots)
        step = "start" if hook_type == "startup" else "stop"
        limit = max((self._limits(s.current)[step] for s in slots), default=None)
        everyone = PluginCode(f"{hook_type} hook", tuple(
            d for s in slots for d in code_of(s.current).directories
        ))  # fmt: skip
        try:
            outcome = await run_bounded(self.runtime.hooks.run, point, names, code=everyone,
                                        what=f"hook:{hook_type}", limit=limit)  # fmt: skip
        except OverrunError as exc:
            owner = self._owner_of_site(exc.where)
            log.warning("the %s hook did not finish within %gs%s; it was abandoned", hook_type,
                        exc.limit, f" (in plugin {owner})" if owner else "")  # fmt: skip
            return
        except EscapedError as exc:  # a handler's SystemExit or its kind: the others' skipped
            self._hook_escape(hook_type, exc.error)
            return
        if isinstance(outcome, HookOutcome):
            for failure in outcome.failures:
                log.warning("%s hook of plugin %s failed: %s", hook_type, failure.plugin,
                            error_line(failure.error))  # fmt: skip

    def _hook_escape(self, hook_type: str, error: BaseException) -> None:
        owner = next((s for s in self._slots.values() if frame_in(error, code_of(s.current))), None)
        name = owner.name if owner is not None else "?"
        log.warning("%s hook of plugin %s raised %s; the handlers after it were skipped",
                    hook_type, name, error_line(error))  # fmt: skip
        if owner is not None:
            owner.gate.record_error(error, source=f"hook:{hook_type}")

    def _owner_of_site(self, where: tuple[str, int, str] | None) -> str | None:
        if where is None:
            return None
        for slot in self._slots.values():
            if code_of(slot.current).owns(where[0]):
                return slot.name
        return None
