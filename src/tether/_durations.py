"""Durations written the way operators write them: ``30s``, ``5m``, ``1h30m``, ``250ms`` (pure)."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator

__all__ = ["Seconds", "format_duration", "parse_duration"]

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")


def parse_duration(value: object) -> timedelta:
    """Turn ``"1h30m"``, ``"250ms"``, ``"0"`` or a number of seconds into a timedelta.

    Raises ``ValueError`` naming the accepted units when the text is not a duration.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return _seconds(value, value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a duration: {value!r}")
    return _parse_text(value)


def _parse_text(value: str) -> timedelta:
    text = value.strip()
    if text == "0":
        return timedelta(0)
    position = 0
    seconds = 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        raise ValueError(
            f"not a duration: {value!r} (write a number and a unit: ns, us, ms, s, m, h, d, "
            "as in '30s', '250ms' or '1h30m')"
        )
    return _seconds(seconds, value)


def _seconds(seconds: float, original: object) -> timedelta:
    if not math.isfinite(seconds):
        raise ValueError(f"duration out of range: {original!r}")
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise ValueError(f"duration out of range: {original!r}") from None


def format_duration(delta: timedelta) -> str:
    """The shortest text ``parse_duration`` reads back to the same value (to the microsecond)."""
    micros = round(delta.total_seconds() * 1_000_000)
    if micros == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{unit}")
    if micros:
        if micros % 1000 == 0:
            parts.append(f"{micros // 1000}ms")
        else:
            parts.append(f"{micros}us")
    return "".join(parts)


def _duration_seconds(value: object) -> float:
    return parse_duration(value).total_seconds()


Seconds = Annotated[float, BeforeValidator(_duration_seconds)]
"""A duration in a manifest or config (``30s``, ``5m``, a number of seconds), read as seconds."""
