"""Printing for the CLI: one stdout console, one stderr console, and error display."""

from __future__ import annotations

from rich.console import Console

from tether import error_text
from tether.errors import TetherError

__all__ = ["err", "out", "print_error"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(exc: BaseException) -> None:
    """``Error: <message>`` and, when the error has one, a hint line."""
    err.print(f"[bold red]Error:[/] {_escape(error_text(exc))}")
    hint = exc.hint if isinstance(exc, TetherError) else None
    if isinstance(hint, str) and hint:
        err.print(f"[dim]Hint:[/] {_escape(hint)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
