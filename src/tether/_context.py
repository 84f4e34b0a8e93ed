"""``PluginContext``: the one object through which a plugin reaches the framework.

This is the minimal context (own config, logger, permissions). Services, hooks,
events, storage and middleware arrive with later work; everything a plugin
registers through its context is released when the plugin unloads.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping

from tether._manifest import Manifest

__all__ = ["PluginContext"]


class PluginContext:
    """Capabilities handed to one plugin in ``initialize(ctx)``."""

    def __init__(
        self,
        *,
        manifest: Manifest,
        config: Mapping[str, object],
        permissions: frozenset[str],
        logger: logging.Logger | None = None,
    ) -> None:
        self._manifest = manifest
        self._config = dict(config)
        self._permissions = permissions
        self._logger = logger or logging.getLogger(f"tether.plugin.{manifest.name}")
        self._releases: list[Callable[[], None]] = []

    @property
    def name(self) -> str:
        return self._manifest.name

    @property
    def version(self) -> str:
        return self._manifest.version

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def logger(self) -> logging.Logger:
        """A logger named ``tether.plugin.<name>``; always available."""
        return self._logger

    @property
    def plugin_config(self) -> dict[str, object]:
        """This plugin's own config (defaults applied, durations parsed), as a copy."""
        return copy.deepcopy(self._config)

    @property
    def permissions(self) -> frozenset[str]:
        return self._permissions

    def has_permission(self, permission: str) -> bool:
        return permission in self._permissions

    def on_release(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the plugin unloads (last registered, first run)."""
        self._releases.append(callback)

    def release(self) -> list[BaseException]:
        """Undo everything registered through this context; return what failed."""
        failures: list[BaseException] = []
        while self._releases:
            callback = self._releases.pop()
            try:
                callback()
            except Exception as exc:
                failures.append(exc)
        return failures
