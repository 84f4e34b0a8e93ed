"""Token parsing, kept in its own module to show relative imports inside a plugin."""

from __future__ import annotations

import base64
import binascii


def split_token(token: str) -> tuple[bytes, bytes] | None:
    """The payload and signature of ``payload.signature`` (both URL-safe base64), or None."""
    pieces = token.split(".")
    if len(pieces) != 2:  # noqa: PLR2004 - payload and signature
        return None
    try:
        decoded = [base64.urlsafe_b64decode(p.encode("ascii")) for p in pieces]
    except (ValueError, binascii.Error):
        return None
    # Reject anything that is not exactly the canonical encoding (trailing junk, no padding).
    if [base64.urlsafe_b64encode(d).decode() for d in decoded] != pieces:
        return None
    return decoded[0], decoded[1]
