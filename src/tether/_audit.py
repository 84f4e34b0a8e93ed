"""Telemetry, not a sandbox: notice in-process plugins using capabilities they did not declare.

In-process plugins are trusted code. Python cannot confine them: audit hooks
(PEP 578) see file opens, socket connections and process starts, but a plugin can
get around them. So this module only *records*: when a frame of a plugin's code is
on the stack of an ``open``, ``socket.connect``/``bind`` or process-start audit
event, and the plugin's manifest does not declare ``filesystem``, ``network`` or
``exec``, the event is counted against the plugin. Enforcement belongs to process
isolation.

Opens of files inside the plugin's own directory and of Python source or bytecode
(imports) are not counted.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether._storage import StateStore

__all__ = [
    "CapabilityUse",
    "CapabilityWatch",
    "load_capability_uses",
    "save_capability_uses",
    "watch",
]

_EVENTS = {
    "open": "filesystem",
    "os.remove": "filesystem",
    "os.rename": "filesystem",
    "os.mkdir": "filesystem",
    "shutil.rmtree": "filesystem",
    "socket.connect": "network",
    "socket.bind": "network",
    "socket.getaddrinfo": "network",
    "subprocess.Popen": "exec",
    "os.system": "exec",
    "os.exec": "exec",
    "os.posix_spawn": "exec",
    "os.spawn": "exec",
    "os.fork": "exec",
}
_IMPORT_SUFFIXES = (".py", ".pyc", ".so", ".pth")
_TETHER_DIRECTORY = os.path.dirname(os.path.abspath(__file__)) + os.sep  # noqa: PTH100, PTH120


def _normalized(path: str) -> str:
    """``path`` made absolute with ``..`` resolved, so it cannot escape a prefix check."""
    try:
        return os.path.normpath(os.path.abspath(path))  # noqa: PTH100
    except (TypeError, ValueError):
        return path


_MAX_FRAMES = 64


@dataclass(slots=True)
class CapabilityUse:
    """How often one plugin used one undeclared capability, with the first example."""

    plugin: str
    capability: str
    count: int = 0
    example: str = ""
    first_seen: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_seen: datetime = field(default_factory=lambda: datetime.now(UTC))


class CapabilityWatch:
    """The process-wide audit hook and what it has seen, per plugin."""

    def __init__(self) -> None:
        self._plugins: dict[str, tuple[str, frozenset[str]]] = {}  # dir prefix -> plugin, declared
        self._uses: dict[tuple[str, str], CapabilityUse] = {}
        self._lock = threading.Lock()
        self._installed = False
        self._local = threading.local()

    def track(self, plugin: str, directory: str, declared: frozenset[str]) -> None:
        """Attribute events from code under ``directory`` to ``plugin``."""
        prefixes = {
            os.path.abspath(directory).rstrip("/") + "/",  # noqa: PTH100 - str paths, hot path
            os.path.realpath(directory).rstrip("/") + "/",
        }
        with self._lock:
            self._plugins = {**self._plugins, **dict.fromkeys(prefixes, (plugin, declared))}
            if not self._installed:
                sys.addaudithook(self._hook)
                self._installed = True

    def untrack(self, plugin: str) -> None:
        with self._lock:
            self._plugins = {k: v for k, v in self._plugins.items() if v[0] != plugin}

    def uses(self, plugin: str | None = None) -> list[CapabilityUse]:
        with self._lock:
            return [u for u in self._uses.values() if plugin is None or u.plugin == plugin]

    def take(self, plugin: str) -> list[CapabilityUse]:
        """The plugin's records, removed from the watch (they have been saved elsewhere)."""
        with self._lock:
            taken = [u for u in self._uses.values() if u.plugin == plugin]
            for use in taken:
                del self._uses[(plugin, use.capability)]
            return taken

    def _hook(self, event: str, args: tuple[object, ...]) -> None:
        capability = _EVENTS.get(event)
        if capability is None or not self._plugins or getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            self._observe(event, capability, args)
        finally:
            self._local.busy = False

    def _observe(self, event: str, capability: str, args: tuple[object, ...]) -> None:
        target = str(args[0]) if args else ""
        if event == "open" and target.endswith(_IMPORT_SUFFIXES):
            return
        owner = self._owner(sys._getframe(2))  # noqa: SLF001 - skip this hook's own frames
        if owner is None:
            return
        plugin, declared, prefix = owner
        if capability in declared:
            return
        if capability == "filesystem" and _normalized(target).startswith(prefix):
            return
        now = datetime.now(UTC)
        with self._lock:
            use = self._uses.get((plugin, capability))
            if use is None:
                example = f"{event} {target}"[:200]
                use = CapabilityUse(plugin, capability, 0, example, now, now)
                self._uses[(plugin, capability)] = use
            use.count += 1
            use.last_seen = now

    def _owner(self, frame: FrameType | None) -> tuple[str, frozenset[str], str] | None:
        """The plugin whose code caused the event; None when tether acted for it.

        Walking outwards from the event, the first frame that is either a plugin's or
        tether's own decides: plugin code means the plugin did it; tether code means
        the framework did it on the plugin's behalf (opening its storage, say).
        """
        plugins = self._plugins
        depth = 0
        while frame is not None and depth < _MAX_FRAMES:
            filename = frame.f_code.co_filename
            if filename.startswith(_TETHER_DIRECTORY):
                return None
            for prefix, (plugin, declared) in plugins.items():
                if filename.startswith(prefix):
                    return plugin, declared, prefix
            frame = frame.f_back
            depth += 1
        return None


watch = CapabilityWatch()


# The state store keeps what was seen under a namespace no plugin can have (plugin
# names start with a letter or digit), so ``tether plugins info`` can show it later.
_NAMESPACE = "_tether"


def save_capability_uses(store: StateStore, plugin: str, uses: list[CapabilityUse]) -> None:
    """Merge ``uses`` into what the store already holds for ``plugin``."""
    from tether._storage import PluginStorage

    storage = PluginStorage(store, _NAMESPACE)
    key = f"capabilities:{plugin}"
    saved = storage.get(key, {})
    merged: dict[str, object] = dict(saved) if isinstance(saved, dict) else {}
    for use in uses:
        before = merged.get(use.capability)
        old = before if isinstance(before, dict) else {}
        merged[use.capability] = {
            "count": int(old.get("count", 0)) + use.count,
            "example": old.get("example") or use.example,
            "first_seen": old.get("first_seen") or use.first_seen,
            "last_seen": use.last_seen,
        }
    storage.set(key, merged)


def load_capability_uses(store: StateStore, plugin: str) -> list[CapabilityUse]:
    """What was saved for ``plugin``, oldest capability first."""
    from tether._storage import PluginStorage

    saved = PluginStorage(store, _NAMESPACE).get(f"capabilities:{plugin}", {})
    uses = []
    for capability, item in (saved if isinstance(saved, dict) else {}).items():
        if isinstance(item, dict):
            use = CapabilityUse(plugin, capability, int(item.get("count", 0)))
            use.example = str(item.get("example", ""))
            if isinstance(item.get("first_seen"), datetime):
                use.first_seen = item["first_seen"]
            if isinstance(item.get("last_seen"), datetime):
                use.last_seen = item["last_seen"]
            uses.append(use)
    return sorted(uses, key=lambda u: u.first_seen)
