"""``PluginHandle``: how a host calls into a plugin, whichever version of it is live.

One handle per plugin slot, stable for as long as the plugin is loaded. A call names an
operation, a method of the plugin object::

    handle = manager.get_handle("tpcb")
    types = handle.call("get_operation_types")
    result = await handle.acall("execute", {"text": "hi"})

and goes through the seam (``tether._seam``): the gate, the plugin's call chain
(timeout, timing, errors, tracing), and the live version. For a loop that calls one
operation many times, ``handle.operation(name)`` gives an :class:`Operation` whose
``call``/``acall`` are the live version's entry functions, swapped when another
version goes live, so the loop pays for nothing but the seam itself.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from datetime import datetime

from tether._callstats import CallMetrics, CallRow
from tether._gate import Door, Gate, GateState
from tether._seam import Entry
from tether.errors import CallError, PluginUnavailableError

__all__ = ["CallMetrics", "Operation", "PluginHandle"]

Instance = Callable[[Door], object]


class Operation:
    """One operation of the live version: ``call`` (sync) and ``acall`` (async).

    Both are replaced when another version goes live; read them at each use.
    """

    __slots__ = ("acall", "call", "is_async", "name")

    def __init__(self, name: str, entry: Entry) -> None:
        self.name = name
        self.call: Callable[..., object] = entry.call
        self.acall: Callable[..., Awaitable[object]] = entry.acall
        self.is_async = entry.is_async

    def _point_at(self, entry: Entry) -> None:
        self.call = entry.call
        self.acall = entry.acall
        self.is_async = entry.is_async


class PluginHandle:
    """The one seam hosts call a plugin through (see the module docstring)."""

    def __init__(self, gate: Gate, instance: Instance) -> None:
        self._gate = gate
        self._instance = instance
        self._entries: dict[tuple[Door, str], Entry] = {}
        self._operations: dict[str, Operation] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ state

    @property
    def name(self) -> str:
        return self._gate.plugin

    @property
    def version(self) -> str | None:
        """The live version, or None before one was committed."""
        live = self._gate.live
        return None if live is None else live.version

    @property
    def state(self) -> GateState:
        return self._gate.state

    @property
    def closed_reason(self) -> str | None:
        return self._gate.closed_reason if self._gate.state is GateState.CLOSED else None

    @property
    def in_flight(self) -> int:
        """Calls inside the plugin now, all versions together."""
        return self._gate.in_flight

    def in_flight_by_version(self) -> dict[str, int]:
        return {door.version: door.in_flight for door in self._gate.doors}

    @property
    def waiting(self) -> int:
        """Callers held at the gate now (a version is being swapped)."""
        return self._gate.waiting

    @property
    def error_count(self) -> int:
        return self._gate.error_count

    @property
    def last_error(self) -> BaseException | None:
        return self._gate.last_error

    @property
    def last_error_at(self) -> datetime | None:
        return self._gate.last_error_at

    def errors_by_type(self) -> dict[str, int]:
        return dict(self._gate.errors_by_type)

    # ------------------------------------------------------------------ calling

    def has(self, op: str) -> bool:
        """Whether the live version's object has a callable ``op``."""
        live = self._gate.live
        return live is not None and callable(getattr(self._instance(live), op, None))

    def _live(self) -> Door:
        live = self._gate.live
        if live is None:
            raise PluginUnavailableError(self.name, self._gate.closed_reason)
        return live

    def entry(self, op: str, door: Door | None = None) -> Entry:
        """The entry of ``op`` in ``door``'s version (the live one by default)."""
        door = door or self._live()
        key = (door, op)
        found = self._entries.get(key)
        if found is not None:
            return found
        fn = getattr(self._instance(door), op, None)
        if not callable(fn):
            raise CallError(
                f"plugin '{self.name}' {door.version} has no operation '{op}'",
                plugin=self.name,
                hint="call a method the plugin object defines",
            )
        found = Entry(door, fn, f"call:{op}", redirect=lambda live: self.entry(op, live))
        with self._lock:
            return self._entries.setdefault(key, found)

    def call(self, op: str, /, *args: object, **kwargs: object) -> object:
        """Call ``op`` of the live version from synchronous code."""
        return self.entry(op).call(*args, **kwargs)

    async def acall(self, op: str, /, *args: object, **kwargs: object) -> object:
        """Call ``op`` of the live version and await it (a sync method runs inline)."""
        return await self.entry(op).acall(*args, **kwargs)

    def operation(self, op: str) -> Operation:
        """A stable :class:`Operation` for a loop that calls ``op`` many times."""
        found = self._operations.get(op)
        if found is None:
            found = self._operations.setdefault(op, Operation(op, self.entry(op)))
        return found

    # ------------------------------------------------------------------ versions

    def version_committed(self) -> None:
        """Another version is live: point the operations at it."""
        live = self._gate.live
        if live is None:
            return
        for op, operation in list(self._operations.items()):
            try:
                operation._point_at(self.entry(op, live))  # noqa: SLF001 - the handle's own
            except CallError:
                continue  # the new version lacks it: calls through the old one redirect and fail

    def version_dropped(self, door: Door) -> None:
        """``door``'s version is gone: forget its entries (its metrics stay)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] is door]:
                del self._entries[key]

    # ------------------------------------------------------------------ metrics

    def metrics(self) -> dict[str, CallMetrics]:
        """Per source: calls, errors, time and which versions served them (all versions)."""
        return self._gate.stats.of(self.name)

    def metric_rows(self) -> list[CallRow]:
        """Per (version, source): calls, errors and seconds (what exporters label)."""
        return self._gate.stats.rows(self.name)

    def successes(self) -> int:
        """Calls that returned without an error, over every source and version."""
        return sum(m.calls - m.errors for m in self.metrics().values())

    def __repr__(self) -> str:
        return f"<PluginHandle {self.name} {self.version} {self.state}>"
