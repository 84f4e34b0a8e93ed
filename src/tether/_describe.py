"""Text for exceptions that plugins raise, which may not describe themselves safely.

A plugin's exception is the plugin's object: its ``__str__`` may raise, return
something that is not a string, or run long. Everything the host prints, logs, stores
or answers about a plugin's error goes through :func:`error_text` (its message) or
:func:`error_line` (``Type: message``), which never raise.
"""

from __future__ import annotations

__all__ = ["error_line", "error_text", "type_name"]

_LIMIT = 2000  # characters of a message kept; the rest is cut with a note


def error_text(error: BaseException) -> str:
    """``str(error)``, or a stand-in when that raises or is not a string; cut when long."""
    try:
        text = str(error)
    except Exception:  # whatever its __str__ raises, the host carries on
        return f"<{type_name(error)} whose str() failed>"
    if not isinstance(text, str):  # pragma: no cover - str() always returns a str
        return f"<{type_name(error)}>"
    if len(text) > _LIMIT:
        return f"{text[:_LIMIT]}... ({len(text) - _LIMIT} more characters)"
    return text


def error_line(error: BaseException) -> str:
    """``Type: message`` (just the type when the message is empty)."""
    text = error_text(error)
    name = type_name(error)
    return f"{name}: {text}" if text else name


def type_name(value: object) -> str:
    """The name of ``value``'s type; never raises (a metaclass may say anything)."""
    try:
        name = getattr(type(value), "__name__", None)
    except Exception:  # a metaclass's __name__ property
        name = None
    if isinstance(name, str):
        return name
    return "exception" if isinstance(value, BaseException) else "object"
