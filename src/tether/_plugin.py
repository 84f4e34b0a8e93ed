"""``tether.Plugin``: an optional base class with no-op lifecycle methods."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from tether.types import PluginContext

__all__ = ["Plugin"]


class Plugin:
    """Subclass and override what you need; every method may also be ``async def``.

    ``config_schema`` adds config keys to those the manifest declares (the
    manifest wins on a clash), in the manifest's shape::

        config_schema = {"timeout": {"type": "duration", "default": "30s"}}

    ``initialize`` stores the context as ``self.ctx``; call ``super().initialize(ctx)``
    when you override it, or keep the context yourself.
    """

    config_schema: ClassVar[Mapping[str, Mapping[str, object]]] = {}
    ctx: PluginContext

    def initialize(self, ctx: PluginContext) -> None:
        self.ctx = ctx

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def cleanup(self) -> None:
        return None

    def on_config_change(self, config: Mapping[str, object]) -> None:  # noqa: ARG002
        return None
