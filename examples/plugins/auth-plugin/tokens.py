"""JSON Web Tokens signed with HS256 (RFC 7519, RFC 7515), with the standard library only.

A token is ``base64url(header) . base64url(claims) . base64url(signature)``, without
padding; the signature is HMAC-SHA256 over the first two parts. Kept in its own module
to show relative imports inside a plugin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

ALGORITHM = "HS256"


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes | None:
    """The bytes of an unpadded base64url segment; None unless ``text`` is canonical."""
    try:
        data = base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        return None
    return data if _encode(data) == text else None  # no junk, no alternative spellings


def _sign(key: bytes, signing_input: str) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def _json(data: dict[str, object]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def encode(
    claims: dict[str, object], key: bytes, *, header: dict[str, object] | None = None
) -> str:
    """Sign ``claims``; ``header`` adds header parameters to ``alg`` and ``typ``."""
    head = {**(header or {}), "alg": ALGORITHM, "typ": "JWT"}
    signing_input = f"{_encode(_json(head))}.{_encode(_json(claims))}"
    return f"{signing_input}.{_encode(_sign(key, signing_input))}"


def decode(token: str, key: bytes) -> tuple[dict[str, object], dict[str, object]] | None:
    """The header and claims of a token signed with ``key`` using HS256, else None.

    Only the signature and the algorithm are checked here; expiry is the caller's.
    """
    parts = token.split(".")
    decoded = [_decode(part) for part in parts]
    if len(parts) != 3 or None in decoded:  # noqa: PLR2004 - header, claims, signature
        return None
    raw_header, raw_claims, signature = (part or b"" for part in decoded)
    if not hmac.compare_digest(signature, _sign(key, f"{parts[0]}.{parts[1]}")):
        return None
    header, claims = _object(raw_header), _object(raw_claims)
    if header is None or claims is None or header.get("alg") != ALGORITHM:
        return None  # never "none", never another algorithm
    return header, claims


def _object(raw: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
