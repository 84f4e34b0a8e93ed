"""Progress while a run goes: a live line on a terminal, plain lines otherwise (stderr).

:class:`Progress` takes :class:`Tick`\\ s from any number of sources (one engine,
or the worker processes) and shows elapsed time, the TPS and p95 latency of the last
two seconds of the run (the window each line names: the intervals of the ticks it
sums, by the run's clock, not by when they arrived), and the running counts. When the
run ends it prints the final counts, which are the report's.
"""

from __future__ import annotations

import threading
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
        self._recent: deque[Tick] = deque()
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
        if self._elapsed is not None and self._elapsed > 0:
            self.console.print(
                f"done: {self._elapsed:.1f}s, {self._successes} transactions, "
                f"{self._errors} errors",
                highlight=False,
            )

    def __call__(self, tick: Tick) -> None:
        with self._lock:
            self._elapsed = (
                tick.elapsed if self._elapsed is None else max(self._elapsed, tick.elapsed)
            )
            self._successes += tick.successes
            self._errors += tick.errors
            self._recent.append(tick)
            recent, start = self._recent, self._elapsed - _WINDOW
            while recent and recent[0].elapsed <= start:
                recent.popleft()
            if self._display is not None:
                self._display.update(self._text())
            elif self._elapsed >= self._next_line:
                self._next_line = self._elapsed + self.every
                self.console.print(self._line(), highlight=False)

    def _figures(self, end: float) -> tuple[float, float, float]:
        """The window's span (s), its TPS and its p95 (ms): the measured part of the
        intervals of the ticks kept, which end at ``end``."""
        if not self._recent:
            return 0.0, 0.0, 0.0
        span = end - max(min(tick.since for tick in self._recent), 0.0)
        merged: Counter[int] = Counter()
        successes = 0
        for tick in self._recent:
            successes += tick.successes
            merged.update(tick.latencies)
        tps = successes / span if span > 0 else 0.0
        return span, tps, interval_percentile(merged, 95.0)

    def _line(self) -> str:
        if self._elapsed is None:
            return "starting clients..."
        if self._elapsed < 0:
            return f"warming up: {-self._elapsed:.1f}s to go"
        span, tps, p95 = self._figures(self._elapsed)
        return (
            f"progress: {self._elapsed:.1f}s, last {span:.1f}s: {tps:.1f} tps, "
            f"p95 {p95:.3f} ms; {self._successes} transactions, {self._errors} errors"
        )

    def _text(self) -> Text:
        return Text(self._line())
