"""tether: a plugin runtime for Python.

The public API is exactly ``__all__``; every other module is private.
"""

__version__ = "0.1.0"

from tether import errors
from tether._config import PluginConfig, TetherConfig, load_config
from tether._context import PluginContext
from tether._events import Event
from tether._hooks import HookMetrics, HookOutcome
from tether._lifecycle import PluginStatus
from tether._manager import LoadAttempt, PluginManager
from tether._manifest import Manifest, load_manifest
from tether._plugin import Plugin
from tether._resolver import Resolution, resolve
from tether._sync import SyncPluginManager
from tether.errors import TetherError
from tether.types import PluginInfo, Router

__all__ = [
    "Event",
    "HookMetrics",
    "HookOutcome",
    "LoadAttempt",
    "Manifest",
    "Plugin",
    "PluginConfig",
    "PluginContext",
    "PluginInfo",
    "PluginManager",
    "PluginStatus",
    "Resolution",
    "Router",
    "SyncPluginManager",
    "TetherConfig",
    "TetherError",
    "__version__",
    "errors",
    "load_config",
    "load_manifest",
    "resolve",
]
