"""Views that hand a plugin a capability without handing it a way back to the host.

A plugin receives objects: its context, its storage, a router, service proxies,
registration handles. Each of these is a *sealed view*: an instance with no
attributes of its own (``__slots__`` holds only ``__weakref__``), whose methods find
the host-side object they stand for in a table private to this module. So no chain
of attribute access that starts at something a plugin holds (public or underscored
names, ``__dict__``, ``__self__``, ``__wrapped__``, closure cells, defaults) leads
to the runtime, a registry, a gate or another plugin's objects.

This is a boundary against reaching in by accident or by the obvious paths, not a
sandbox: code in the same process can import tether's private modules, walk
``__globals__`` or the garbage collector's referrers, and reach anything.
``isolation: process`` is the boundary for code you do not trust.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, NoReturn, Protocol, SupportsIndex

__all__ = ["Sealed", "inner", "protocol_members", "seal", "view"]

_INNER: dict[int, object] = {}
_REFS: dict[int, weakref.ref[Sealed]] = {}  # keep the weak references (and callbacks) alive


class _SealedClass(type):
    """The metaclass of sealed views: their classes are shared by every plugin, so
    nobody may add, replace or delete their attributes (the host builds them complete;
    a registry that must set one later does so with ``type.__setattr__``)."""

    def __setattr__(cls, name: str, value: object) -> None:
        raise AttributeError(f"{cls.__name__} is read-only")

    def __delattr__(cls, name: str) -> None:
        raise AttributeError(f"{cls.__name__} is read-only")


class Sealed(metaclass=_SealedClass):
    """Base of every object handed to plugins whose state lives on the host side."""

    __slots__ = ("__weakref__",)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    # A copy would have no host side (its methods would fail with a bare KeyError), and
    # a pickle could not bring one back: both are refused, by name.
    def __copy__(self) -> NoReturn:
        raise _uncopiable(self)

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise _uncopiable(self)

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise _uncopiable(self)


def _uncopiable(outer: Sealed) -> TypeError:
    return TypeError(
        f"{type(outer).__name__} cannot be copied or pickled: a plugin context, and every "
        "view it hands out, stands for host-side state a copy would not have; keep the "
        "reference, or copy the data you read from it"
    )


def _forget(key: int, _ref: object) -> None:
    _INNER.pop(key, None)
    _REFS.pop(key, None)


def seal(outer: Sealed, host_side: object) -> None:
    """Make ``host_side`` what ``outer``'s methods work on; forgotten when ``outer`` dies.

    A plain weak reference with a callback that holds only the key (not a
    ``weakref.finalize``, whose class-wide registry a plugin could reach through
    ``outer.__weakref__`` and walk to every other view).
    """
    key = id(outer)
    _INNER[key] = host_side
    _REFS[key] = weakref.ref(outer, functools.partial(_forget, key))


def inner(outer: Sealed) -> object:
    """The host-side object behind a sealed view."""
    return _INNER[id(outer)]


def protocol_members(protocol: type) -> Iterator[tuple[str, bool]]:
    """``(name, is_property)`` of each public member a Protocol class declares."""
    seen: set[str] = set()
    for klass in protocol.__mro__:
        if klass in {object, Protocol, Generic} or klass.__module__ == "typing":
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            yield name, isinstance(value, property)


def _forwarder(name: str, wrap: type | None) -> Callable[..., object]:
    def method(self: Sealed, *args: object, **kwargs: object) -> object:
        result = getattr(_INNER[id(self)], name)(*args, **kwargs)
        return view(result, wrap) if wrap is not None and result is not None else result

    method.__name__ = method.__qualname__ = name
    return method


def _reader(name: str) -> property:
    def read(self: Sealed) -> object:
        return getattr(_INNER[id(self)], name)

    read.__name__ = name
    return property(read)


@functools.cache
def _view_class(protocol: type, wraps: tuple[tuple[str, type], ...]) -> type[Sealed]:
    wrapped = dict(wraps)
    members: dict[str, object] = {"__slots__": ()}
    for name, is_property in protocol_members(protocol):
        members[name] = _reader(name) if is_property else _forwarder(name, wrapped.get(name))
    members["__repr__"] = lambda self: f"<{protocol.__name__} of {_INNER[id(self)]!r}>"
    return type(f"{protocol.__name__}View", (Sealed,), members)


def view(host_side: object, protocol: type, *, wraps: Mapping[str, type] | None = None) -> Sealed:
    """A sealed view of ``host_side`` offering exactly ``protocol``'s members.

    ``wraps`` names methods whose results are views themselves (``{"group": Router}``).
    The caller casts the result to ``protocol`` (a Protocol is not a concrete type).
    """
    if isinstance(host_side, Sealed):
        return host_side
    klass = _view_class(protocol, tuple(sorted((wraps or {}).items())))
    outer = klass()
    seal(outer, host_side)
    return outer
