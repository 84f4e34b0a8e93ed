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
counts as they came (the engine drains them anyway) and sorts them once, when it
closes (about 3.5 ms of CPU for 30,000 transactions of three operations). Its p50 and
p99 are exact while those counts hold at most :data:`_EXACT_VALUES` values per
operation; beyond, the point quantizes them (a value keeps its top
:data:`_KEPT_BITS` bits, as HdrHistogram does: within 0.8%) and each later tick as it
comes, so that no tick sorts more.

Memory is bounded: at most ``max_points`` points (:data:`MAX_POINTS`); when a long
run would have more, later points cover twice as many slots and the earlier ones
are merged in pairs, :data:`_MERGES_PER_TICK` pairs a tick, from their quantized
latencies. A tick that comes after its point closed (a process more than
:data:`_OPEN_SLOTS` ticks late) is added to it the same way.
"""

from __future__ import annotations

import bisect
import threading
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, repeat
from operator import sub
from typing import TypeAlias

from tether.hosts.workload._engine import Tick

__all__ = ["MAX_POINTS", "OperationSeries", "Series", "SeriesData"]

MAX_POINTS = 2000
_OPEN_SLOTS = 4  # a point closes once a tick this many slots later has come
_KEPT_BITS = 7
_EXACT_VALUES = 8192  # distinct latencies an open point keeps raw, per operation
_MERGES_PER_TICK = 2  # pairs of closed points merged a tick while a long run coalesces


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


def quantized(latencies: Mapping[int, int]) -> dict[int, int]:
    """``{microseconds: count}`` with each value kept to its top :data:`_KEPT_BITS`
    bits (the middle of the values that share them)."""
    found: dict[int, int] = {}
    _quantize_into(found, latencies)
    return found


def percentiles(latencies: Mapping[int, int]) -> tuple[float | None, float | None]:
    """The p50 and p99 (ms) of ``{microseconds: count}``; ``None`` when it is empty."""
    return _percentiles(*_sorted_counts(latencies))


def _merged(parts: Sequence[Mapping[int, int]]) -> Mapping[int, int]:
    """One ``{value: count}`` of several: the largest as it is (copied only if there
    are others), the others added to it."""
    if len(parts) == 1:
        return parts[0]
    largest = max(parts, key=len)
    merged = dict(largest)
    get = merged.get
    for part in parts:
        if part is not largest:
            for value, count in part.items():
                merged[value] = get(value, 0) + count
    return merged


def _sorted_counts(latencies: Mapping[int, int]) -> tuple[list[int], list[int]]:
    """The values in order and the running count up to each (sorted, mapped and
    summed in C, not value by value)."""
    values = sorted(latencies)
    return values, list(accumulate(map(latencies.__getitem__, values)))


def _percentiles(values: list[int], cumulative: list[int]) -> tuple[float | None, float | None]:
    if not cumulative or cumulative[-1] <= 0:
        return None, None
    total = cumulative[-1]
    found = (values[bisect.bisect_left(cumulative, total * rank)] for rank in (0.50, 0.99))
    p50, p99 = (round(value / 1000.0, 3) for value in found)
    return p50, p99


def _bucket_table() -> tuple[list[int], list[int]]:
    """Every bucket's lowest value and its middle, in order: the values below
    2^:data:`_KEPT_BITS` one each, then, octave by octave up to 2^48 µs, 64 buckets of
    the values that share their top :data:`_KEPT_BITS` bits."""
    lows = list(range(1 << _KEPT_BITS))
    middles = list(lows)
    for shift in range(1, 48 - _KEPT_BITS + 1):
        for top in range(1 << (_KEPT_BITS - 1), 1 << _KEPT_BITS):
            lows.append(top << shift)
            middles.append((top << shift) | (1 << (shift - 1)))
    return lows, middles


_LOWS, _MIDDLES = _bucket_table()


def _buckets(values: list[int], cumulative: list[int]) -> tuple[list[int], list[int]]:
    """``values`` (sorted) and their running counts as bucket middles and counts:
    where each bucket starts among the values is one C-level bisection per bucket, and
    a bucket's middle stays in its bucket (so quantizing twice is quantizing once)."""
    if not values:
        return [], []
    first = bisect.bisect_right(_LOWS, values[0]) - 1
    last = bisect.bisect_right(_LOWS, values[-1])
    cuts = [0, *map(bisect.bisect_left, repeat(values), _LOWS[first + 1 : last]), len(values)]
    running = [0, *cumulative]
    at = list(map(running.__getitem__, cuts))
    counts = list(map(sub, at[1:], at[:-1]))
    return list(compress(_MIDDLES[first:last], counts)), list(compress(counts, counts))


def _quantize_into(buckets: dict[int, int], latencies: Mapping[int, int]) -> None:
    """Add ``latencies`` to ``buckets`` (``{bucket middle: count}``), quantized."""
    get = buckets.get
    for middle, count in zip(*_buckets(*_sorted_counts(latencies)), strict=True):
        buckets[middle] = get(middle, 0) + count


_BUCKET = {middle: index for index, middle in enumerate(_MIDDLES)}
_Packed: TypeAlias = "tuple[array[int], array[int]]"  # bucket indices (2 bytes), counts


def _pack(middles: Iterable[int], counts: Iterable[int]) -> _Packed | None:
    """Quantized latencies (bucket middles in order, and counts) in two arrays: about
    6 bytes a bucket, a few hundred buckets a cell."""
    indices = array("H", map(_BUCKET.__getitem__, middles))
    if not indices:
        return None
    kept = list(counts)
    try:
        return indices, array("I", kept)
    except OverflowError:  # more than 4 billion transactions in one bucket of one point
        return indices, array("Q", kept)


def _packed(buckets: Mapping[int, int]) -> _Packed | None:
    middles = sorted(buckets)
    return _pack(middles, map(buckets.__getitem__, middles))


def _unpack(packed: _Packed | None) -> dict[int, int]:
    if packed is None:
        return {}
    indices, counts = packed
    return dict(zip(map(_MIDDLES.__getitem__, indices), counts, strict=True))


class _Cell:
    """One operation's figures in one point.

    Open, it keeps its ticks' latency counts as they came (never copied) while they
    hold at most :data:`_EXACT_VALUES` values, and its percentiles are then exact;
    beyond, it quantizes them into ``buckets`` and quantizes each later tick as it
    comes (so no tick and no close has more than that to sort). Closed, it keeps its
    percentiles and its quantized latencies, packed (:func:`_pack`)."""

    __slots__ = ("buckets", "errors", "held", "p50", "p99", "packed", "parts", "successes")

    def __init__(self) -> None:
        self.successes = 0
        self.errors = 0
        self.parts: list[Mapping[int, int]] | None = []
        self.held = 0
        self.buckets: dict[int, int] | None = None
        self.packed: _Packed | None = None
        self.p50: float | None = None
        self.p99: float | None = None

    def add(self, successes: int, errors: int, latencies: Mapping[int, int]) -> None:
        self.successes += successes
        self.errors += errors
        if latencies:
            self._add_latencies(latencies)

    def take(self, other: _Cell) -> None:
        """Add an open cell to this open one."""
        self.successes += other.successes
        self.errors += other.errors
        for part in other.parts or []:
            self._add_latencies(part)
        if other.buckets:
            self._add_latencies(other.buckets)

    def merge(self, other: _Cell) -> None:
        """Add a closed cell to this closed one."""
        self.successes += other.successes
        self.errors += other.errors
        if other.packed:
            self._add_latencies(_unpack(other.packed))

    def close(self) -> None:
        if self.parts is None:
            return
        if self.buckets is None:  # exact
            values, cumulative = _sorted_counts(_merged(self.parts) if self.parts else {})
            self.p50, self.p99 = _percentiles(values, cumulative)
            middles, counts = _buckets(values, cumulative)
            self.packed = _pack(middles, counts)
        else:
            self._settle(self.buckets)
        self.parts, self.buckets, self.held = None, None, 0

    def _add_latencies(self, latencies: Mapping[int, int]) -> None:
        if self.parts is None:  # closed: a late tick, or a merge
            buckets = _unpack(self.packed)
            _quantize_into(buckets, latencies)
            self._settle(buckets)
        elif self.buckets is not None:
            _quantize_into(self.buckets, latencies)
        elif self.held + len(latencies) <= _EXACT_VALUES:
            self.parts.append(latencies)
            self.held += len(latencies)
        else:
            self.buckets = {}
            for part in [*self.parts, latencies]:
                _quantize_into(self.buckets, part)
            self.parts, self.held = [], 0

    def _settle(self, buckets: dict[int, int]) -> None:
        """Percentiles and packed form from quantized latencies."""
        self.p50, self.p99 = _percentiles(*_sorted_counts(buckets))
        self.packed = _packed(buckets)


class _Point:
    """The ticks of slots ``first`` to ``first + width - 1``."""

    __slots__ = ("end", "first", "is_closed", "operations", "total", "width")

    def __init__(self, first: int, width: int) -> None:
        self.first = first
        self.width = width
        self.end = 0.0
        self.operations: dict[str, _Cell] = {}
        self.total = _Cell()
        self.is_closed = False

    def add(self, tick: Tick) -> None:
        self.end = max(self.end, tick.elapsed)
        for name, done in tick.operations.items():
            self._cell(name, closed=self.is_closed).add(done.successes, done.errors, done.latencies)
        self.total.add(tick.successes, tick.errors, tick.latencies)

    def take(self, other: _Point) -> None:
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
    :meth:`result` gives them. Ticks of the warmup are left out.

    Closed points are in order and never overlap. When there are more than
    ``max_points``, new points cover twice as many slots and the older ones are
    merged in pairs, :data:`_MERGES_PER_TICK` pairs a tick (so no tick takes long),
    the rest when :meth:`result` is called.
    """

    def __init__(
        self, operations: Iterable[str], *, tick: float, max_points: int = MAX_POINTS
    ) -> None:
        self.operations = list(operations)
        self.tick = tick
        self.max_points = max(2, max_points)
        self.slots_per_point = 1
        self._closed: list[_Point] = []
        self._open: dict[int, _Point] = {}  # by first slot // slots_per_point
        self._merged = 0  # while widening: the closed points before it are merged
        self._is_widening = False
        self._newest = 0
        self._lock = threading.Lock()

    def __call__(self, tick: Tick) -> None:
        if tick.elapsed <= 0:
            return
        with self._lock:
            self._point(tick.slot).add(tick)
            self._newest = max(self._newest, tick.slot)
            self._close_up_to(self._newest - _OPEN_SLOTS)
            self._coalesce(_MERGES_PER_TICK)

    def result(self) -> SeriesData:
        """Every point so far (closing the open ones)."""
        with self._lock:
            self._close_up_to(None)
            self._coalesce(None)
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

    def _point(self, slot: int) -> _Point:
        """The point of ``slot``: an open one, or, for a tick that comes late, the
        closed point that holds its slot (or the nearest one before a gap)."""
        width = self.slots_per_point
        point = self._open.get(slot // width)
        if point is not None:
            return point
        closed = self._closed
        if closed and slot < closed[-1].first + closed[-1].width:
            at = bisect.bisect_right([p.first for p in closed], slot) - 1
            return closed[max(at, 0)]
        point = self._open[slot // width] = _Point(slot // width * width, width)
        return point

    def _close_up_to(self, slot: int | None) -> None:
        """Close the open points whose last slot is at most ``slot`` (all on None)."""
        for key in sorted(self._open):
            point = self._open[key]
            if slot is not None and point.first + point.width - 1 > slot:
                break
            del self._open[key]
            self._keep(_closed(point))
        if len(self._closed) > self.max_points and not self._is_widening:
            self._widen()

    def _keep(self, point: _Point) -> None:
        """Add a closed point after the others (into the last one if they overlap)."""
        last = self._closed[-1] if self._closed else None
        if last is not None and point.first < last.first + last.width:
            last.merge(point)
        else:
            self._closed.append(point)

    def _widen(self) -> None:
        """From now on, points of twice as many slots: the open ones merge in pairs
        now (exactly), the closed ones in :meth:`_coalesce`."""
        self.slots_per_point *= 2
        width = self.slots_per_point
        self._merged, self._is_widening = 0, True
        opened: dict[int, _Point] = {}
        for key in sorted(self._open):
            point = self._open[key]
            point.first, point.width = point.first // width * width, width
            if point.first // width in opened:
                opened[point.first // width].take(point)
            else:
                opened[point.first // width] = point
        self._open = opened

    def _coalesce(self, budget: int | None) -> None:
        """Merge the closed points narrower than ``slots_per_point`` with their
        neighbours, the oldest first: at most ``budget`` merges (None: all)."""
        if not self._is_widening:
            return
        closed, width, index = self._closed, self.slots_per_point, self._merged
        while index < len(closed) and (budget is None or budget > 0):
            point = closed[index]
            if point.width < width:
                start = point.first - point.first % width
                while index + 1 < len(closed) and closed[index + 1].first < start + width:
                    point.merge(closed.pop(index + 1))
                    budget = None if budget is None else budget - 1
                point.first, point.width = start, width
            index += 1
        self._merged = index
        self._is_widening = index < len(closed)
        for key in [k for k, p in self._open.items() if closed and p.first < _end(closed[-1])]:
            self._keep(_closed(self._open.pop(key)))  # an open point a merge overlapped


def _end(point: _Point) -> int:
    return point.first + point.width


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
