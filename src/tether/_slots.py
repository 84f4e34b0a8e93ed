"""Plugin slots: one stable home per plugin name, holding its loaded versions.

A :class:`PluginSlot` lives from a plugin's first load to its unload. It owns what
must not change when the code does: the gate (callers, held calls, errors), the
:class:`~tether.PluginHandle` hosts call through, the enabled flag and a history.
It holds one or more :class:`PluginVersion` objects: the committed one, whose
registrations are live, and, while a version is being brought in, a staged one
beside it.

Every registration a version makes (hooks, subscriptions, services, middleware,
routes) belongs to its door. Until the version is **committed** those are staged:
no call reaches them. ``commit`` makes them the live ones in every mechanism at once
and the previous version's staged-out; ``discard`` removes a version and everything
it registered, whichever state it was in. So bringing in a new version, or rolling
back to the old one, never touches a mechanism directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tether._gate import Gate
from tether._handle import PluginHandle
from tether._lifecycle import PluginStatus, check_transition
from tether._loader import LoadedCode, unload_code

if TYPE_CHECKING:
    from tether._config import PluginConfig
    from tether._context import PluginScope
    from tether._contracts import Contract
    from tether._gate import Door
    from tether._manifest import Manifest

__all__ = ["PluginSlot", "PluginVersion", "SlotEvent"]

log = logging.getLogger("tether")

_HISTORY_LIMIT = 200


@dataclass(frozen=True, slots=True)
class SlotEvent:
    """One thing that happened to a plugin slot (``loaded``, ``committed``, ``discarded``...)."""

    at: datetime
    what: str
    version: str
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"at": self.at.isoformat(), "what": self.what, "version": self.version,
                "detail": self.detail}  # fmt: skip


@dataclass(slots=True, eq=False)
class PluginVersion:
    """One loaded version of a plugin: its code, its scope (context) and its status."""

    manifest: Manifest
    settings: PluginConfig
    code: LoadedCode
    scope: PluginScope
    contract: Contract
    location: str
    status: PluginStatus = PluginStatus.UNLOADED
    initialized: bool = False
    last_error: BaseException | None = None
    load_time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def instance(self) -> object:
        return self.code.instance

    @property
    def door(self) -> Door:
        return self.scope.door

    def set_status(self, target: PluginStatus) -> None:
        check_transition(self.name, self.status, target)
        self.status = target


class PluginSlot:
    """The stable home of one plugin name (see the module docstring)."""

    def __init__(self, name: str, gate: Gate) -> None:
        self.name = name
        self.gate = gate
        self.versions: list[PluginVersion] = []
        self.live: PluginVersion | None = None
        self.enabled = True
        self.last: PluginVersion | None = None  # the last version discarded, for reports
        self.history: list[SlotEvent] = []
        self.handle = PluginHandle(gate, self._instance_of)

    def _instance_of(self, door: Door) -> object:
        for version in self.versions:
            if version.door is door:
                return version.instance
        raise LookupError(f"plugin '{self.name}' has no version with door {door!r}")

    @property
    def current(self) -> PluginVersion:
        """The live version, else the newest one loaded (staged), else the last one gone."""
        if self.live is not None:
            return self.live
        if self.versions:
            return self.versions[-1]
        if self.last is None:  # pragma: no cover - a slot is made with its first version
            raise LookupError(f"plugin '{self.name}' has no version")
        return self.last

    def note(self, what: str, version: str, detail: str = "") -> None:
        self.history.append(SlotEvent(datetime.now(UTC), what, version, detail))
        del self.history[:-_HISTORY_LIMIT]

    # ------------------------------------------------------------------ versions

    def add(self, version: PluginVersion) -> None:
        """A newly loaded version: staged beside the live one (if any)."""
        self.versions.append(version)
        self.note("loaded", version.version, version.location)

    def commit(self, version: PluginVersion) -> None:
        """Make ``version``'s registrations the live ones, everywhere at once."""
        old = self.live
        if old is version:
            return
        if old is not None:
            old.door.committed = False
        version.door.committed = True
        self.live = version
        version.scope.runtime.version_committed(
            old.scope if old is not None else None, version.scope
        )
        self.handle.version_committed()
        self.note("committed", version.version)

    def discard(self, version: PluginVersion, *, reason: str = "") -> list[BaseException]:
        """Remove a version and everything it registered; forget its code."""
        failures = version.scope.release()
        if self.live is version:
            self.live = None
            version.door.committed = False
        if version in self.versions:
            self.versions.remove(version)
        self.gate.remove_door(version.door)
        self.handle.version_dropped(version.door)
        if not any(v.code.module is version.code.module for v in self.versions):
            unload_code(version.code)  # a version revived from the same code keeps it
        # kept for reports only when it was the last one; else nothing of it stays reachable
        self.last = version if not self.versions else None
        self.note("discarded", version.version, reason)
        return failures
