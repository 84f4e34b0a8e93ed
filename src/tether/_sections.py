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
from dataclasses import dataclass

from pydantic import BaseModel

from tether._registry import NamedRegistry
from tether.errors import ConfigError, TetherError

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


class SectionRegistry(NamedRegistry[ConfigSection]):
    """The host sections one process knows, by name (entry points, then registrations)."""

    kind = ConfigSection
    group = ENTRY_POINT_GROUP
    label = "config section"
    log = log

    def _not_one(self, item: object) -> TetherError:
        return ConfigError(
            f"not a config section: {item!r}",
            hint="register a tether.ConfigSection(name=..., host=..., model=...)",
        )

    def _taken(self, known: ConfigSection, item: ConfigSection) -> TetherError:
        return ConfigError(
            f"two hosts claim the config section '{item.name}': {known.host} and {item.host}",
            hint="each top-level section belongs to one host; rename one of them",
        )

    def get(self, name: str) -> ConfigSection | None:
        """The section called ``name``, or ``None`` when no installed host claims it."""
        return self.find(name)


config_sections = SectionRegistry()
"""The process's registry: what :func:`tether.load_config` checks host sections against."""
