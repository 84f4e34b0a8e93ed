"""What the Prometheus reload families count: every reload, rollback and its time.

The manager tells its listeners of each finished reload (``manager.on_reload``: a
reload, a ``rollback_plugin``, an automatic rollback in a grace period); the tally
adds it to two running aggregates per plugin, so memory stays the same after a
million reloads: a count per outcome, and the buckets, count and sum of the
durations. The listener may be called from any thread (the sync facade's); one lock
guards both aggregates. ``prometheus_client`` is not imported here: the hub makes
the tally when it is made, and the collector reads it at a scrape.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tether import ReloadResult

__all__ = ["DURATION_BUCKETS", "OUTCOMES", "DurationBuckets", "ReloadTally"]

OUTCOMES: Final = ("reloaded", "rolled_back", "failed")
"""Every outcome a reload can have; each plugin's counter shows all three."""
DURATION_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the reload duration histogram, before ``+Inf``."""


@dataclass(slots=True)
class DurationBuckets:
    """One plugin's reload durations: a count per bucket (not cumulative), count, sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    count: int = 0
    total: float = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.count += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs, ending with ``+Inf``, as Prometheus wants."""
        bounds = [repr(b) for b in DURATION_BUCKETS] + ["+Inf"]
        running, pairs = 0, []
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


class ReloadTally:
    """Reload outcomes and durations per plugin, from ``manager.on_reload``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[str, dict[str, int]] = {}
        self._durations: dict[str, DurationBuckets] = {}

    def record(self, result: ReloadResult) -> None:
        """Count one finished reload (the listener ``on_reload`` calls)."""
        with self._lock:
            counts = self._outcomes.setdefault(result.plugin, dict.fromkeys(OUTCOMES, 0))
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            self._durations.setdefault(result.plugin, DurationBuckets()).add(
                max(0.0, result.duration)
            )

    def outcomes(self) -> dict[str, dict[str, int]]:
        """Plugin -> outcome -> count, for every plugin reloaded at least once."""
        with self._lock:
            return {plugin: dict(counts) for plugin, counts in sorted(self._outcomes.items())}

    def durations(self) -> dict[str, DurationBuckets]:
        """Plugin -> a copy of its duration buckets."""
        with self._lock:
            return {
                plugin: DurationBuckets(list(b.counts), b.count, b.total)
                for plugin, b in sorted(self._durations.items())
            }
