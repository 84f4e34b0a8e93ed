"""Sizes written the way operators write them: ``256MiB``, ``1GiB``, ``512MB``, ``4096`` (pure)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

__all__ = ["Bytes", "format_size", "parse_size"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(value: object) -> int:
    """Turn ``"256MiB"``, ``"1.5GB"`` or a number of bytes into a number of bytes.

    Raises ``ValueError`` naming the accepted units when the text is not a size.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"a size must be positive, got {value}")
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"not a size: {value!r} (write a number and a unit: B, KiB, MiB, GiB, KB, MB, GB, "
            "as in '256MiB' or '1GiB')"
        )
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"a size must be positive, got {value!r}")
    return size


def format_size(size: int) -> str:
    """``268435456`` -> ``256MiB``: the largest binary unit that divides it, else bytes."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


Bytes = Annotated[int, BeforeValidator(parse_size)]
"""A size field: ``256MiB`` or a number of bytes, stored as bytes."""
