"""A registry of named things hosts provide: given in code, or found through an
entry-point group when first asked for (contracts, config sections).

One thing per name: registering an equal one again does nothing, a different one
under a taken name is an error. An entry point that fails to load, or loads
something else than it names, is logged and skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import ClassVar, Generic, Protocol, TypeVar, cast

from tether.errors import TetherError

__all__ = ["NamedRegistry"]


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


class NamedRegistry(Generic[T]):
    """What a subclass says: the class of its things, their entry-point group, a label
    for log lines and its logger, and the two errors (not one of them; a name taken)."""

    kind: ClassVar[type]
    group: ClassVar[str]
    label: ClassVar[str]
    log: ClassVar[logging.Logger]

    def __init__(self, items: Iterable[T] = (), *, entry_points: bool = True) -> None:
        self._items: dict[str, T] = {}
        self._use_entry_points = entry_points
        self._looked_up: set[str] = set()
        self._loaded_all = False
        self._lock = threading.Lock()
        for item in items:
            self.register(item)

    def _not_one(self, item: object) -> TetherError:
        raise NotImplementedError

    def _taken(self, known: T, item: T) -> TetherError:
        raise NotImplementedError

    def register(self, item: T) -> None:
        """Accept ``item``; registering an equal one again does nothing."""
        if not isinstance(item, self.kind):
            raise self._not_one(item)
        with self._lock:
            known = self._items.get(item.name)
            if known is not None and known != item:
                raise self._taken(known, item)
            self._items[item.name] = item

    def _from_entry_points(self, name: str | None) -> None:
        if not self._use_entry_points:
            return
        found = entry_points(group=self.group)
        for point in found if name is None else found.select(name=name):
            try:
                item = point.load()
            except Exception as exc:
                self.log.warning("%s entry point %s (%s) failed to load: %s", self.label,
                                 point.name, point.value, exc)  # fmt: skip
                continue
            if isinstance(item, self.kind) and getattr(item, "name", None) == point.name:
                self.register(cast("T", item))
            else:
                self.log.warning("entry point %s (%s) is not a %s named '%s'", point.name,
                                 point.value, self.kind.__name__, point.name)  # fmt: skip

    def find(self, name: str) -> T | None:
        """The thing called ``name``, its entry points asked once, or ``None``."""
        item = self._items.get(name)
        if item is None and name not in self._looked_up:
            self._looked_up.add(name)
            self._from_entry_points(name)
            item = self._items.get(name)
        return item

    def all(self) -> list[T]:
        """Every known thing, entry points included, by name."""
        if not self._loaded_all:
            self._from_entry_points(None)
            self._loaded_all = True
        return sorted(self._items.values(), key=lambda item: item.name)
