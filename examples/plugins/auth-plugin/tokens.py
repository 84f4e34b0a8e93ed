"""Token parsing, kept in its own module to show relative imports inside a plugin."""

from __future__ import annotations

import base64
import binascii


def split_token(token: str) -> tuple[bytes, bytes] | None:
    try:
        payload, signature = (base64.urlsafe_b64decode(p) for p in token.split("."))
    except (ValueError, binascii.Error):
        return None
    return payload, signature
