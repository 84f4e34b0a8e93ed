"""``PluginManager``: loads, orders, starts, stops and unloads plugins.

The API is async. Plugin methods may be plain or ``async def``; the manager
awaits whatever returns an awaitable. :class:`tether.SyncPluginManager` is the
blocking facade over this same class.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pydantic import ValidationError

from tether import __version__
from tether._audit import CapabilityUse, save_capability_uses
from tether._audit import watch as _capability_watch
from tether._config import (
    PluginConfig,
    TetherConfig,
    grant_permissions,
    load_config,
    validate_plugin_config,
)
from tether._context import PluginContext, Runtime
from tether._gate import Gate
from tether._lifecycle import PluginStatus, check_transition
from tether._loader import LoadedCode, load_code, unload_code
from tether._manifest import ConfigField, Manifest, load_manifest
from tether._resolver import Resolution, resolve

if TYPE_CHECKING:
    from tether._discovery import DiscoveryResult
    from tether.observability import ErrorThreshold, Observability, PluginHealth
from tether._versions import parse_constraint
from tether.errors import (
    ConfigError,
    DependentsRunningError,
    FrameworkVersionMismatchError,
    InterfaceError,
    PluginImportError,
    PluginLifecycleError,
    PluginLoadError,
    PluginNameConflictError,
    PluginNotFoundError,
    StopAllError,
    TetherError,
)
from tether.types import PluginInfo, contract_of

__all__ = ["LoadAttempt", "PluginManager"]

log = logging.getLogger("tether")


@dataclass(frozen=True, slots=True)
class LoadAttempt:
    """One try at importing a plugin (``status`` is ``success`` or ``failure``)."""

    plugin: str
    status: str
    duration: float
    error: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(slots=True)
class _Record:
    manifest: Manifest
    settings: PluginConfig
    code: LoadedCode
    context: PluginContext
    gate: Gate
    location: str
    status: PluginStatus = PluginStatus.UNLOADED
    enabled: bool = True
    load_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    initialized: bool = False
    last_error: BaseException | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def is_workload(self) -> bool:
        return contract_of(self.manifest.provides) == "workload"


def _is_transient(exc: BaseException) -> bool:
    """Worth another try: not a broken contract, not a syntax error, not a missing module."""
    if isinstance(exc, InterfaceError):
        return False
    if isinstance(exc, PluginImportError):
        return not isinstance(exc.__cause__, SyntaxError | ImportError)
    # A failure with a cause (the plugin's constructor raised, a file could not be read)
    # may pass; one without (the entry attribute does not exist) will not.
    cause = exc.__cause__
    return (
        isinstance(exc, PluginLoadError)
        and cause is not None
        and not isinstance(cause, ImportError)
    )


class _CallTimedOutError(Exception):
    """A lifecycle call ran past its time limit (as opposed to raising TimeoutError itself)."""


def _post(loop: asyncio.AbstractEventLoop, *args: Any) -> None:
    # The loop may have closed while the call was still running: then nobody waits.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(*args)


async def _in_daemon_thread(fn: Callable[[], object]) -> object:
    """Run a blocking call in a daemon thread, so a call that never returns cannot
    hold up interpreter exit the way a thread-pool worker would."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(setter: Callable[[Any], None], value: object) -> None:
        if not future.done():
            setter(value)

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:
            _post(loop, settle, future.set_exception, exc)
        else:
            _post(loop, settle, future.set_result, result)

    threading.Thread(target=run, name="tether-plugin-call", daemon=True).start()
    return await future


class PluginManager:
    """Loads plugins and drives their lifecycle.

    ``framework_version`` is what manifests' ``framework.version`` is checked
    against (tether's own version by default). ``stop_timeout`` bounds each
    plugin's ``stop()`` in ``stop_all``.
    """

    def __init__(
        self,
        *,
        config: TetherConfig | None = None,
        framework_version: str = __version__,
        stop_timeout: float = 10.0,
        drain_timeout: float = 5.0,
        state_directory: Path | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.framework_version = framework_version
        self.stop_timeout = stop_timeout
        self.drain_timeout = drain_timeout
        self.config = config or TetherConfig()
        self.runtime = runtime or Runtime(config=self.config, state_directory=state_directory)
        self._records: dict[str, _Record] = {}
        self._order: tuple[str, ...] = ()
        self._lock: asyncio.Lock | None = None
        self.load_attempts: list[LoadAttempt] = []
        self._discovered: DiscoveryResult | None = None
        self._observability: Observability | None = None

    # ------------------------------------------------------------------ helpers

    def _mutex(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _record(self, name: str) -> _Record:
        record = self._records.get(name)
        if record is None:
            close = difflib.get_close_matches(name, list(self._records), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "`tether plugins list` shows them"
            raise PluginNotFoundError(f"plugin not found: '{name}'", plugin=name, hint=hint)
        return record

    @property
    def observability(self) -> Observability:
        """Health, error thresholds, metrics and the state tables of this manager's plugins."""
        if self._observability is None:
            from tether.observability import Observability

            self._observability = Observability(self)
        return self._observability

    def _set_status(self, record: _Record, target: PluginStatus) -> None:
        check_transition(record.name, record.status, target)
        record.status = target

    def _fail(self, record: _Record, step: str, exc: BaseException) -> PluginLifecycleError:
        record.last_error = exc
        record.gate.record_error(exc, source=step)
        record.gate.close(f"its {step} failed")
        if record.status is not PluginStatus.ERROR:
            self._set_status(record, PluginStatus.ERROR)
        log.error("plugin %s failed: %s", step, record.name, exc_info=exc)
        return PluginLifecycleError(record.name, step, exc)

    async def _call(
        self, record: _Record, method: str, *args: object, timeout: float | None = None
    ) -> None:
        fn = getattr(record.code.instance, method, None)
        if fn is None:  # optional for workloads (start, stop)
            return
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                if timeout is None or inspect.iscoroutinefunction(fn):
                    result = fn(*args)
                else:  # a sync method under a time limit runs where it cannot block the loop
                    result = await _in_daemon_thread(lambda: fn(*args))
                if inspect.isawaitable(result):
                    await result
        except TimeoutError:
            if scope.expired():
                raise _CallTimedOutError from None
            raise

    # ------------------------------------------------------------------ loading

    async def load_plugin(
        self,
        path: Path | str,
        config: PluginConfig | Mapping[str, object] | None = None,
        *,
        retries: int = 0,
        retry_backoff: float = 0.1,
    ) -> PluginInfo:
        """Load one plugin from its directory (or manifest file).

        The plugin's code is imported and its object created; it is not
        initialized (see ``initialize_all``). ``retries`` retries transient import
        failures, waiting ``retry_backoff * 2**n`` seconds before try ``n + 1``.
        """
        settings = _settings(config)
        path = Path(path)
        if not path.exists():
            raise PluginNotFoundError(
                f"failed to load plugin: plugin file not found: {path}",
                path=path,
                plugin=settings.name,
                hint="check the path (relative paths in a config file are relative to the file)",
            )
        manifest = load_manifest(path)
        _check_name(manifest, settings, path)
        found = _Found(manifest, str(manifest.directory or path), private=True)
        return await self._load_found(found, settings, retries, retry_backoff)

    async def _load_found(
        self, found: _Found, settings: PluginConfig, retries: int, backoff: float
    ) -> PluginInfo:
        async with self._mutex():
            record = await self._load(found, settings, retries, backoff)
            self._observe_load(record)
            self._records[record.name] = record
            self._order = ()
            return self._info(record)

    async def _load(
        self, found: _Found, settings: PluginConfig, retries: int, backoff: float
    ) -> _Record:
        manifest = found.manifest
        existing = self._records.get(manifest.name)
        if existing is not None:
            if existing.location == found.location:
                raise PluginNameConflictError.same_place(manifest.name, found.location)
            raise PluginNameConflictError(manifest.name, existing.location, found.location)
        self._check_framework(manifest)
        permissions = grant_permissions(manifest, settings.permissions, path=manifest.source)
        code = await self._import(manifest, retries, backoff, private=found.private)
        try:
            return self._record_for(manifest, settings, code, permissions, found.location)
        except BaseException:
            unload_code(code)
            raise

    def _record_for(
        self,
        manifest: Manifest,
        settings: PluginConfig,
        code: LoadedCode,
        permissions: frozenset[str],
        location: str,
    ) -> _Record:
        values = validate_plugin_config(
            manifest.name, _schema(manifest, code.instance), settings.config
        )
        hold_timeout, max_waiting = self._gate_options()
        gate = Gate(manifest.name, hold_timeout=hold_timeout, max_waiting=max_waiting)
        context = PluginContext(
            manifest=manifest,
            config=values,
            permissions=permissions,
            runtime=self.runtime,
            gate=gate,
        )
        record = _Record(manifest, settings, code, context, gate, location)
        self._set_status(record, PluginStatus.LOADING)
        code_directory = _code_directory(code)
        if code_directory is not None:
            _capability_watch.track(manifest.name, code_directory, permissions)
        return record

    def _observe_load(self, record: _Record) -> None:
        """Hand the new plugin to observability; keep it disabled if the state store says so."""
        flag = self.observability.plugin_loaded(record.name, record.gate, record.settings)
        if flag is not None:
            record.enabled = False
            record.gate.close(flag.reason or "it is disabled")
            log.info("plugin %s is disabled in the state store: loaded, not started", record.name)

    def _gate_options(self) -> tuple[float, int]:
        reload = self.config.reload
        return reload.queue_timeout, reload.max_queue_size

    def _check_framework(self, manifest: Manifest) -> None:
        constraint = manifest.framework.version
        if not parse_constraint(constraint).allows(self.framework_version):
            raise FrameworkVersionMismatchError(manifest.name, constraint, self.framework_version)

    async def _import(
        self, manifest: Manifest, retries: int, backoff: float, *, private: bool
    ) -> LoadedCode:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                code = load_code(manifest, private_namespace=private)
            except PluginLoadError as exc:
                elapsed = time.perf_counter() - started
                self.load_attempts.append(LoadAttempt(manifest.name, "failure", elapsed, str(exc)))
                if attempt >= retries or not _is_transient(exc):
                    raise
                delay = backoff * 2**attempt
                log.warning(
                    "loading plugin %s failed (try %d of %d), retrying in %.2fs: %s",
                    manifest.name, attempt + 1, retries + 1, delay, exc,
                )  # fmt: skip
                await asyncio.sleep(delay)
                attempt += 1
            else:
                elapsed = time.perf_counter() - started
                self.load_attempts.append(LoadAttempt(manifest.name, "success", elapsed))
                return code

    async def load_plugins_from_config(
        self, config: TetherConfig | Path | str | None = None
    ) -> list[PluginInfo]:
        """Load every enabled plugin of a config, dependencies first.

        All manifests are read and resolved before any plugin code is imported, so a
        missing or circular dependency fails without side effects.
        """
        if isinstance(config, str | Path):
            config = load_config(config)
        if config is not None:
            self.config = config
        section = self.config.plugins
        if not section.enabled:
            log.info("plugin system disabled in the config (plugins.enabled: false)")
            return []
        self._discovered = None
        wanted = [(self._locate(entry), entry) for entry in section.plugins if entry.enabled]
        unavailable = {
            e.name: "it is disabled in the config"
            for e in section.plugins
            if not e.enabled and e.name
        }
        wanted_by_name = {found.manifest.name: (found, entry) for found, entry in wanted}
        loaded = [r.manifest for r in self._records.values()]
        resolution = resolve(
            [*loaded, *(f.manifest for f, _ in wanted if f.manifest.name not in self._records)],
            framework_version=self.framework_version,
            priorities={f.manifest.name: e.priority for f, e in wanted},
            unavailable=unavailable,
        )
        infos = []
        for name in resolution.order:
            if name in self._records or name not in wanted_by_name:
                continue
            found, entry = wanted_by_name[name]
            infos.append(await self._load_found(found, entry, 0, 0.1))
        self._order = resolution.order
        return infos

    def _locate(self, entry: PluginConfig) -> _Found:
        base = self.config.base_directory
        if entry.path is not None:
            path = Path(entry.path)
            path = path if path.is_absolute() else base / path
            if not path.exists():
                raise PluginNotFoundError(
                    f"failed to load plugin: plugin file not found: {path}",
                    plugin=entry.name,
                    path=path,
                    hint="check `path` in the config; relative paths are relative to the "
                    "config file",
                )
            manifest = load_manifest(path)
            _check_name(manifest, entry, path)
            return _Found(manifest, str(manifest.directory or path), private=True)
        if entry.name is None:
            raise ConfigError(
                "a plugin entry needs a `name` or a `path`",
                path=self.config.path,
                hint="give each entry of plugins.plugins a name (found by discovery) or a path",
            )
        return self._discover(entry.name)

    def _discover(self, name: str) -> _Found:
        from tether._discovery import IndexCache, default_search_paths, discover

        if self._discovered is None:
            directory = self.config.plugins.directory
            config_dir = None
            if directory is not None:
                config_dir = Path(directory)
                if not config_dir.is_absolute():
                    config_dir = self.config.base_directory / config_dir
            paths = default_search_paths(config_directory=config_dir)
            self._discovered = discover(paths, cache=IndexCache())
        plugin = self._discovered.get(name)
        if plugin is None:
            raise PluginNotFoundError(
                f"missing plugin: no plugin named '{name}' in any search path",
                plugin=name,
                hint="set its `path` in the config, or put it in a searched directory "
                "(`tether plugins scan` lists them)",
            )
        return _Found(plugin.manifest, plugin.location, private=plugin.origin != "entry-point")

    # ------------------------------------------------------------------ queries

    def _info(self, record: _Record) -> PluginInfo:
        m = record.manifest
        return PluginInfo(
            name=m.name,
            version=m.version,
            description=m.description,
            author=m.author,
            loaded=True,
            enabled=record.enabled,
            load_time=record.load_time,
            status=record.status,
            path=record.location,
            isolation=m.isolation,
        )

    def get_plugin(self, name: str) -> object:
        """The plugin object itself."""
        return self._record(name).code.instance

    def get_manifest(self, name: str) -> Manifest:
        return self._record(name).manifest

    def get_context(self, name: str) -> PluginContext:
        return self._record(name).context

    def get_status(self, name: str) -> PluginStatus:
        return self._record(name).status

    def get_info(self, name: str) -> PluginInfo:
        return self._info(self._record(name))

    def last_error(self, name: str) -> BaseException | None:
        return self._record(name).last_error

    def get_gate(self, name: str) -> Gate:
        return self._record(name).gate

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
        return [self._info(r) for r in self._ordered()]

    def is_loaded(self, name: str) -> bool:
        return name in self._records

    def resolve_dependencies(self) -> Resolution:
        """Check the loaded plugins' dependencies; return their load order and graph."""
        records = list(self._records.values())
        resolution = resolve(
            [r.manifest for r in records],
            framework_version=self.framework_version,
            priorities={r.name: r.settings.priority for r in records},
        )
        self._order = resolution.order
        return resolution

    def get_dependency_graph(self) -> dict[str, list[str]]:
        """Each loaded plugin and the plugins it depends on (absent optional ones left out)."""
        return {
            r.name: [
                d.name for d in r.manifest.dependencies if not d.optional or d.name in self._records
            ]
            for r in self._ordered()
        }

    def _ordered(self) -> list[_Record]:
        if set(self._order) == set(self._records):
            return [self._records[n] for n in self._order]
        return list(self._records.values())

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
        return [r.name for r in self._ordered() if r.name in found]

    # ------------------------------------------------------------------ lifecycle

    async def initialize_all(self) -> None:
        """Initialize loaded plugins in dependency order; stop at the first failure.

        Plugins initialized before the failure stay initialized.
        """
        async with self._mutex():
            order = self.resolve_dependencies().order
            await self.runtime.events.start()  # plugins may publish from initialize()
            held = self._held_back()
            for name in order:
                record = self._records[name]
                if record.status is PluginStatus.LOADING and record.enabled:
                    if name in held:
                        log.info("not initializing plugin %s: %s", name, held[name])
                        continue
                    await self._initialize(record)

    def _check_dependencies(self, record: _Record, step: str, ready: set[PluginStatus]) -> None:
        for dependency in record.manifest.dependencies:
            other = self._records.get(dependency.name)
            if other is None or other.status in ready:
                continue  # absent ones were settled by the resolver (optional)
            raise PluginLifecycleError(
                record.name,
                step,
                f"its dependency '{dependency.name}' is {other.status.value}",
            )

    async def _initialize(self, record: _Record) -> None:
        self._check_dependencies(
            record,
            "initialization",
            {PluginStatus.INITIALIZED, PluginStatus.RUNNING, PluginStatus.STOPPED},
        )
        # Plugins get their context; workloads get their config (the reference's contract).
        argument = record.context.plugin_config if record.is_workload else record.context
        try:
            await self._call(record, "initialize", argument)
        except Exception as exc:
            raise self._fail(record, "initialization", exc) from exc
        record.initialized = True
        self._set_status(record, PluginStatus.INITIALIZED)
        record.gate.open()
        log.info("initialized plugin %s %s", record.name, record.manifest.version)

    async def start_all(self) -> None:
        """Start initialized (or stopped) plugins in dependency order; stop at the first failure."""
        async with self._mutex():
            await self.runtime.events.start()
            await self._run_lifecycle_hook("startup")
            held = self._held_back()
            for record in self._ordered():
                if record.enabled and record.status in {
                    PluginStatus.INITIALIZED,
                    PluginStatus.STOPPED,
                }:
                    if record.name in held:
                        log.info("not starting plugin %s: %s", record.name, held[record.name])
                        continue
                    await self._start(record)

    def _held_back(self) -> dict[str, str]:
        """Enabled plugins that a disabled dependency keeps from starting, and why."""
        held: dict[str, str] = {}
        for record in self._ordered():  # dependencies come first
            for dependency in record.manifest.dependencies:
                other = self._records.get(dependency.name)
                if other is not None and (not other.enabled or other.name in held):
                    held[record.name] = f"its dependency '{dependency.name}' is disabled"
                    break
        return held

    async def _run_lifecycle_hook(self, hook_type: str) -> None:
        outcome = await self.runtime.hooks.run(hook_type, self)
        for failure in outcome.failures:
            log.warning("%s hook of plugin %s failed: %s", hook_type, failure.plugin, failure.error)

    async def _start(self, record: _Record) -> None:
        self._check_dependencies(record, "start", {PluginStatus.RUNNING})
        try:
            await self._call(record, "start")
        except Exception as exc:
            raise self._fail(record, "start", exc) from exc
        self._set_status(record, PluginStatus.RUNNING)
        record.gate.open()
        log.info("started plugin %s", record.name)

    async def update_plugin_config(self, name: str, config: Mapping[str, object]) -> None:
        """Give a loaded plugin new config: validate it, then call ``on_config_change``.

        If the plugin's ``on_config_change`` raises, the old config is kept and the
        failure is raised.
        """
        async with self._mutex():
            record = self._record(name)
            schema = _schema(record.manifest, record.code.instance)
            values = validate_plugin_config(name, schema, config)
            previous = record.context.replace_config(values)
            handler = getattr(record.code.instance, "on_config_change", None)
            if handler is None:
                return
            try:
                result = handler(record.context.plugin_config)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                record.context.replace_config(previous)
                record.gate.record_error(exc, source="on_config_change")
                raise PluginLifecycleError(name, "configuration change", exc) from exc

    async def stop_all(self, *, timeout: float | None = None) -> None:
        """Stop running plugins in reverse dependency order.

        Each ``stop()`` gets ``timeout`` seconds (the manager's ``stop_timeout`` by
        default). Failures do not stop the others; they are reported together in a
        ``StopAllError`` at the end.
        """
        limit = self.stop_timeout if timeout is None else timeout
        failures: list[PluginLifecycleError] = []
        async with self._mutex():
            if any(r.status is PluginStatus.RUNNING for r in self._records.values()):
                await self._run_lifecycle_hook("shutdown")
            for record in reversed(self._ordered()):
                if record.status is PluginStatus.RUNNING:
                    error = await self._stop(record, limit)
                    if error is not None:
                        failures.append(error)
        if failures:
            raise StopAllError(failures)

    async def _stop(self, record: _Record, timeout: float | None) -> PluginLifecycleError | None:
        record.gate.close("it is stopping")
        if not await record.gate.drain(self.drain_timeout):
            log.warning(
                "plugin %s still has %d call(s) in flight after %.1fs; stopping it anyway",
                record.name, record.gate.in_flight, self.drain_timeout,
            )  # fmt: skip
        try:
            await self._call(record, "stop", timeout=timeout)
        except _CallTimedOutError:
            late = TimeoutError(f"stop() did not return within {timeout:g}s")
            return self._fail(record, "stop", late)
        except Exception as exc:
            return self._fail(record, "stop", exc)
        self._set_status(record, PluginStatus.STOPPED)
        record.gate.close("it is stopped")
        log.info("stopped plugin %s", record.name)
        return None

    async def unload_plugin(self, name: str, *, force: bool = False) -> None:
        """Stop, release its registrations, clean up and forget a plugin.

        Refused while running plugins depend on it, unless ``force``. If ``stop`` or
        ``cleanup`` fails the plugin is still unloaded, and the failure is raised
        afterwards.
        """
        async with self._mutex():
            record = self._record(name)
            running = [
                d for d in self.dependents(name) if self._records[d].status is PluginStatus.RUNNING
            ]
            if running and not force:
                raise DependentsRunningError(name, running)
            if running:
                log.warning("force-unloading %s while %s depend on it", name, ", ".join(running))
            failure = await self._teardown(record)
            del self._records[name]
            self._order = tuple(n for n in self._order if n != name)
            log.info("unloaded plugin %s", name)
        if failure is not None:
            raise failure

    async def _teardown(self, record: _Record) -> PluginLifecycleError | None:
        failure: PluginLifecycleError | None = None
        if record.status is PluginStatus.RUNNING:
            failure = await self._stop(record, self.stop_timeout)
        for exc in record.context.release():
            log.warning("plugin %s: releasing a registration failed: %s", record.name, exc)
        if record.initialized and not record.is_workload:  # a workload's cleanup(db) is the host's
            try:
                await self._call(record, "cleanup")
            except Exception as exc:
                failure = failure or self._fail(record, "cleanup", exc)
        unload_code(record.code)
        _capability_watch.untrack(record.name)
        self._save_capabilities(record.name)
        self.runtime.metrics.remove_plugin(record.name)
        record.gate.close("it was unloaded")
        self._set_status(record, PluginStatus.UNLOADED)
        if self._observability is not None:
            self._observability.plugin_unloaded(record.name)
        return failure

    # ------------------------------------------------------------------ health, enable, disable

    def get_plugin_health(self, name: str) -> PluginHealth:
        """Status, errors, hook metrics, health check and threshold of a loaded plugin."""
        return self.observability.plugin_health(name)

    def get_all_health(self) -> dict[str, PluginHealth]:
        """``get_plugin_health`` of every loaded plugin, in load order."""
        return self.observability.all_health()

    def set_error_threshold(self, name: str, threshold: ErrorThreshold | None) -> None:
        """Give a loaded plugin its own error threshold (``None``: none); kept across reloads."""
        self._record(name)
        self.observability.set_error_threshold(name, threshold)

    def record_success(self, name: str) -> None:
        """Tell the error threshold that a call into ``name`` succeeded (``reset_on_success``)."""
        if self._observability is not None:
            self._observability.record_success(name)

    def get_plugin_settings(self, name: str) -> PluginConfig:
        """The settings a plugin was loaded with (path, config, permissions...)."""
        return self._record(name).settings

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
        record = self._record(name)
        if enabled:
            if record.status is not PluginStatus.RUNNING:
                return False
            record.enabled = True
            record.gate.open()
        else:
            record.enabled = False
            record.gate.close(reason or "it is disabled")
        if persist:
            self.observability.plugin_switched(name, enabled=enabled, reason=reason)
        return True

    async def enable_plugin(self, name: str) -> PluginInfo:
        """Enable a plugin and bring it up: initialize and start it if needed.

        Plugins that waited for it (their dependency was disabled) are brought up too.
        The flag is written to the state store, so it holds after a restart.
        """
        async with self._mutex():
            record = self._record(name)
            if record.status is PluginStatus.ERROR:
                raise PluginLifecycleError(
                    name, "enable", f"it is in the error state ({record.last_error})"
                )
            record.enabled = True
            self.observability.plugin_switched(name, enabled=True, reason=None)
            await self.runtime.events.start()
            await self._bring_up(record)
            for dependent in self.dependents(name):
                other = self._records[dependent]
                if other.enabled and dependent not in self._held_back():
                    try:
                        await self._bring_up(other)
                    except PluginLifecycleError as exc:
                        log.warning("could not bring up %s after enabling %s: %s",
                                    dependent, name, exc)  # fmt: skip
            return self._info(record)

    async def _bring_up(self, record: _Record) -> None:
        if record.status is PluginStatus.LOADING:
            await self._initialize(record)
        if record.status in {PluginStatus.INITIALIZED, PluginStatus.STOPPED}:
            await self._start(record)
        elif record.status is PluginStatus.RUNNING:
            record.gate.open()

    async def disable_plugin(
        self, name: str, *, force: bool = False, reason: str | None = None
    ) -> PluginInfo:
        """Disable a plugin: stop it and close its gate (calls are refused with ``reason``).

        Refused while running plugins depend on it, unless ``force``. The flag is
        written to the state store: after a restart the plugin is loaded, not started.
        """
        reason = reason or "it is disabled"
        async with self._mutex():
            record = self._record(name)
            running = [
                d
                for d in self.dependents(name)
                if self._records[d].status is PluginStatus.RUNNING and self._records[d].enabled
            ]
            if running and not force:
                raise DependentsRunningError(name, running, action="disable")
            record.enabled = False
            self.observability.plugin_switched(name, enabled=False, reason=reason)
            failure = None
            if record.status is PluginStatus.RUNNING:
                failure = await self._stop(record, self.stop_timeout)
            record.gate.close(reason)
            log.info("disabled plugin %s", name)
        if failure is not None:
            raise failure
        return self._info(record)

    async def aclose(self) -> None:
        """Stop every plugin, then unload all of them in reverse order."""
        try:
            await self.stop_all()
        except StopAllError as exc:
            log.warning("%s", exc)
        for record in reversed(self._ordered()):
            async with self._mutex():
                await self._teardown(record)
                self._records.pop(record.name, None)
        self._order = ()
        undelivered = await self.runtime.events.stop(timeout=self.drain_timeout)
        if undelivered:
            log.warning("%d event(s) were not delivered before shutdown", undelivered)
        if self._observability is not None:
            await self._observability.aclose()
        self.runtime.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass(frozen=True, slots=True)
class _Found:
    """A plugin to load: its manifest, where it came from, and how to import it."""

    manifest: Manifest
    location: str
    private: bool  # a private module namespace (directories) or real names (entry points)


def _code_directory(code: LoadedCode) -> str | None:
    """Where the plugin's code lives, for attributing audit events to it."""
    if code.manifest.directory is not None:
        return str(code.manifest.directory.absolute())
    origin = getattr(code.module, "__file__", None)
    return str(Path(origin).resolve().parent) if origin else None


def _settings(config: PluginConfig | Mapping[str, object] | None) -> PluginConfig:
    if config is None:
        return PluginConfig()
    if isinstance(config, PluginConfig):
        return config
    return PluginConfig.model_validate(dict(config))


def _check_name(manifest: Manifest, settings: PluginConfig, path: Path) -> None:
    if settings.name is not None and settings.name != manifest.name:
        raise ConfigError(
            f"plugin at {path} is named '{manifest.name}' in its manifest, but the config "
            f"calls it '{settings.name}'",
            plugin=settings.name,
            path=path,
            hint="the config's `name` must match the manifest's `name`",
        )


def _schema(manifest: Manifest, instance: object) -> dict[str, ConfigField]:
    """The manifest's config schema, plus keys the plugin class declares itself."""
    declared = getattr(instance, "config_schema", None)
    schema = dict(manifest.config)
    if isinstance(declared, Mapping):
        for key, spec in declared.items():
            if key in schema:
                continue
            try:
                schema[key] = ConfigField.model_validate(spec)
            except ValidationError as exc:
                raise ConfigError(
                    f"plugin '{manifest.name}': invalid config_schema entry '{key}': "
                    f"{exc.errors()[0]['msg']}",
                    plugin=manifest.name,
                    hint="each config_schema entry needs a `type` (string, integer, float, "
                    "boolean, duration, array or object)",
                ) from None
    return schema
