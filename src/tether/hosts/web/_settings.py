"""The ``serve:`` section of the framework config: where ``tether serve`` listens.

::

    serve:
      host: 127.0.0.1          # the address to listen on (loopback by default)
      port: 8080               # 0: any free port
      graceful_timeout: 30s    # how long stopping waits for requests in flight

Every key is optional; ``tether serve``'s options of the same names win over the
file. The section is claimed by :data:`SERVE_CONFIG_SECTION` (the
``tether.config_sections`` entry points), so an unknown key in it is refused when the
config is read.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

from tether import ConfigSection, TetherConfig, parse_duration

__all__ = [
    "DEFAULT_GRACEFUL_TIMEOUT",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "SERVE_CONFIG_SECTION",
    "ServeSection",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_GRACEFUL_TIMEOUT = 30.0


def _port(value: object) -> object:
    """A port written as a number, or as the digits a ``${PORT}`` gives."""
    if isinstance(value, bool):
        raise ValueError(f"must be a port number from 0 to 65535, got {value!r}")  # noqa: TRY004 - for pydantic
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _seconds(value: object) -> float:
    """A duration (``30s``) or a number of seconds."""
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return float(value)
    return parse_duration(value).total_seconds()


class ServeSection(BaseModel):
    """``serve:``, as ``tether serve`` reads it (the options of the same names win)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: StrictStr = DEFAULT_HOST
    port: Annotated[int, BeforeValidator(_port), Field(ge=0, le=65535, strict=True)] = DEFAULT_PORT
    graceful_timeout: Annotated[float, BeforeValidator(_seconds), Field(gt=0)] = (
        DEFAULT_GRACEFUL_TIMEOUT
    )

    @classmethod
    def of(cls, config: TetherConfig) -> ServeSection:
        """The config's ``serve:`` section (checked when the file was read)."""
        return cls.model_validate(config.section("serve"))


SERVE_CONFIG_SECTION = ConfigSection(
    "serve", "tether serve", ServeSection, "where tether serve listens, and how long it drains"
)
"""The ``serve:`` section, claimed through the ``tether.config_sections`` entry points."""
