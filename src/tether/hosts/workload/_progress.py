"""Progress while a run goes: a live line on a terminal, plain lines otherwise (stderr).

:class:`Progress` takes :class:`Tick`\\ s from any number of sources (one engine,
or the worker processes) and shows elapsed time, recent TPS, recent p95 latency
and the error count.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.live import Live
from rich.text import Text

from tether.hosts.workload._engine import Tick
from tether.hosts.workload._stats import interval_percentile

__all__ = ["Progress"]

_WINDOW = 2.0  # seconds of ticks the live figures cover


class Progress:
    """Shows progress on ``console``: live when it is a terminal, else a line every ``every`` s."""

    def __init__(self, console: Console, *, every: float = 5.0, live: bool | None = None) -> None:
        self.console = console
        self.every = every
        self.live = console.is_terminal if live is None else live
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, int, Counter[int]]] = deque()
        self._elapsed: float | None = None
        self._successes = 0
        self._errors = 0
        self._next_line = every
        self._display: Live | None = None

    def __enter__(self) -> Self:
        if self.live:
            self._display = Live(
                self._text(), console=self.console, refresh_per_second=4, transient=True
            )
            self._display.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._display is not None:
            self._display.__exit__(kind, error, traceback)
            self._display = None

    def __call__(self, tick: Tick) -> None:
        with self._lock:
            now = time.monotonic()
            self._elapsed = (
                tick.elapsed if self._elapsed is None else max(self._elapsed, tick.elapsed)
            )
            self._successes += tick.successes
            self._errors += tick.errors
            self._recent.append((now, tick.successes, tick.latencies))
            while self._recent and self._recent[0][0] < now - _WINDOW:
                self._recent.popleft()
            if self._display is not None:
                self._display.update(self._text())
            elif self._elapsed >= self._next_line:
                self._next_line = self._elapsed + self.every
                self.console.print(self._line(), highlight=False)

    def _figures(self) -> tuple[float, float]:
        if not self._recent:
            return 0.0, 0.0
        span = max(time.monotonic() - self._recent[0][0], 0.5)
        merged: Counter[int] = Counter()
        successes = 0
        for _, count, latencies in self._recent:
            successes += count
            merged.update(latencies)
        return successes / span, interval_percentile(merged, 95.0)

    def _line(self) -> str:
        tps, p95 = self._figures()
        if self._elapsed is None:
            return "starting clients..."
        if self._elapsed < 0:
            return f"warming up: {-self._elapsed:.1f}s to go"
        return (
            f"progress: {self._elapsed:.1f}s, {tps:.1f} tps, p95 {p95:.3f} ms, "
            f"{self._successes} transactions, {self._errors} errors"
        )

    def _text(self) -> Text:
        return Text(self._line())
