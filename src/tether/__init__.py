"""tether: a plugin runtime for Python.

The public API is exactly ``__all__``; every other module is private. Plugins program
against :class:`PluginContext` and the Protocols of :mod:`tether.types`; hosts drive a
:class:`PluginManager` and call plugins through its :class:`PluginHandle` objects.

Importing ``tether`` imports none of it: each name is imported from its module on first
use (PEP 562), so ``import tether`` costs little more than the interpreter, and
``tether.Plugin`` does not bring in pydantic, asyncio or the manager. The objects are
the same either way (``tether.PluginManager is tether._manager.PluginManager``).
"""

from __future__ import annotations

import importlib

from tether._version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; type checkers know it
if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from tether import errors, types
    from tether._attribution import blame
    from tether._audit import CapabilityUse, load_capability_uses
    from tether._bounded import is_interruption, plugin_frame, run_host
    from tether._callstats import CallMetrics, CallRow
    from tether._chain import check_call_chain
    from tether._config import (
        ConfigPlace,
        PluginConfig,
        RetrySettings,
        TetherConfig,
        grant_permissions,
        load_config,
        mask_secrets,
        validate_entry_config,
        validate_plugin_config,
    )
    from tether._config_names import CONFIG_NAMES
    from tether._context import PluginScope
    from tether._contracts import PLUGIN_CONTRACT, Contract, ContractRegistry
    from tether._describe import error_line as describe_error
    from tether._describe import error_text
    from tether._discovery import (
        DiscoveredPlugin,
        DiscoveryResult,
        IndexCache,
        default_search_paths,
        discover,
        search_paths_for,
    )
    from tether._durations import format_duration, parse_duration
    from tether._entry_source import EntryCheck, EntryFinding, check_entry_source
    from tether._event_model import EventStats
    from tether._events import EventBus
    from tether._expansion import Expanded
    from tether._expansion import convert as convert_expanded
    from tether._gate import GateState
    from tether._handle import Operation, PluginHandle
    from tether._health import HealthCheckResult, PluginHealth
    from tether._hooks import HookFailure, HookMetrics, HookOutcome, HookRegistry
    from tether._lifecycle import PluginStatus
    from tether._locate import check_entry, isolation_of, resources_of
    from tether._manager import LoadAttempt, PluginManager
    from tether._manifest import Manifest, find_manifest, load_manifest
    from tether._middleware import Middleware, MiddlewareRegistry
    from tether._plugin import Plugin
    from tether._reload_result import ReloadConfig, ReloadResult
    from tether._resolver import Resolution, dependency_graph, resolve
    from tether._retries import FailedPlugin
    from tether._runtime import Registrar, Runtime
    from tether._seam import Entry as PluginEntry
    from tether._seam import is_async_callable
    from tether._sections import ConfigSection, SectionRegistry, config_sections
    from tether._services import ServiceRegistry
    from tether._sizes import format_size, parse_size
    from tether._slots import SlotEvent
    from tether._storage import StateStore, open_state_store
    from tether._sync import SyncPluginManager
    from tether._thresholds import ErrorThreshold, ThresholdStatus
    from tether._watch import PluginWatcher
    from tether.errors import TetherError
    from tether.types import (
        SHUTDOWN,
        STARTUP,
        Configurable,
        Describable,
        Event,
        HealthCheckable,
        HookPoint,
        PluginContext,
        PluginInfo,
        Router,
    )

__all__ = [
    "CONFIG_NAMES",
    "PLUGIN_CONTRACT",
    "SHUTDOWN",
    "STARTUP",
    "CallMetrics",
    "CallRow",
    "CapabilityUse",
    "ConfigPlace",
    "ConfigSection",
    "Configurable",
    "Contract",
    "ContractRegistry",
    "Describable",
    "DiscoveredPlugin",
    "DiscoveryResult",
    "EntryCheck",
    "EntryFinding",
    "ErrorThreshold",
    "Event",
    "EventBus",
    "EventStats",
    "Expanded",
    "FailedPlugin",
    "GateState",
    "HealthCheckResult",
    "HealthCheckable",
    "HookFailure",
    "HookMetrics",
    "HookOutcome",
    "HookPoint",
    "HookRegistry",
    "IndexCache",
    "LoadAttempt",
    "Manifest",
    "Middleware",
    "MiddlewareRegistry",
    "Operation",
    "Plugin",
    "PluginConfig",
    "PluginContext",
    "PluginEntry",
    "PluginHandle",
    "PluginHealth",
    "PluginInfo",
    "PluginManager",
    "PluginScope",
    "PluginStatus",
    "PluginWatcher",
    "Registrar",
    "ReloadConfig",
    "ReloadResult",
    "Resolution",
    "RetrySettings",
    "Router",
    "Runtime",
    "SectionRegistry",
    "ServiceRegistry",
    "SlotEvent",
    "StateStore",
    "SyncPluginManager",
    "TetherConfig",
    "TetherError",
    "ThresholdStatus",
    "__version__",
    "blame",
    "check_call_chain",
    "check_entry",
    "check_entry_source",
    "config_sections",
    "convert_expanded",
    "default_search_paths",
    "dependency_graph",
    "describe_error",
    "discover",
    "error_text",
    "errors",
    "find_manifest",
    "format_duration",
    "format_size",
    "grant_permissions",
    "is_async_callable",
    "is_interruption",
    "isolation_of",
    "load_capability_uses",
    "load_config",
    "load_manifest",
    "mask_secrets",
    "open_state_store",
    "parse_duration",
    "parse_size",
    "plugin_frame",
    "resolve",
    "resources_of",
    "run_host",
    "search_paths_for",
    "types",
    "validate_entry_config",
    "validate_plugin_config",
]

# name -> (module, attribute in it); an empty attribute: the module itself
_EXPORTS: dict[str, tuple[str, str]] = {
    "errors": ("tether.errors", ""),
    "types": ("tether.types", ""),
    "blame": ("tether._attribution", "blame"),
    "CapabilityUse": ("tether._audit", "CapabilityUse"),
    "load_capability_uses": ("tether._audit", "load_capability_uses"),
    "is_interruption": ("tether._bounded", "is_interruption"),
    "plugin_frame": ("tether._bounded", "plugin_frame"),
    "run_host": ("tether._bounded", "run_host"),
    "CallMetrics": ("tether._callstats", "CallMetrics"),
    "CallRow": ("tether._callstats", "CallRow"),
    "check_call_chain": ("tether._chain", "check_call_chain"),
    "CONFIG_NAMES": ("tether._config_names", "CONFIG_NAMES"),
    "ConfigPlace": ("tether._config", "ConfigPlace"),
    "PluginConfig": ("tether._config", "PluginConfig"),
    "RetrySettings": ("tether._config", "RetrySettings"),
    "TetherConfig": ("tether._config", "TetherConfig"),
    "grant_permissions": ("tether._config", "grant_permissions"),
    "load_config": ("tether._config", "load_config"),
    "mask_secrets": ("tether._config", "mask_secrets"),
    "validate_entry_config": ("tether._config", "validate_entry_config"),
    "validate_plugin_config": ("tether._config", "validate_plugin_config"),
    "PluginScope": ("tether._context", "PluginScope"),
    "PLUGIN_CONTRACT": ("tether._contracts", "PLUGIN_CONTRACT"),
    "Contract": ("tether._contracts", "Contract"),
    "ContractRegistry": ("tether._contracts", "ContractRegistry"),
    "describe_error": ("tether._describe", "error_line"),
    "error_text": ("tether._describe", "error_text"),
    "DiscoveredPlugin": ("tether._discovery", "DiscoveredPlugin"),
    "DiscoveryResult": ("tether._discovery", "DiscoveryResult"),
    "IndexCache": ("tether._discovery", "IndexCache"),
    "default_search_paths": ("tether._discovery", "default_search_paths"),
    "discover": ("tether._discovery", "discover"),
    "search_paths_for": ("tether._discovery", "search_paths_for"),
    "format_duration": ("tether._durations", "format_duration"),
    "isolation_of": ("tether._locate", "isolation_of"),
    "resources_of": ("tether._locate", "resources_of"),
    "format_size": ("tether._sizes", "format_size"),
    "parse_size": ("tether._sizes", "parse_size"),
    "Expanded": ("tether._expansion", "Expanded"),
    "convert_expanded": ("tether._expansion", "convert"),
    "parse_duration": ("tether._durations", "parse_duration"),
    "EntryCheck": ("tether._entry_source", "EntryCheck"),
    "EntryFinding": ("tether._entry_source", "EntryFinding"),
    "check_entry_source": ("tether._entry_source", "check_entry_source"),
    "EventStats": ("tether._event_model", "EventStats"),
    "EventBus": ("tether._events", "EventBus"),
    "GateState": ("tether._gate", "GateState"),
    "Operation": ("tether._handle", "Operation"),
    "PluginHandle": ("tether._handle", "PluginHandle"),
    "HealthCheckResult": ("tether._health", "HealthCheckResult"),
    "PluginHealth": ("tether._health", "PluginHealth"),
    "HookFailure": ("tether._hooks", "HookFailure"),
    "HookMetrics": ("tether._hooks", "HookMetrics"),
    "HookOutcome": ("tether._hooks", "HookOutcome"),
    "HookRegistry": ("tether._hooks", "HookRegistry"),
    "PluginStatus": ("tether._lifecycle", "PluginStatus"),
    "check_entry": ("tether._locate", "check_entry"),
    "LoadAttempt": ("tether._manager", "LoadAttempt"),
    "PluginManager": ("tether._manager", "PluginManager"),
    "Manifest": ("tether._manifest", "Manifest"),
    "find_manifest": ("tether._manifest", "find_manifest"),
    "load_manifest": ("tether._manifest", "load_manifest"),
    "Middleware": ("tether._middleware", "Middleware"),
    "MiddlewareRegistry": ("tether._middleware", "MiddlewareRegistry"),
    "Plugin": ("tether._plugin", "Plugin"),
    "ReloadConfig": ("tether._reload_result", "ReloadConfig"),
    "ReloadResult": ("tether._reload_result", "ReloadResult"),
    "Resolution": ("tether._resolver", "Resolution"),
    "dependency_graph": ("tether._resolver", "dependency_graph"),
    "resolve": ("tether._resolver", "resolve"),
    "FailedPlugin": ("tether._retries", "FailedPlugin"),
    "Registrar": ("tether._runtime", "Registrar"),
    "Runtime": ("tether._runtime", "Runtime"),
    "PluginEntry": ("tether._seam", "Entry"),
    "is_async_callable": ("tether._seam", "is_async_callable"),
    "ConfigSection": ("tether._sections", "ConfigSection"),
    "SectionRegistry": ("tether._sections", "SectionRegistry"),
    "config_sections": ("tether._sections", "config_sections"),
    "ServiceRegistry": ("tether._services", "ServiceRegistry"),
    "SlotEvent": ("tether._slots", "SlotEvent"),
    "StateStore": ("tether._storage", "StateStore"),
    "open_state_store": ("tether._storage", "open_state_store"),
    "SyncPluginManager": ("tether._sync", "SyncPluginManager"),
    "ErrorThreshold": ("tether._thresholds", "ErrorThreshold"),
    "ThresholdStatus": ("tether._thresholds", "ThresholdStatus"),
    "PluginWatcher": ("tether._watch", "PluginWatcher"),
    "TetherError": ("tether.errors", "TetherError"),
    "SHUTDOWN": ("tether.types", "SHUTDOWN"),
    "STARTUP": ("tether.types", "STARTUP"),
    "Configurable": ("tether.types", "Configurable"),
    "Describable": ("tether.types", "Describable"),
    "Event": ("tether.types", "Event"),
    "HealthCheckable": ("tether.types", "HealthCheckable"),
    "HookPoint": ("tether.types", "HookPoint"),
    "PluginContext": ("tether.types", "PluginContext"),
    "PluginInfo": ("tether.types", "PluginInfo"),
    "Router": ("tether.types", "Router"),
}


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use, then keep it here."""
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'tether' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
