"""An admin request's JSON body, read within bounds: size, time, media type, shape.

Every way a body can be wrong answers 4xx in the error shape, never 500 and never a
wait without end:

- over ``max_size`` bytes (1 MiB): 413, by ``Content-Length`` before reading anything,
  or as soon as a chunked body passes the limit;
- not all there within ``timeout`` seconds (30): 408; the client gone before its end: 400;
- a ``Content-Type`` that is not JSON: 415 (no ``Content-Type`` is read as JSON);
- not UTF-8, not JSON, ``NaN``/``Infinity``, a key twice, nested deeper than
  ``MAX_DEPTH``, an integer outside 64 bits, a float out of range, a lone surrogate
  (``"\\ud800"``), or JSON that is not an object: 400.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request

from tether.admin._errors import ApiError

__all__ = [
    "BODY_TIMEOUT",
    "MAX_BODY_SIZE",
    "MAX_DEPTH",
    "BodyLimits",
    "check_declared_size",
    "parse_object",
    "read_object",
]

MAX_BODY_SIZE = 1 << 20
"""The largest request body the admin API reads, in bytes (1 MiB)."""
BODY_TIMEOUT = 30.0
"""Seconds a client has to send the whole body once the handler asks for it."""
MAX_DEPTH = 32
"""How deep objects and arrays may nest in a body (the body itself is level 1)."""
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_INT_CHARS = len(str(_INT_MIN))  # a longer literal is out of range whatever it says
_LIMITS_KEY = "tether.admin.body_limits"
_JSON_HINT = "send a JSON object encoded as UTF-8, with 'Content-Type: application/json'"


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How much, and how long, the admin API reads of a request body."""

    max_size: int = MAX_BODY_SIZE
    timeout: float = BODY_TIMEOUT

    def __post_init__(self) -> None:
        if self.max_size < 0 or not self.timeout > 0:
            raise ValueError(
                f"body limits must be a size >= 0 and a timeout > 0, not "
                f"{self.max_size!r} bytes and {self.timeout!r} seconds"
            )

    def attach(self, request: Request) -> None:
        """Make these the limits ``read_object`` applies to ``request``."""
        request.scope[_LIMITS_KEY] = self


def _limits_of(request: Request) -> BodyLimits:
    found = request.scope.get(_LIMITS_KEY)
    return found if isinstance(found, BodyLimits) else BodyLimits()


def _too_large(limits: BodyLimits, size: str) -> ApiError:
    return ApiError(
        413,
        "PayloadTooLarge",
        f"the request body is {size}: the admin API reads at most {limits.max_size} bytes",
        hint="admin requests are small JSON objects; the limit is create_admin_app's max_body_size",
    )  # no "Connection: close": closing on unread bytes resets, and the client may lose this


def check_declared_size(request: Request, limits: BodyLimits) -> None:
    """Refuse a request whose ``Content-Length`` is over the limit, before reading it."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit() or not declared.isascii():
        raise ApiError(
            400,
            "BadRequest",
            f"the Content-Length header is not a number of bytes: {declared[:40]!r}",
        )
    if len(declared) > len(str(limits.max_size)) or int(declared) > limits.max_size:
        raise _too_large(limits, f"{declared[:40]} bytes long")


def _check_media_type(request: Request) -> None:
    given = request.headers.get("content-type")
    if given is None:
        return
    media, *params = (part.strip().lower() for part in given.split(";"))
    charsets = [p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")]
    is_json = media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
    if is_json and all(c in {"utf-8", "utf8"} for c in charsets):
        return
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the request body is {given[:80]!r}: the admin API reads JSON (UTF-8) only",
        hint=_JSON_HINT + " (curl: -H 'Content-Type: application/json')",
    )


def _has_body(request: Request) -> bool:
    declared = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or declared not in {None, "0"}


async def _read(request: Request, limits: BodyLimits) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_size:
                    raise _too_large(limits, f"over {limits.max_size} bytes long")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408,
            "RequestTimeout",
            f"the request body did not arrive within {limits.timeout:g} seconds "
            f"({size} bytes came)",
            hint="send the whole body, as long as its Content-Length says",
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:
        raise ApiError(
            400, "BadRequest", f"the client went away after {size} bytes of the body"
        ) from None
    return b"".join(chunks)


async def read_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object (``{}`` when there is none), within its limits."""
    limits = _limits_of(request)
    check_declared_size(request, limits)
    if _has_body(request):
        _check_media_type(request)
    return parse_object(await _read(request, limits))


# --------------------------------------------------------------------------- parsing


def _bad(message: str) -> ApiError:
    return ApiError(400, "BadRequest", f"the request body {message}", hint=_JSON_HINT)


def _integer(literal: str) -> int:
    value = int(literal) if len(literal) <= _INT_CHARS else None
    if value is None or not _INT_MIN <= value <= _INT_MAX:
        digits = len(literal.lstrip("-"))
        raise _bad(
            f"has an integer of {digits} digits: integers must fit in 64 bits "
            f"({_INT_MIN} to {_INT_MAX})"
        )
    return value


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _bad(f"has a number out of range: {literal[:40]}")
    return value


def _constant(literal: str) -> object:
    raise _bad(f"has {literal}, which is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _bad(f"has the key {key[:80]!r} twice in one object")
        found[key] = value
    return found


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _bad(
            f"has a lone surrogate (\\u{ord(text[exc.start]):04x}) in a string, which is not text"
        ) from None


def _check_shape(data: object) -> None:
    """Depth and text of a parsed body, walked without recursion."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise _bad(f"nests objects and arrays deeper than {MAX_DEPTH} levels")
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise _bad(f"nests objects and arrays deeper than {MAX_DEPTH} levels")
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def parse_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object: ``{}`` when it is empty, else an ``ApiError`` (400)."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(f"is not UTF-8: byte {exc.start} is 0x{raw[exc.start]:02x}") from None
    try:
        data = json.loads(
            text,
            parse_int=_integer,
            parse_float=_float,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except json.JSONDecodeError as exc:
        raise _bad(f"is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise _bad(f"nests objects and arrays deeper than {MAX_DEPTH} levels") from None
    if not isinstance(data, dict):
        raise _bad(f"must be a JSON object, not {_kind(data)}")
    _check_shape(data)
    return data


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
