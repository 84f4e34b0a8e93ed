"""Whose error is it: an exception is counted against the innermost plugin it leaves.

A service's error passing up through its caller's hook is the service's; a refusal at
a gate (``PluginUnavailableError``) is nobody's failure; the host's error policy says
which exceptions are answers. The seam (``tether._seam``) calls :func:`note_error` on
every exception that leaves a plugin; :func:`blame` tells hosts afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Protocol

from tether._chain import CallChain
from tether._gate import Door
from tether.errors import CallInputError, PluginUnavailableError


class Attributed(Protocol):
    """What attribution reads of a seam entry: whose it is, where from, which chain."""

    @property
    def plugin(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def door(self) -> Door: ...
    @property
    def chain(self) -> CallChain: ...


__all__ = ["blame", "counts_as_seam", "fail", "is_seam", "note_error", "pass_through",
           "record_failure"]  # fmt: skip

_log = logging.getLogger("tether.calls")


def _raise_site(error: BaseException) -> object:
    """The innermost traceback entry of ``error``: where it was first raised."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


_SEAM_FILES = ("<tether seam", "<tether hook chain", "<tether async hook chain")
_SEAM_CODES: set[CodeType] = set()


def counts_as_seam(fn: Callable[..., object]) -> None:
    """Declare a hand-written dispatcher that counts its callees' errors itself (the hook
    registry's loop) a seam, like the generated ones."""
    _SEAM_CODES.add(fn.__code__)


def _encloses_seam(frame: FrameType | None) -> bool:
    """Whether a seam's frame is further up the stack than ``frame`` (on this thread, or
    up this coroutine's await chain while it runs)."""
    frame = frame.f_back if frame is not None else None
    while frame is not None:
        code = frame.f_code
        if code in _SEAM_CODES or code.co_filename.startswith(_SEAM_FILES):
            return True
        frame = frame.f_back
    return False


# Exceptions that refuse attributes (``__slots__``, a ``__setattr__`` of their own) keep
# their marks here instead: (the exception, its raise site or None, its plugin). Bounded:
# an exception swallowed between seams is never cleared by an outermost one.
_SIDE: dict[int, tuple[BaseException, object, str | None]] = {}
_SIDE_LIMIT = 256


def _side(error: BaseException) -> tuple[BaseException, object, str | None] | None:
    found = _SIDE.get(id(error))
    return found if found is not None and found[0] is error else None


def _get(error: BaseException, name: str) -> object:
    try:
        return getattr(error, name, None)
    except Exception:  # a property of the exception's own that raises
        return None


def _set(error: BaseException, name: str, value: object) -> bool:
    try:
        setattr(error, name, value)
    except Exception:
        return False
    return True


def _seen_at(error: BaseException) -> object:
    mark = _get(error, "_tether_seen_at")
    if mark is None and (side := _side(error)) is not None:
        return side[1]
    return mark


def _keep_aside(error: BaseException, site: object, plugin: str | None) -> None:
    if len(_SIDE) >= _SIDE_LIMIT:
        del _SIDE[next(iter(_SIDE))]  # the oldest
    _SIDE[id(error)] = (error, site, plugin)


def note_error(entry: Attributed, error: BaseException, frame: FrameType | None = None) -> bool:
    """An exception is leaving ``entry``'s plugin: True if it is that plugin's failure.

    An exception is its failure when this is the first seam it leaves (the innermost
    plugin: a service's error passing up through its caller's hook is the service's),
    it is not a refusal at a gate (``PluginUnavailableError``: the unavailable plugin
    is to blame, and nobody failed), and the host's error policy does not call it an
    answer. ``tether.blame(exc)`` names the plugin afterwards.

    How "first" is known: the first seam marks the exception with where it was raised;
    seams further up see the mark and pass it on; the outermost seam (no seam above it
    on the stack) clears the mark as the exception leaves the seams, so the same
    exception object raised again later (a prepared exception) counts again.
    """
    frame = frame if frame is not None else sys._getframe(1)  # noqa: SLF001 - the seam's own frame
    site = _raise_site(error)
    first = site is None or _seen_at(error) is not site
    side = _side(error)
    plugin = side[2] if side is not None else None
    if first:
        plugin = error.plugin if isinstance(error, PluginUnavailableError) else entry.plugin
        if not _set(error, "_tether_plugin", plugin):
            side = (error, None, plugin)
    if _encloses_seam(frame):
        if side is not None or not _set(error, "_tether_seen_at", site):
            _keep_aside(error, site, plugin)
    else:  # the outermost seam: the marks go (the plugin stays, for blame)
        with contextlib.suppress(Exception):
            if _get(error, "_tether_seen_at") is not None:
                delattr(error, "_tether_seen_at")  # the seam's own mark
        if side is not None:
            _keep_aside(error, None, plugin)
    return (
        first
        and not isinstance(error, PluginUnavailableError | CallInputError)
        and entry.chain.policy.is_failure(error)
    )


def pass_through(error: BaseException) -> None:
    """Mark an error raised by host code between seams (a host's endpoint under plugin
    middleware) so the seams it passes up through do not count it."""
    site = _raise_site(error)
    if not _set(error, "_tether_seen_at", site):
        _keep_aside(error, site, None)


def is_seam(fn: Callable[..., object]) -> bool:
    """Whether ``fn`` is a seam's generated entry function."""
    code = getattr(fn, "__code__", None)
    return code is not None and code.co_filename.startswith(_SEAM_FILES)


def blame(error: BaseException) -> str | None:
    """The plugin ``error`` was raised in (the innermost plugin it left), if any; for a
    refusal at a gate, the plugin that refused."""
    plugin = _get(error, "_tether_plugin")
    if isinstance(plugin, str):
        return plugin
    side = _side(error)
    if side is not None and side[2] is not None:
        return side[2]
    if isinstance(error, PluginUnavailableError):
        return error.plugin
    return None


def record_failure(entry: Attributed, error: BaseException) -> None:
    """Count a failure against the entry's plugin (the recovery link)."""
    try:
        entry.door.gate.record_error(error, source=entry.source)
    except Exception:
        _log.exception("plugin '%s': an error listener failed on a %s error", entry.plugin,
                       entry.source)  # fmt: skip


def fail(entry: Attributed, error: BaseException, frame: FrameType | None = None) -> bool:
    """What every seam does with an error leaving a plugin: note it, and count it if it is
    the plugin's failure (the recovery link). True if it was counted."""
    if note_error(entry, error, frame if frame is not None else sys._getframe(1)):  # noqa: SLF001
        record_failure(entry, error)
        return True
    return False
