"""tether: a plugin runtime for Python.

The public API is exactly ``__all__``; every other module is private. Plugins program
against :class:`PluginContext` and the Protocols of :mod:`tether.types`; hosts drive a
:class:`PluginManager` and call plugins through its :class:`PluginHandle` objects.
"""

from tether import errors, types
from tether._attribution import blame
from tether._audit import CapabilityUse, load_capability_uses
from tether._bounded import is_interruption, plugin_frame, run_host
from tether._callstats import CallMetrics, CallRow
from tether._chain import check_call_chain
from tether._config import (
    CONFIG_NAMES,
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
from tether._gate import GateState
from tether._handle import Operation, PluginHandle
from tether._health import HealthCheckResult, PluginHealth
from tether._hooks import HookFailure, HookMetrics, HookOutcome, HookRegistry
from tether._lifecycle import PluginStatus
from tether._locate import check_entry
from tether._manager import LoadAttempt, PluginManager
from tether._manifest import Manifest, find_manifest, load_manifest
from tether._middleware import Middleware, MiddlewareRegistry
from tether._plugin import Plugin
from tether._resolver import Resolution, dependency_graph, resolve
from tether._retries import FailedPlugin
from tether._runtime import Registrar, Runtime
from tether._seam import Entry as PluginEntry
from tether._seam import is_async_callable
from tether._sections import ConfigSection, SectionRegistry, config_sections
from tether._services import ServiceRegistry
from tether._slots import SlotEvent
from tether._storage import StateStore, open_state_store
from tether._sync import SyncPluginManager
from tether._thresholds import ErrorThreshold, ThresholdStatus
from tether._version import __version__
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
    "Registrar",
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
    "default_search_paths",
    "dependency_graph",
    "describe_error",
    "discover",
    "error_text",
    "errors",
    "find_manifest",
    "format_duration",
    "grant_permissions",
    "is_async_callable",
    "is_interruption",
    "load_capability_uses",
    "load_config",
    "load_manifest",
    "mask_secrets",
    "open_state_store",
    "parse_duration",
    "plugin_frame",
    "resolve",
    "run_host",
    "search_paths_for",
    "types",
    "validate_entry_config",
    "validate_plugin_config",
]
