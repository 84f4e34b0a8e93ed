"""Config sections: the top-level sections of the framework config that hosts read.

tether reads its own sections (``plugins``, ``events``, ``reload``, ``state``,
``database``, ``cache``); every other top-level section belongs to a host, which
claims it with a :class:`ConfigSection`: the section's name, the host that reads it,
and a pydantic model of its keys (unknown keys are refused unless the model says
``extra="allow"``). When a config file is read, each host section is checked
against its model, and a section no host claims is an error. Hosts register
sections as data, in the spirit of :mod:`tether._contracts`:

- through the ``tether.config_sections`` entry-point group (``bench =
  "pkg.mod:SECTION"``), loaded only when a config has that section (or when every
  known section is listed, for a hint);
- or in code, before the config is read: ``tether.config_sections.register(section)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points

from pydantic import BaseModel

from tether.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "ConfigSection", "SectionRegistry", "config_sections"]

log = logging.getLogger("tether.config")

ENTRY_POINT_GROUP = "tether.config_sections"


@dataclass(frozen=True, slots=True)
class ConfigSection:
    """A top-level config section a host reads: ``name``, the ``host`` and its ``model``.

    The model validates the section's mapping as written (after ``${VAR}`` expansion,
    as plain strings); give it ``extra="forbid"`` so that a misspelt key is refused
    with a suggestion. ``description`` says what the section is for.
    """

    name: str
    host: str
    model: type[BaseModel]
    description: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.model.model_fields)


class SectionRegistry:
    """The host sections one process knows, by name (entry points, then registrations)."""

    def __init__(
        self, sections: Iterable[ConfigSection] = (), *, entry_points: bool = True
    ) -> None:
        self._sections: dict[str, ConfigSection] = {}
        self._use_entry_points = entry_points
        self._looked_up: set[str] = set()
        self._loaded_all = False
        self._lock = threading.Lock()
        for section in sections:
            self.register(section)

    def register(self, section: ConfigSection) -> None:
        """Accept ``section``; registering an equal one again does nothing."""
        if not isinstance(section, ConfigSection):
            raise ConfigError(
                f"not a config section: {section!r}",
                hint="register a tether.ConfigSection(name=..., host=..., model=...)",
            )
        with self._lock:
            known = self._sections.get(section.name)
            if known is not None and known != section:
                raise ConfigError(
                    f"two hosts claim the config section '{section.name}': {known.host} "
                    f"and {section.host}",
                    hint="each top-level section belongs to one host; rename one of them",
                )
            self._sections[section.name] = section

    def _from_entry_points(self, name: str | None) -> None:
        if not self._use_entry_points:
            return
        found = entry_points(group=ENTRY_POINT_GROUP)
        for point in found if name is None else found.select(name=name):
            try:
                section = point.load()
            except Exception as exc:
                log.warning("config section entry point %s (%s) failed to load: %s",
                            point.name, point.value, exc)  # fmt: skip
                continue
            if isinstance(section, ConfigSection) and section.name == point.name:
                self.register(section)
            else:
                log.warning("entry point %s (%s) is not a ConfigSection named '%s'",
                            point.name, point.value, point.name)  # fmt: skip

    def get(self, name: str) -> ConfigSection | None:
        """The section called ``name``, or ``None`` when no installed host claims it."""
        section = self._sections.get(name)
        if section is None and name not in self._looked_up:
            self._looked_up.add(name)
            self._from_entry_points(name)
            section = self._sections.get(name)
        return section

    def all(self) -> list[ConfigSection]:
        """Every known host section, entry points included, by name."""
        if not self._loaded_all:
            self._from_entry_points(None)
            self._loaded_all = True
        return sorted(self._sections.values(), key=lambda s: s.name)


config_sections = SectionRegistry()
"""The process's registry: what :func:`tether.load_config` checks host sections against."""
