"""The click parameter types the commands share: what an option's text may be.

Each refuses nonsense as a usage error (exit 2, ``Invalid value for '--OPTION': ...``)
before a command does anything: a duration that is negative, not a number or not
finite; an empty text or path where empty would silently mean "not given"; a control
character in a token; an admin URL that is not ``http(s)://HOST[:PORT]``.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import click

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_NAME",
    "MAX_SECONDS",
    "AdminURL",
    "NonEmptyPath",
    "PluginName",
    "Seconds",
    "Text",
    "retries_option",
]

if TYPE_CHECKING:  # click 8.5 types its parameter types; earlier versions are not generic
    _FloatType = click.ParamType[float, object]
    _TextType = click.ParamType[str, object]
    _PathType = click.Path[Path]
else:
    _FloatType = _TextType = click.ParamType
    _PathType = click.Path

MAX_SECONDS = 86_400.0
"""The longest duration an option takes: one day."""


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)  # noqa: PLR2004 - C0 and DEL


def _has_surrogate(text: str) -> bool:
    """Whether ``text`` holds bytes the locale could not decode (Python's surrogateescape)."""
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)  # noqa: PLR2004 - the surrogates


class Seconds(_FloatType):
    """A duration in seconds: a number (``10``, ``2.5``) or a duration (``30s``, ``1m30s``),
    finite, above zero and at most :data:`MAX_SECONDS`."""

    name = "seconds"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:  # noqa: ARG002
        return "SECONDS"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            seconds = self._read(str(value), param, ctx)
        if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_SECONDS:
            self.fail(
                f"{value!r} is out of range: give a number of seconds above 0 and at most "
                f"{MAX_SECONDS:g} (one day), or a duration such as 30s or 1m30s",
                param,
                ctx,
            )
        return seconds

    def _read(self, text: str, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            return float(text)
        except ValueError:
            pass
        from tether import parse_duration  # not at import: pydantic comes with it

        try:
            return parse_duration(text).total_seconds()
        except ValueError:
            self.fail(
                f"{text!r} is not a duration: give a number of seconds (10, 2.5) or a "
                "duration such as 30s, 500ms or 1m30s",
                param,
                ctx,
            )


class Text(_TextType):
    """Text that is not empty and holds no control characters (a newline in a token
    would break the HTTP header it goes into)."""

    name = "text"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        if not text.strip():
            self.fail("must not be empty", param, ctx)
        if _has_control(text) or _has_surrogate(text):
            self.fail(
                "holds a control character (a newline, a tab...) or bytes that are not valid "
                "Unicode",  # the value itself is not shown: it may be a secret
                param,
                ctx,
            )
        return text


class NonEmptyPath(_PathType):
    """:class:`click.Path`, refusing the empty string (which would mean the working
    directory, usually an unset shell variable)."""

    def convert(
        self,
        value: str | os.PathLike[str],
        param: click.Parameter | None,
        ctx: click.Context | None,
    ) -> Path:
        if not str(value).strip():
            self.fail("must not be empty: give a path", param, ctx)
        return super().convert(value, param, ctx)


class AdminURL(_TextType):
    """A running server's base URL: ``http://HOST[:PORT]`` or ``https://...``."""

    name = "url"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:  # noqa: ARG002
        return "URL"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        example = "give the server's address, e.g. http://127.0.0.1:8080"
        if not text.strip():
            self.fail(f"must not be empty: {example}", param, ctx)
        if _has_control(text) or _has_surrogate(text) or " " in text:
            self.fail(f"{text!r} holds a space or a control character: {example}", param, ctx)
        try:
            parts = urllib.parse.urlsplit(text)
            port = parts.port
        except ValueError as exc:
            self.fail(f"{text!r} is not a URL ({exc}): {example}", param, ctx)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            self.fail(f"{text!r} is not an http(s) URL with a host: {example}", param, ctx)
        if port == 0:
            self.fail(f"{text!r} has port 0, which no server listens on: {example}", param, ctx)
        return text


MAX_NAME = 128
"""The longest plugin name an argument takes (manifests allow 64 characters)."""


class PluginName(_TextType):
    """A plugin's name: not empty, at most :data:`MAX_NAME` characters, no whitespace,
    control characters, ``/`` or text that is not valid Unicode."""

    name = "name"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:  # noqa: ARG002
        return "NAME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        if not text:
            self.fail("must not be empty: give a plugin's name", param, ctx)
        shown = repr(text) if len(text) <= MAX_NAME else repr(text[:MAX_NAME]) + "…"
        if len(text) > MAX_NAME:
            self.fail(f"{shown} is longer than a plugin name can be", param, ctx)
        if _has_control(text) or any(c.isspace() or c == "/" for c in text):
            self.fail(f"{shown} is not a plugin name (it holds a space, '/' or a control "
                      "character)", param, ctx)  # fmt: skip
        if _has_surrogate(text):
            self.fail(f"{shown} is not valid Unicode (bytes the locale cannot decode)", param, ctx)
        return text


MAX_ATTEMPTS = 100
"""The most tries ``--retries`` gives a plugin (as ``retries.attempts``)."""

retries_option = click.option(
    "--retries",
    "retry_attempts",
    type=click.IntRange(1, MAX_ATTEMPTS),
    metavar="N",
    help="Try each plugin up to N times, over its entry's retries.attempts; the wait "
    "doubles from the entry's backoff, else 1s (default: each entry's retries, else 1 try).",
)
