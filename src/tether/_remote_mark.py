"""The mark of a callable that forwards to a process plugin's worker (pure).

Such a callable takes and returns only what the worker protocol carries, so a
mechanism or host that hands it host objects (a Starlette request) first asks
:func:`is_remote` and adapts them; ``tether.isolation`` marks what it makes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["is_remote", "mark_remote"]

F = TypeVar("F", bound=Callable[..., object])
_MARK = "__tether_remote__"


def mark_remote(fn: F) -> F:
    setattr(fn, _MARK, True)
    return fn


def is_remote(handler: object) -> bool:
    """Whether ``handler`` forwards to a process plugin's worker."""
    return getattr(handler, _MARK, False) is True
