"""Latency histograms and error counts per operation, and their exact merge across processes.

Clients append each latency (integer microseconds) to a per-operation deque (one
atomic C call, safe from threads); a collector drains the deques every tick,
counts equal values with :class:`collections.Counter` and adds each distinct
value's count to the HdrHistogram's counts array at the index HdrHistogram itself
would use (:func:`record_counts`: its ``record_value`` is five Python calls and a
``bin()`` per value; the index is two shifts and a ``bit_length()``). Recording
every value into the histogram directly would cost more than the rest of the
client's bookkeeping together.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

__all__ = [
    "HIGHEST_US",
    "OTHER_MESSAGES",
    "PERCENTILES",
    "Collector",
    "DistinctError",
    "LatencySummary",
    "OperationStats",
    "OperationTick",
    "interval_percentile",
    "new_histogram",
    "record_counts",
]

HIGHEST_US = 3_600_000_000  # one hour, in microseconds
SIGNIFICANT_FIGURES = 3
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)


DISTINCT_MESSAGES = 20  # distinct (type, message) pairs kept per operation
OTHER_MESSAGES = "(further distinct messages, not kept)"
_MESSAGE_CHARS = 500


@dataclass(frozen=True, slots=True)
class DistinctError:
    """One distinct error of a run: its type and message, the operation it first
    happened in, how many times it happened, and when first (seconds of the run)."""

    type: str
    message: str
    operation: str
    count: int
    first: float

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.type,
            "message": self.message,
            "operation": self.operation,
            "count": self.count,
            "first_seconds": round(self.first, 3),
        }


def new_histogram() -> HdrHistogram:
    """An empty latency histogram: 1 us to 1 h, 3 significant figures."""
    return HdrHistogram(1, HIGHEST_US, SIGNIFICANT_FIGURES)


def _clamped(value: int) -> int:
    return 1 if value < 1 else min(value, HIGHEST_US)


def record_counts(histogram: HdrHistogram, latencies: Mapping[int, int]) -> None:
    """``histogram.record_value(value, count)`` for each item of ``latencies`` (values
    clamped to 1 us .. :data:`HIGHEST_US`), in one loop over the counts array.

    The index is HdrHistogram's own: bucket = the bit length of ``value | sub-bucket
    mask`` less the unit and sub-bucket magnitudes, then the value's sub-bucket in it.
    """
    if not latencies:
        return
    counts = histogram.counts
    mask = histogram.sub_bucket_mask
    unit = histogram.unit_magnitude
    half_magnitude = histogram.sub_bucket_half_count_magnitude
    bucket_offset = unit + half_magnitude + 1
    half = histogram.sub_bucket_half_count
    recorded = 0
    for value, times in latencies.items():
        high = value if value <= HIGHEST_US else HIGHEST_US  # noqa: FURB136 - min() is a call
        clamped = high if high >= 1 else 1  # noqa: FURB136 - as above
        bucket = (clamped | mask).bit_length() - bucket_offset
        counts[((bucket + 1) << half_magnitude) + (clamped >> (bucket + unit)) - half] += times
        recorded += times
    histogram.total_count += recorded
    histogram.min_value = min(histogram.min_value, _clamped(min(latencies)))
    histogram.max_value = max(histogram.max_value, _clamped(max(latencies)))


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency figures in milliseconds; all zero when nothing was recorded."""

    count: int
    min: float
    mean: float
    max: float
    percentiles: dict[str, float]

    @classmethod
    def of(cls, histogram: HdrHistogram) -> LatencySummary:
        count = int(histogram.get_total_count())
        if count == 0:
            return cls(0, 0.0, 0.0, 0.0, {name: 0.0 for name, _ in PERCENTILES})
        values = histogram.get_percentile_to_value_dict([p for _, p in PERCENTILES])
        return cls(
            count=count,
            min=_ms(histogram.get_min_value()),
            mean=_ms(histogram.get_mean_value()),
            max=_ms(histogram.get_max_value()),
            percentiles={name: _ms(values[p]) for name, p in PERCENTILES},
        )

    def to_json(self) -> dict[str, float]:
        return {"min": self.min, "mean": self.mean, **self.percentiles, "max": self.max}


def _ms(microseconds: float) -> float:
    return round(float(microseconds) / 1000.0, 3)


@dataclass(slots=True)
class OperationStats:
    """One operation's results: successes (with their latencies), errors by type, and
    each distinct error (type, message) with its count and when it first happened
    (seconds of the measured run); at most :data:`DISTINCT_MESSAGES` messages are kept,
    the rest counted under :data:`OTHER_MESSAGES`."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    errors: Counter[str] = field(default_factory=Counter)
    messages: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.histogram.get_total_count())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def record(self, latencies: Mapping[int, int]) -> None:
        record_counts(self.histogram, latencies)

    def record_error(self, error_type: str, message: str, at: float) -> bool:
        """Count one error (``at``: seconds of the run); True if its (type, message) is
        new here."""
        self.errors[error_type] += 1
        return self._note(error_type, message[:_MESSAGE_CHARS], 1, at)

    def _note(self, error_type: str, message: str, count: int, at: float) -> bool:
        key = (error_type, message)
        seen = self.messages.get(key)
        if seen is None and len(self.messages) >= DISTINCT_MESSAGES:
            key = (error_type, OTHER_MESSAGES)
            seen = self.messages.get(key)
        if seen is None:
            self.messages[key] = [count, at]
            return key[1] != OTHER_MESSAGES
        seen[0] += count
        seen[1] = min(seen[1], at)
        return False

    def merge(self, other: OperationStats) -> None:
        if other.histogram.get_total_count():  # adding an empty one would make min 0
            self.histogram.add(other.histogram)
        self.errors.update(other.errors)
        for (error_type, message), (count, at) in other.messages.items():
            self._note(error_type, message, int(count), at)

    def distinct_errors(self, operation: str) -> list[DistinctError]:
        """This operation's distinct errors, the earliest first."""
        return sorted(
            (
                DistinctError(kind, message, operation, int(count), at)
                for (kind, message), (count, at) in self.messages.items()
            ),
            key=lambda e: e.first,
        )

    def encode(self) -> tuple[str, dict[str, int], list[tuple[str, str, int, float]]]:
        """A picklable, JSON-able form: the histogram's base64 encoding, the errors by
        type, and the distinct errors."""
        encoded: bytes = self.histogram.encode()
        messages = [(kind, text, int(n), at) for (kind, text), (n, at) in self.messages.items()]
        return encoded.decode("ascii"), dict(self.errors), messages

    @classmethod
    def decode(
        cls, encoded: tuple[str, Mapping[str, int], Iterable[tuple[str, str, int, float]]]
    ) -> OperationStats:
        histogram_text, errors, messages = encoded
        stats = cls()
        stats.merge(cls(histogram=HdrHistogram.decode(histogram_text.encode("ascii"))))
        stats.errors.update(errors)
        for kind, text, count, at in messages:
            stats._note(kind, text, count, at)
        return stats


class Collector:
    """Where clients put what happened, and what drains it into :class:`OperationStats`.

    ``latencies[op].append(us)`` and ``errors.append((op, error_type, message, ns))``
    are the clients' only calls. ``drain()`` moves everything recorded so far into
    ``stats`` and returns the interval's latency counts (for live percentiles);
    ``on_new_error(op, type, message)`` hears each distinct error the first time.
    """

    def __init__(
        self,
        operations: Iterable[str],
        on_new_error: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.latencies: dict[str, deque[int]] = {op: deque() for op in operations}
        self.errors: deque[tuple[str, str, str, int]] = deque()
        self.stats: dict[str, OperationStats] = {op: OperationStats() for op in self.latencies}
        self.on_new_error = on_new_error
        self.origin_ns = 0  # when the measured run starts (monotonic ns)

    def add_operations(self, operations: Iterable[str]) -> None:
        """Count ``operations`` too (those it counts already are left as they are)."""
        for op in operations:
            if op not in self.latencies:
                self.stats.setdefault(op, OperationStats())
                self.latencies[op] = deque()  # last: a client may append once it is there

    def counted(self) -> tuple[int, int]:
        """Successes and errors recorded so far, drained or not."""
        successes = sum(s.count for s in self.stats.values())
        successes += sum(len(queue) for queue in list(self.latencies.values()))
        errors = sum(s.error_count for s in self.stats.values()) + len(self.errors)
        return successes, errors

    def drain(self) -> tuple[Counter[int], int, int]:
        """Record what clients appended since the last drain.

        Returns the interval's latency counts, its number of successes and of errors
        (all operations together; :meth:`drain_operations` tells them apart).
        """
        interval: Counter[int] = Counter()
        successes = errors = 0
        for tick in self.drain_operations().values():
            interval.update(tick.latencies)
            successes += tick.successes
            errors += tick.errors
        return interval, successes, errors

    def drain_operations(self) -> dict[str, OperationTick]:
        """Record what clients appended since the last drain; return it per operation
        (only the operations that did something).

        Only the collector pops, so ``len`` taken first never overstates what is there.
        """
        drained: dict[str, OperationTick] = {}
        for op, queue in self.latencies.items():
            waiting = len(queue)
            if not waiting:
                continue
            pop = queue.popleft
            counts = Counter([pop() for _ in range(waiting)])
            self.stats[op].record(counts)
            drained[op] = OperationTick(waiting, 0, counts)
        failed: Counter[str] = Counter()
        for _ in range(len(self.errors)):
            op, error_type, message, at_ns = self.errors.popleft()
            failed[op] += 1
            at = (at_ns - self.origin_ns) / 1e9
            new = self.stats[op].record_error(error_type, message, at)
            if new and self.on_new_error is not None:
                self.on_new_error(op, error_type, message)
        for op, count in failed.items():
            done = drained.get(op)
            drained[op] = (
                OperationTick(0, count, Counter())
                if done is None
                else OperationTick(done.successes, count, done.latencies)
            )
        return drained


@dataclass(frozen=True, slots=True)
class OperationTick:
    """What one operation did in one tick: successes, errors, and the successes'
    latencies (``{microseconds: count}``)."""

    successes: int
    errors: int
    latencies: Counter[int]


def interval_percentile(latencies: Mapping[int, int], percentile: float) -> float:
    """The ``percentile`` of a small ``{microseconds: count}`` map, in ms (0 when empty)."""
    total = sum(latencies.values())
    if total == 0:
        return 0.0
    rank = total * percentile / 100.0
    seen = 0
    for value in sorted(latencies):
        seen += latencies[value]
        if seen >= rank:
            return value / 1000.0
    return max(latencies) / 1000.0
