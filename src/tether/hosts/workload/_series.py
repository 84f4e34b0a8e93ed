"""The run over time: per point and per operation, successes, errors, p50 and p99.

:class:`Series` takes the same :class:`Tick`\\ s as the progress line (from one
engine or from the worker processes) and groups them by ``slot``: every process
ticks on one schedule from the run's start, so the ticks of one slot, whichever
process sent them, make one point on the run's clock. A point ends when the
latest of its ticks does, and starts where the previous one ended (the first at
0, the end of the warmup). Its p50 and p99 come from its ticks' latency counts,
taken when the point closes: :data:`_OPEN_SLOTS` slots after it, so that every
process's tick is in.

Work happens per tick, never per transaction: an open point keeps its ticks' latency
counts as they came (the engine drains them anyway), and closing it sorts them once
(about 3 ms of CPU for 30,000 transactions of three operations). Memory is bounded: at most
``max_points`` points (:data:`MAX_POINTS`); when a long run would have more,
neighbouring points are merged in pairs and later points cover twice as many
slots. A merged point's percentiles need its latencies again, so each closed point
keeps them quantized (a value keeps its top :data:`_KEPT_BITS` bits, as
HdrHistogram does, so within 0.8%) in an array: a merged point's p50 and p99 are
those of all its transactions to that precision. A tick that comes after its point
closed (a process more than :data:`_OPEN_SLOTS` ticks late) is added to it the same
way.
"""

from __future__ import annotations

import bisect
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from operator import add, and_, lshift, rshift

from tether.hosts.workload._engine import Tick

__all__ = ["MAX_POINTS", "OperationSeries", "Series", "SeriesData"]

MAX_POINTS = 2000
_OPEN_SLOTS = 4  # a point closes once a tick this many slots later has come
_KEPT_BITS = 7
_COUNT_BITS = 48  # room for a count beside a value in one integer (see _sorted_counts)
_COUNT_MASK = (1 << _COUNT_BITS) - 1


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class OperationSeries:
    """One operation's figures (or all operations'), one entry per point; a point
    without successes has no percentiles (``None``)."""

    successes: tuple[int, ...]
    errors: tuple[int, ...]
    p50: tuple[float | None, ...]
    p99: tuple[float | None, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "successes": list(self.successes),
            "errors": list(self.errors),
            "p50_ms": list(self.p50),
            "p99_ms": list(self.p99),
        }


@dataclass(frozen=True, slots=True)
class SeriesData:
    """A run's series: ``time[i]`` is when point ``i`` ends (seconds of the measured
    run); it covers ``time[i-1]`` to ``time[i]`` (the first from 0), which is
    ``slots_per_point`` ticks of ``tick`` seconds (the last may be shorter)."""

    tick: float
    slots_per_point: int
    time: tuple[float, ...]
    total: OperationSeries
    operations: dict[str, OperationSeries]

    def to_json(self) -> dict[str, object]:
        return {
            "tick": self.tick,
            "slots_per_point": self.slots_per_point,
            "time": list(self.time),
            "total": self.total.to_json(),
            "operations": {name: ops.to_json() for name, ops in self.operations.items()},
        }


# --------------------------------------------------------------------------- latencies


def quantized(latencies: Mapping[int, int]) -> Counter[int]:
    """``{microseconds: count}`` with each value kept to its top :data:`_KEPT_BITS`
    bits (the middle of the values that share them)."""
    values, cumulative = _sorted_counts([latencies])
    packed = _buckets(values, cumulative)
    return Counter(dict(zip(packed[::2], packed[1::2], strict=True)))


def percentiles(latencies: Mapping[int, int]) -> tuple[float | None, float | None]:
    """The p50 and p99 (ms) of ``{microseconds: count}``; ``None`` when it is empty."""
    return _percentiles(*_sorted_counts([latencies]))


def _sorted_counts(parts: Sequence[Mapping[int, int]]) -> tuple[list[int], list[int]]:
    """The values of all ``parts`` in order (a value in two parts comes twice) and the
    running count up to each: sorting, mapping and summing in C, not value by value."""
    if len(parts) == 1:  # one tick, one process: the common case, and the cheapest
        (part,) = parts
        values = sorted(part)
        return values, list(accumulate(map(part.__getitem__, values)))
    # Several parts: each (value, count) as one integer, value above count, so that
    # one sort of integers orders them all (the parts' sorted runs merge in C).
    keyed = sorted(
        chain.from_iterable(
            map(add, map(lshift, part.keys(), repeat(_COUNT_BITS)), part.values()) for part in parts
        )
    )
    counts = map(and_, keyed, repeat(_COUNT_MASK))
    return list(map(rshift, keyed, repeat(_COUNT_BITS))), list(accumulate(counts))


def _percentiles(values: list[int], cumulative: list[int]) -> tuple[float | None, float | None]:
    if not cumulative or cumulative[-1] <= 0:
        return None, None
    total = cumulative[-1]
    found = (values[bisect.bisect_left(cumulative, total * rank)] for rank in (0.50, 0.99))
    p50, p99 = (round(value / 1000.0, 3) for value in found)
    return p50, p99


def _buckets(values: list[int], cumulative: list[int]) -> array[int]:
    """``values`` (sorted) and their running counts as (bucket, count) pairs, each
    bucket the middle of the values sharing their top :data:`_KEPT_BITS` bits: one
    step per bucket, not per value."""
    packed = array("Q")
    start, end = 0, len(values)
    while start < end:
        value = max(0, values[start])
        shift = value.bit_length() - _KEPT_BITS
        if shift > 0:
            low = value >> shift << shift
            middle, above = low | (1 << (shift - 1)), low + (1 << shift)
        else:
            middle, above = value, value + 1
        stop = bisect.bisect_left(values, above, start)
        packed.append(middle)
        packed.append(cumulative[stop - 1] - (cumulative[start - 1] if start else 0))
        start = stop
    return packed


class _Cell:
    """One operation's figures in one point: the ticks' latency counts while the point
    is open (kept as they came, never copied), its percentiles and its quantized
    latencies (``(bucket, count)`` pairs in an array) once it closes."""

    __slots__ = ("errors", "p50", "p99", "packed", "parts", "successes")

    def __init__(self) -> None:
        self.successes = 0
        self.errors = 0
        self.parts: list[Mapping[int, int]] | None = []
        self.packed = array("Q")
        self.p50: float | None = None
        self.p99: float | None = None

    def add(self, successes: int, errors: int, latencies: Mapping[int, int]) -> None:
        self.successes += successes
        self.errors += errors
        if not latencies:
            return
        if self.parts is not None:
            self.parts.append(latencies)
        else:
            self._absorb([latencies])

    def close(self) -> None:
        if self.parts is None:
            return
        values, cumulative = _sorted_counts(self.parts)
        self.p50, self.p99 = _percentiles(values, cumulative)
        self.packed = _buckets(values, cumulative)
        self.parts = None

    def take(self, other: _Cell) -> None:
        """Add an open cell to this open one."""
        self.successes += other.successes
        self.errors += other.errors
        if self.parts is not None and other.parts is not None:
            self.parts.extend(other.parts)

    def merge(self, other: _Cell) -> None:
        """Add a closed cell to this closed one."""
        self.successes += other.successes
        self.errors += other.errors
        if other.packed:
            self._absorb([_unpack(other.packed)])

    def _absorb(self, parts: list[Mapping[int, int]]) -> None:
        values, cumulative = _sorted_counts([_unpack(self.packed), *parts])
        self.p50, self.p99 = _percentiles(values, cumulative)
        self.packed = _buckets(values, cumulative)


def _unpack(packed: array[int]) -> dict[int, int]:
    return dict(zip(packed[::2], packed[1::2], strict=True))


class _Point:
    __slots__ = ("end", "group", "is_closed", "operations", "total")

    def __init__(self, group: int) -> None:
        self.group = group
        self.end = 0.0
        self.operations: dict[str, _Cell] = {}
        self.total = _Cell()
        self.is_closed = False

    def add(self, tick: Tick) -> None:
        self.end = max(self.end, tick.elapsed)
        for name, done in tick.operations.items():
            self._cell(name, closed=self.is_closed).add(done.successes, done.errors, done.latencies)
        self.total.add(tick.successes, tick.errors, tick.latencies)

    def add_open(self, other: _Point) -> None:
        """Add an open point to this open one (their raw counts add exactly)."""
        self.end = max(self.end, other.end)
        for name, cell in other.operations.items():
            self._cell(name).take(cell)
        self.total.take(other.total)

    def merge(self, other: _Point) -> None:
        """Add a closed point to this closed one."""
        self.end = max(self.end, other.end)
        for name, cell in other.operations.items():
            self._cell(name, closed=True).merge(cell)
        self.total.merge(other.total)

    def close(self) -> None:
        for cell in self.operations.values():
            cell.close()
        self.total.close()
        self.is_closed = True

    def _cell(self, name: str, *, closed: bool = False) -> _Cell:
        cell = self.operations.get(name)
        if cell is None:
            cell = self.operations[name] = _Cell()
            if closed:
                cell.close()
        return cell


# --------------------------------------------------------------------------- the series


class Series:
    """Collects a run's points from its ticks (call it with each :class:`Tick`);
    :meth:`result` gives them. Ticks of the warmup are left out."""

    def __init__(
        self, operations: Iterable[str], *, tick: float, max_points: int = MAX_POINTS
    ) -> None:
        self.operations = list(operations)
        self.tick = tick
        self.max_points = max(2, max_points)
        self.slots_per_point = 1
        self._closed: list[_Point] = []
        self._open: dict[int, _Point] = {}
        self._newest = 0
        self._lock = threading.Lock()

    def __call__(self, tick: Tick) -> None:
        if tick.elapsed <= 0:
            return
        with self._lock:
            self._point(tick.slot // self.slots_per_point).add(tick)
            self._newest = max(self._newest, tick.slot)
            self._close_up_to(self._newest - _OPEN_SLOTS)

    def result(self) -> SeriesData:
        """Every point so far (closing the open ones)."""
        with self._lock:
            self._close_up_to(None)
            points = list(self._closed)
        names = self._names(points)
        return SeriesData(
            tick=self.tick,
            slots_per_point=self.slots_per_point,
            time=tuple(round(p.end, 6) for p in points),
            total=_columns(p.total for p in points),
            operations={
                name: _columns(p.operations.get(name, _EMPTY) for p in points) for name in names
            },
        )

    def _names(self, points: Sequence[_Point]) -> list[str]:
        seen = {name for point in points for name in point.operations}
        return [n for n in self.operations if n in seen] + sorted(seen - set(self.operations))

    def _point(self, group: int) -> _Point:
        point = self._open.get(group)
        if point is not None:
            return point
        groups = [p.group for p in self._closed]
        at = bisect.bisect_left(groups, group)
        if at < len(groups) and groups[at] == group:
            return self._closed[at]  # a late tick: added to its closed point
        point = self._open[group] = _Point(group)
        return point

    def _close_up_to(self, slot: int | None) -> None:
        """Close the open points whose last slot is at most ``slot`` (all on None)."""
        for group in sorted(self._open):
            if slot is not None and (group + 1) * self.slots_per_point - 1 > slot:
                break
            point = self._open.pop(group)
            point.close()
            bisect.insort(self._closed, point, key=lambda p: p.group)
        while len(self._closed) > self.max_points:
            self._coalesce()

    def _coalesce(self) -> None:
        """Twice as many slots per point: merge the closed points in pairs, and the
        open ones too."""
        self.slots_per_point *= 2
        merged: list[_Point] = []
        for point in self._closed:
            point.group //= 2
            if merged and merged[-1].group == point.group:
                merged[-1].merge(point)
            else:
                merged.append(point)
        self._closed = merged
        still_open: dict[int, _Point] = {}
        for group in sorted(self._open):
            point = self._open[group]
            point.group = group // 2
            if point.group in still_open:
                still_open[point.group].add_open(point)
            else:
                still_open[point.group] = point
        self._open = still_open
        for group in [g for g in self._open if self._is_closed_group(g)]:
            self._closed[self._index(group)].merge(_closed(self._open.pop(group)))

    def _is_closed_group(self, group: int) -> bool:
        index = self._index(group)
        return index < len(self._closed) and self._closed[index].group == group

    def _index(self, group: int) -> int:
        return bisect.bisect_left([p.group for p in self._closed], group)


def _closed(point: _Point) -> _Point:
    point.close()
    return point


_EMPTY = _Cell()
_EMPTY.close()


def _columns(cells: Iterable[_Cell]) -> OperationSeries:
    kept = list(cells)
    return OperationSeries(
        successes=tuple(c.successes for c in kept),
        errors=tuple(c.errors for c in kept),
        p50=tuple(c.p50 for c in kept),
        p99=tuple(c.p99 for c in kept),
    )
