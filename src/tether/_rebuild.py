"""Rebuilding validated pydantic models from their JSON dump, without validating again.

The discovery index cache keeps each validated manifest as the data of
``model_dump(mode="json", exclude_unset=True)`` and must turn it back into the same
:class:`~tether.Manifest` when a warm scan's plugin is used. Validating again costs
twice as much (the manifest's checks run in Python: names, versions, constraints,
durations, config schemas); ``model_construct`` skips them but costs ~10 us a model
(a manifest holds some fifteen). A
:func:`builder` does what ``model_construct`` does, planned once per class: copy the
defaults, lay the dump over them, turn JSON lists back into tuples and nested dicts
back into models, and set the same instance state as ``model_construct`` (and pydantic's
``__setstate__``) does: ``__dict__``, the fields set, no extra, no private values.

Only data that came out of a validated model may go in: the cache checks at store time
that rebuilding gives back an equal model with the same fields set at every level, and
trusts the file it reads back only when its digest matches (see ``tether._index_cache``).
Data of the wrong shape (an unknown or missing field, a list where a mapping belongs)
raises ``ValueError`` or ``TypeError``; the cache then reads the manifest file.

A model whose fields this module cannot rebuild (a list, a set, a union of models,
private attributes) raises ``TypeError`` from :func:`builder`; the cache then parses
such manifests every time rather than rebuild them wrongly.
"""

from __future__ import annotations

import functools
import hashlib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from pydantic import BaseModel

__all__ = ["builder", "schema_key"]

M = TypeVar("M", bound=BaseModel)
_Build = Callable[[Mapping[str, Any]], Any]
_Convert = Callable[[Any], Any]
_set = object.__setattr__


def builder(cls: type[M]) -> Callable[[Mapping[str, Any]], M]:
    """A function making an instance of ``cls`` from its ``exclude_unset`` JSON dump."""
    return cast("Callable[[Mapping[str, Any]], M]", _builder(cls))


@functools.cache
def _builder(cls: type[BaseModel]) -> _Build:  # noqa: C901 - the plan, then the hot path
    if cls.__private_attributes__:
        raise TypeError(f"{cls.__qualname__} has private attributes; it cannot be rebuilt")
    defaults: dict[str, Any] = {}  # in field order, which __dict__ keeps (and repr shows)
    factories: list[tuple[str, Callable[[], Any]]] = []
    converters: dict[str, _Convert] = {}
    for name, field in cls.model_fields.items():
        if field.default_factory is not None:
            factories.append((name, field.default_factory))  # type: ignore[arg-type]
        defaults[name] = field.default  # PydanticUndefined for a required field: always given
        convert = _converter(field.annotation)
        if convert is not None:
            converters[name] = convert
    required = frozenset(n for n, f in cls.model_fields.items() if f.is_required())
    known = frozenset(cls.model_fields)
    new = cls.__new__

    def build(data: Mapping[str, Any]) -> Any:  # noqa: ANN401 - an instance of cls
        given = data.keys()
        if not (given >= required and known.issuperset(given)):
            raise ValueError(f"fields {sorted(given)} do not make a {cls.__qualname__}")
        values = defaults.copy()
        values.update(data)
        for name, factory in factories:
            if name not in given:
                values[name] = factory()
        if converters:
            for name in converters.keys() & given:
                values[name] = converters[name](data[name])
        instance = new(cls)
        # The state pydantic's own model_construct and __setstate__ give an instance.
        _set(instance, "__dict__", values)
        _set(instance, "__pydantic_fields_set__", set(given))
        _set(instance, "__pydantic_extra__", None)
        _set(instance, "__pydantic_private__", None)
        return instance

    return build


def _is_model(annotation: object) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _converter(annotation: object) -> _Convert | None:
    """How a JSON value of a field becomes its Python value; ``None``: as it is."""
    if _is_model(annotation):
        return _mapping(_builder(annotation))
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:  # StrictStr and the like inside a tuple
        return _converter(arguments[0])
    if origin is None:
        if annotation in (list, set, frozenset, tuple, dict):
            raise TypeError(f"a bare {annotation} field cannot be rebuilt")
        return None  # str, int, float, bool, Any, Path (given, not dumped): as they are
    if origin is typing.Literal:
        return None
    return _container(annotation, origin, arguments)


def _container(
    annotation: object, origin: object, arguments: tuple[object, ...]
) -> _Convert | None:
    """For ``tuple[X, ...]``, ``dict[str, Model]``, ``X | None`` and ``bool | Model``
    (``None``: as it is)."""
    if origin is tuple and len(arguments) == 2 and arguments[1] is Ellipsis:  # noqa: PLR2004
        item = arguments[0]
        if _is_model(item):
            build = _builder(item)
            return lambda value: tuple([build(_checked(v)) for v in value])
        if _converter(item) is not None:
            raise TypeError(f"tuples of {item} cannot be rebuilt")
        return tuple
    if origin is dict and _is_model(arguments[1]):
        build = _builder(arguments[1])
        return lambda value: {key: build(_checked(v)) for key, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in arguments if a is not type(None)]
        if len(kinds) == 1 and len(arguments) == 2:  # noqa: PLR2004 - X | None
            convert = _converter(kinds[0])
            return None if convert is None else (lambda v: None if v is None else convert(v))
        return _scalar_or_model(annotation, arguments)
    raise TypeError(f"a field of type {annotation} cannot be rebuilt")


def _scalar_or_model(annotation: object, arguments: tuple[object, ...]) -> _Convert:
    """``bool | Model`` (scalars and one model): a JSON mapping is the model, anything
    else a scalar, as it is."""
    models = [a for a in arguments if _is_model(a)]
    scalars = [a for a in arguments if not _is_model(a)]
    if len(models) != 1 or any(_converter(a) is not None for a in scalars):
        raise TypeError(f"a field of type {annotation} cannot be rebuilt")
    build = _builder(models[0])
    return lambda value: build(value) if isinstance(value, dict) else value


def _mapping(build: _Build) -> _Convert:
    return lambda value: build(_checked(value))


def _checked(value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping, got {type(value).__name__}")
    return value


@functools.cache
def schema_key(cls: type[BaseModel]) -> str:
    """A digest of the fields of ``cls`` and of every model inside it (names, types,
    defaults): data dumped by a build whose models differ is not rebuilt."""
    seen: dict[str, list[tuple[str, str, str, bool]]] = {}
    pending = [cls]
    while pending:
        model = pending.pop()
        if model.__qualname__ in seen:
            continue
        seen[model.__qualname__] = [
            (name, repr(f.annotation), repr(f.default), f.default_factory is not None)
            for name, f in model.model_fields.items()
        ]
        pending += [m for f in model.model_fields.values() for m in _models_in(f.annotation)]
    text = repr(sorted(seen.items()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if _is_model(annotation):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models_in(a)]
