"""Bringing a plugin's code in: checking it, importing it, and making its first version.

The manager decides what to load (``tether._locate``) and guards its own state (name
conflicts, its lock); :func:`load_slot` checks what can be checked before any code runs
(the plugin's files against ``tether.lock`` with ``plugins.verify``, framework version,
isolation, contract, permissions), imports the code, validates
the plugin's config against its schema (and the plugin's own ``validate_config``), and
builds the plugin's slot with its first version staged: gate, door, call chain, scope.

The import (with the creation of the plugin's object) and ``validate_config`` are the
plugin's code: each runs within the plugin's ``timeouts.initialize`` (``tether._bounded``:
a daemon thread for plain code, a task for a coroutine), and whatever they raise,
``SystemExit`` included, is an error naming the plugin.

An import that runs past its limit is abandoned in its thread. Python's import system
holds a lock per module while it imports it, so the abandoned thread keeps the lock of
the plugin's module (a private name no one else imports: harmless) and of any module it
is itself importing at that moment: another import of that same module, anywhere in the
process, would wait for it. The plugin's private package stays in ``sys.modules`` until
the import ends; if it ever does, what it loaded is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tether._audit import watch as capability_watch
from tether._bounded import EscapedError, OverrunError, PluginCode, run_bounded
from tether._callstats import CallStats
from tether._config import PluginConfig, TetherConfig, grant_permissions, validate_entry_config
from tether._context import PluginScope
from tether._contracts import Contract, ContractRegistry
from tether._describe import error_line, error_text
from tether._gate import Gate
from tether._integrity import check_plugin, lock_path, read_lock
from tether._lifecycle import PluginStatus
from tether._loader import LoadedCode, check_contract, code_directory, load_code, unload_code
from tether._locate import (
    Found,
    call_chain,
    check_isolation,
    config_schema,
    isolation_of,
    timeouts_of,
)
from tether._manifest import Manifest
from tether._requirements import check_host_requirements
from tether._runtime import Runtime
from tether._slots import PluginSlot, PluginVersion
from tether._versions import parse_constraint
from tether.errors import (
    ConfigError,
    FrameworkVersionMismatchError,
    PluginImportError,
    PluginLoadError,
    PluginLoadTimeoutError,
)
from tether.isolation._remote import load_remote
from tether.isolation._venv import plugin_python

__all__ = [
    "LoadAttempt",
    "check_before_import",
    "checked_config",
    "code_directory",
    "import_code",
    "load_slot",
    "new_slot",
    "new_version",
    "validate_config",
]

log = logging.getLogger("tether")


@dataclass(frozen=True, slots=True)
class LoadAttempt:
    """One try at importing a plugin (``status`` is ``success`` or ``failure``)."""

    plugin: str
    status: str
    duration: float
    error: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


async def import_code(
    manifest: Manifest,
    contract: Contract,
    *,
    private: bool,
    attempts: list[LoadAttempt],
    limit: float | None = None,
    process: Mapping[str, float] | None = None,
) -> LoadedCode:
    """Import the plugin's code once, in a daemon thread within ``limit`` seconds
    (``PluginLoadTimeoutError`` past it); the try is appended to ``attempts``.

    With ``process`` (the plugin's timeouts) it is imported in a worker process of its
    own instead, and the code holds the plugin's stand-in (``tether.isolation``).

    Trying again is the manager's (``tether._bringup``)."""
    started = time.perf_counter()
    try:
        code = await _bounded_load(manifest, contract, private=private, limit=limit,
                                   process=process)  # fmt: skip
    except PluginLoadError as exc:
        elapsed = time.perf_counter() - started
        attempts.append(LoadAttempt(manifest.name, "failure", elapsed, error_text(exc)))
        raise
    attempts.append(LoadAttempt(manifest.name, "success", time.perf_counter() - started))
    return code


def _late_import(result: object) -> None:
    """An abandoned import finished after all: forget what it loaded."""
    if isinstance(result, LoadedCode):
        unload_code(result)


def _loader(
    manifest: Manifest, contract: Contract, *, private: bool, process: Mapping[str, float] | None
) -> Callable[[], LoadedCode]:
    if process is None:
        return lambda: load_code(manifest, contract=contract, private_namespace=private)
    timeouts = process

    def load_in_worker() -> LoadedCode:
        code = load_remote(manifest, private=private, timeouts=timeouts)
        try:
            check_contract(manifest, contract, code.instance)
        except BaseException:
            unload_code(code)
            raise
        return code

    return load_in_worker


async def _bounded_load(
    manifest: Manifest,
    contract: Contract,
    *,
    private: bool,
    limit: float | None,
    process: Mapping[str, float] | None,
) -> LoadedCode:
    """``load_code`` (or a worker's load) within ``limit`` seconds, in a daemon thread."""
    code = PluginCode.of(manifest.name, manifest.directory)
    if process is not None and not manifest.command:
        # A process plugin's environment is built (or found) before its import, within
        # its own bound: a first build may take longer than ``timeouts.initialize``.
        await asyncio.to_thread(plugin_python, manifest)
    try:
        loaded = await run_bounded(
            _loader(manifest, contract, private=private, process=process),
            code=code, what="import", limit=limit, on_late=_late_import,
        )  # fmt: skip
    except OverrunError as exc:
        file, line = (Path(exc.where[0]), exc.where[1]) if exc.where else (None, None)
        log.warning("plugin %s: importing its code did not finish within %gs; abandoned in "
                    "its thread", manifest.name, exc.limit)  # fmt: skip
        raise PluginLoadTimeoutError(manifest.name, exc.limit, file=file, line=line) from None
    except EscapedError as exc:  # a real interrupt the import raised in a library, say
        raise PluginImportError(manifest.name, exc.error, file=None, line=None) from exc.error
    if not isinstance(loaded, LoadedCode):  # pragma: no cover - load_code returns one
        raise TypeError(f"load_code returned {type(loaded).__name__}")
    return loaded


async def validate_config(
    plugin: str,
    instance: object,
    values: Mapping[str, object],
    *,
    limit: float | None = None,
    code: PluginCode | None = None,
) -> None:
    """Honour ``Configurable``: the plugin's own ``validate_config`` (plain or
    ``async def``) refuses bad config.

    Whatever it raises is a ``ConfigError`` naming the plugin, with the original as its
    ``__cause__``: ``ValueError``, ``TypeError`` or ``ConfigError`` is a refusal,
    anything else (``SystemExit`` too) a bug of the check, said so in the message, as
    is running past ``limit`` seconds.
    """
    check = getattr(instance, "validate_config", None)
    if not callable(check):
        return
    try:
        await run_bounded(
            check, dict(values), code=code or PluginCode(plugin), what="validate_config",
            limit=limit,
        )  # fmt: skip
    except OverrunError as exc:
        raise ConfigError(
            f"invalid config for plugin '{plugin}': validate_config() did not return within "
            f"{exc.limit:g}s",
            plugin=plugin,
            hint=f"plugin '{plugin}' must check its config within its timeouts.initialize; "
            "validate_config() was abandoned",
        ) from None
    except EscapedError as exc:
        raise _check_failed(plugin, exc.error) from exc.error
    except (ValueError, TypeError, ConfigError) as exc:
        raise ConfigError(
            f"invalid config for plugin '{plugin}': {error_text(exc)}",
            plugin=plugin,
            hint=f"plugin '{plugin}' refused its config in validate_config(); fix the values "
            "in its config entry",
        ) from exc
    except Exception as exc:
        raise _check_failed(plugin, exc) from exc


def _check_failed(plugin: str, error: BaseException) -> ConfigError:
    return ConfigError(
        f"invalid config for plugin '{plugin}': validate_config() raised {error_line(error)}",
        plugin=plugin,
        hint=f"plugin '{plugin}' failed checking its config: validate_config() refuses a "
        "config with ValueError; check the values in its config entry and the plugin's "
        "validate_config()",
    )


def new_version(
    slot: PluginSlot,
    found: Found,
    settings: PluginConfig,
    code: LoadedCode,
    contract: Contract,
    permissions: frozenset[str],
    *,
    values: Mapping[str, object],
    config: TetherConfig,
    runtime: Runtime,
) -> PluginVersion:
    """A version of the slot's plugin staged beside the others (status ``loading``), with
    its own door, call chain and scope, and its validated config ``values``."""
    manifest = found.manifest
    chain = call_chain(manifest, settings, config, runtime.errors)
    door = slot.gate.add_door(manifest.version, chain=chain)
    scope = PluginScope(
        manifest=manifest, config=values, permissions=permissions, runtime=runtime, door=door
    )
    version = PluginVersion(manifest, settings, code, scope, contract, found.location)
    version.set_status(PluginStatus.LOADING)
    slot.add(version)
    return version


def new_slot(
    found: Found,
    settings: PluginConfig,
    code: LoadedCode,
    contract: Contract,
    permissions: frozenset[str],
    *,
    values: Mapping[str, object],
    config: TetherConfig,
    runtime: Runtime,
    stats: CallStats,
    on_error: Callable[[str, BaseException], None],
) -> PluginSlot:
    """The slot of a newly loaded plugin, its first version staged (status ``loading``),
    with its validated config ``values``.

    ``on_error(source, error)`` hears every error recorded on the plugin's gate.
    """
    manifest = found.manifest
    reload = config.reload
    gate = Gate(
        manifest.name,
        hold_timeout=reload.queue_timeout,
        max_waiting=reload.max_queue_size,
        stats=stats,
    )
    gate.error_listeners.append(on_error)
    slot = PluginSlot(manifest.name, gate)
    new_version(slot, found, settings, code, contract, permissions, values=values,
                config=config, runtime=runtime)  # fmt: skip
    return slot


def check_before_import(
    found: Found,
    settings: PluginConfig,
    *,
    contracts: ContractRegistry,
    framework_version: str,
    config: TetherConfig,
) -> tuple[Contract, frozenset[str]]:
    """What can be checked before any of the plugin's code runs: its files against the
    lock (``plugins.verify``), the framework version, isolation, an in-process plugin's
    requirements against the host's environment, the contract it provides and the
    permissions it is granted (those two are returned)."""
    manifest = found.manifest
    if config.plugins.verify:
        check_plugin(manifest, read_lock(lock_path(config.path)))
    constraint = manifest.framework.version
    if not parse_constraint(constraint).allows(framework_version):
        raise FrameworkVersionMismatchError(manifest.name, constraint, framework_version)
    check_isolation(manifest, settings)
    if isolation_of(manifest, settings) == "inprocess":
        check_host_requirements(manifest)
    contract = contracts.resolve(manifest.name, manifest.provides)
    permissions = grant_permissions(manifest, settings.permissions, path=manifest.source)
    return contract, permissions


async def checked_config(
    manifest: Manifest,
    code: LoadedCode,
    contract: Contract,
    settings: PluginConfig,
    config: TetherConfig,
    limit: float | None,
) -> dict[str, object]:
    """The entry's config validated against the schema of ``code``'s version, then by the
    plugin's own ``validate_config``."""
    values = validate_entry_config(
        manifest.name, config_schema(manifest, code.instance), settings, config,
        additional_properties=manifest.open_config, host_keys=contract.config_keys,
    )  # fmt: skip
    await validate_config(manifest.name, code.instance, values, limit=limit,
                          code=PluginCode.of(manifest.name, code_directory(code)))  # fmt: skip
    return dict(values)


async def load_slot(
    found: Found,
    settings: PluginConfig,
    *,
    contracts: ContractRegistry,
    framework_version: str,
    config: TetherConfig,
    runtime: Runtime,
    stats: CallStats,
    attempts: list[LoadAttempt],
    on_error: Callable[[str, BaseException], None],
) -> PluginSlot:
    """Check, import and stage a plugin found by the locator: its new slot.

    With ``plugins.verify`` the plugin's files are checked against the config's
    ``tether.lock`` first, before anything else of it is read or run.
    """
    manifest = found.manifest
    contract, permissions = check_before_import(
        found, settings, contracts=contracts, framework_version=framework_version, config=config
    )
    timeouts = timeouts_of(manifest, settings, config)
    limit = timeouts["initialize"]
    process = timeouts if isolation_of(manifest, settings) == "process" else None
    code = await import_code(
        manifest, contract, private=found.private, attempts=attempts, limit=limit,
        process=process,
    )  # fmt: skip
    try:
        values = await checked_config(manifest, code, contract, settings, config, limit)
        slot = new_slot(found, settings, code, contract, permissions, values=values,
                        config=config, runtime=runtime, stats=stats, on_error=on_error)  # fmt: skip
    except BaseException:
        unload_code(code)
        raise
    directory = code_directory(code)
    if directory is not None:  # its audit events are attributed to it from now on
        capability_watch.track(manifest.name, directory, permissions)
    return slot
