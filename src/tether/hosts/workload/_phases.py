"""Which version of the workload ran when: a run's phases and its reload attempts (pure).

A run starts with one phase, the version loaded at the start. Each reload that puts
another version live (``reloaded``, or a rollback after the new version had gone
live) ends the phase at that moment and starts the next one; a reload that fails
before the swap (``rolled_back`` at import, manifest, config, initialize or start)
leaves the phase running and is recorded as an attempt only. Times are seconds of
the measured run (0 is the end of the warmup): a switch during the warmup replaces
the first phase's version instead of adding one.

A phase's transactions and errors are what the clients had recorded when it ended
less what they had when it started; a transaction in flight at the swap counts in
the phase it finished in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Phase", "PhaseLog", "ReloadAttempt"]


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of the measured run that one version of the workload served."""

    version: str
    start: float
    end: float
    transactions: int
    errors: int
    weights: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def tps(self) -> float:
        return self.transactions / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "from_seconds": round(self.start, 3),
            "to_seconds": round(self.end, 3),
            "transactions": self.transactions,
            "errors": self.errors,
            "tps": round(self.tps, 3),
            "weights": dict(self.weights),
        }


@dataclass(frozen=True, slots=True)
class ReloadAttempt:
    """One reload of the workload plugin during a run: the core's
    :class:`tether.ReloadResult` placed on the run's clock (``at``: seconds of the
    measured run, negative during the warmup). ``kind`` is ``reload``, or
    ``rollback`` for a rollback asked for (the bench asks for one when a version does
    not fit the run: ``refused`` says why, on the attempt that put it live)."""

    at: float
    outcome: str
    from_version: str
    to_version: str | None
    step: str | None = None
    error: str | None = None
    duration: float = 0.0
    held: int = 0
    rejected: int = 0
    started_at: datetime | None = None
    refused: str | None = None
    kind: str = "reload"

    @property
    def is_swap(self) -> bool:
        """Whether another version went live (the phase changes): a reload, a rollback
        asked for, or one in the grace period; not a version that failed before it
        took over (the previous one was started again)."""
        if self.outcome == "reloaded":
            return True
        is_rollback = self.kind == "rollback" and self.step is None
        return self.outcome == "rolled_back" and (is_rollback or self.step == "grace")

    def describe(self) -> str:
        """One line for people: ``at 3.20s: reloaded 1.0.0 -> 1.1.0 (12 ms, 3 calls held)``."""
        to = self.to_version or "?"
        head = f"at {self.at:.2f}s: "
        held = f", {self.held} call{'s' if self.held != 1 else ''} held" if self.held else ""
        timing = f"{self.duration * 1000:.0f} ms{held}"
        if self.outcome == "reloaded" and self.refused is None:
            return f"{head}reloaded {self.from_version} -> {to} ({timing})"
        if self.kind == "rollback" and self.outcome == "rolled_back" and self.step is None:
            return f"{head}rolled back {self.from_version} -> {to} ({timing})"
        if self.refused is not None:
            return f"{head}{to} refused by the bench, back to {self.from_version}: {self.refused}"
        where = f" at {self.step}" if self.step else ""
        what = "rolled back" if self.outcome == "rolled_back" else "FAILED"
        kept = f", {self.from_version} kept" if self.outcome == "rolled_back" else ""
        return f"{head}{what}: {to} failed{where}{kept} ({timing}): {self.error or 'no detail'}"

    def to_json(self) -> dict[str, object]:
        return {
            "at_seconds": round(self.at, 3),
            "started_at": None if self.started_at is None else self.started_at.isoformat(),
            "outcome": self.outcome,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "step": self.step,
            "error": self.error,
            "refused": self.refused,
            "kind": self.kind,
            "duration_seconds": round(self.duration, 6),
            "held": self.held,
            "rejected": self.rejected,
        }


@dataclass(slots=True)
class _Mark:
    version: str
    at: float
    counted: tuple[int, int]
    weights: dict[str, int]


class PhaseLog:
    """The phases of one run as they happen.

    ``counted`` is (successes, errors) recorded by the clients so far, at the
    moment given.
    """

    def __init__(self, version: str, weights: dict[str, int]) -> None:
        self._marks = [_Mark(version, 0.0, (0, 0), dict(weights))]

    @property
    def version(self) -> str:
        """The version of the phase running now."""
        return self._marks[-1].version

    def switch(self, version: str, at: float, counted: tuple[int, int]) -> None:
        """Another version went live at ``at``; it draws from the current weights until
        :meth:`set_weights` says otherwise."""
        last = self._marks[-1]
        if at <= last.at:  # during the warmup (or at the same moment): no phase ended
            last.version = version
            return
        self._marks.append(_Mark(version, at, counted, dict(last.weights)))

    def set_weights(self, weights: dict[str, int]) -> None:
        """The running phase's operation mix (read from its version)."""
        self._marks[-1].weights = dict(weights)

    def phases(self, elapsed: float, counted: tuple[int, int]) -> list[Phase]:
        """Every phase, the last ending at ``elapsed`` with ``counted``."""
        ends = [(m.at, m.counted) for m in self._marks[1:]] + [(max(elapsed, 0.0), counted)]
        return [
            Phase(
                version=mark.version,
                start=mark.at,
                end=max(end, mark.at),
                transactions=max(0, done[0] - mark.counted[0]),
                errors=max(0, done[1] - mark.counted[1]),
                weights=mark.weights,
            )
            for mark, (end, done) in zip(self._marks, ends, strict=True)
        ]
