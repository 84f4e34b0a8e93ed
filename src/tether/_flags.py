"""Which plugins an operator disabled: the enabled flags kept in the state tables.

A plugin disabled with ``disable_plugin`` (or ``tether plugins disable``) stays
disabled across restarts: the flag is written to the ``plugins`` table of the state
store (``tether._state_tables``) at once, and read back when the plugin loads. A write
that fails is remembered, and the observability hub writes it with its next snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tether._state_tables import PersistedFlag, PluginStateStore, read_enabled_flags
from tether.errors import TetherError

__all__ = ["EnabledFlags"]

log = logging.getLogger("tether")


class EnabledFlags:
    """The persisted flags of one manager's state store (``target()`` says where)."""

    def __init__(self, target: Callable[[], str]) -> None:
        self._target = target
        self._flags: dict[str, PersistedFlag] | None = None
        self._unsaved: set[str] = set()

    def _all(self) -> dict[str, PersistedFlag]:
        if self._flags is None:
            try:
                self._flags = read_enabled_flags(self._target())
            except TetherError as exc:
                log.warning("could not read which plugins are disabled: %s", exc)
                self._flags = {}
        return self._flags

    def get(self, name: str) -> PersistedFlag:
        """The flag the state store holds for ``name`` (enabled if none)."""
        return self._all().get(name, PersistedFlag(enabled=True))

    def switch(self, name: str, *, enabled: bool, reason: str | None) -> None:
        """Remember the switch, and write it through (or keep it for the next snapshot)."""
        flag = PersistedFlag(enabled, None if enabled else reason)
        self._all()[name] = flag
        try:
            with PluginStateStore(self._target()) as store:
                store.set_enabled(name, enabled, flag.reason)
        except TetherError as exc:
            self._unsaved.add(name)
            log.warning("could not save that plugin %s is %s: %s", name,
                        "enabled" if enabled else "disabled", exc)  # fmt: skip

    def take_unsaved(self) -> frozenset[str]:
        """The switches whose write failed (and forget them: the caller writes them)."""
        unsaved, self._unsaved = frozenset(self._unsaved), set()
        return unsaved
