"""Text for exceptions that plugins raise, which may not describe themselves safely.

A plugin's exception is the plugin's object: its ``__str__`` may raise, return
something that is not a string, or run long. Everything the host prints, logs, stores
or answers about a plugin's error goes through :func:`error_text` (its message) or
:func:`error_line` (``Type: message``), which never raise.
"""

from __future__ import annotations

__all__ = ["error_line", "error_text"]

_LIMIT = 2000  # characters of a message kept; the rest is cut with a note


def error_text(error: BaseException) -> str:
    """``str(error)``, or a stand-in when that raises or is not a string; cut when long."""
    try:
        text = str(error)
    except Exception:  # whatever its __str__ raises, the host carries on
        return f"<{_type_name(error)} whose str() failed>"
    if not isinstance(text, str):  # pragma: no cover - str() always returns a str
        return f"<{_type_name(error)}>"
    if len(text) > _LIMIT:
        return f"{text[:_LIMIT]}... ({len(text) - _LIMIT} more characters)"
    return text


def error_line(error: BaseException) -> str:
    """``Type: message`` (just the type when the message is empty)."""
    text = error_text(error)
    name = _type_name(error)
    return f"{name}: {text}" if text else name


def _type_name(error: BaseException) -> str:
    name = getattr(type(error), "__name__", None)
    return name if isinstance(name, str) else "exception"
