"""The client loops: open-loop or paced, async (asyncpg) or threaded (psycopg).

One :class:`Engine` drives the clients of one process. Each client owns one
connection and loops: take a start time (now, or its slot of the paced schedule),
pick an operation by weight with its own seeded RNG, call ``execute_operation(db,
op)`` through the plugin's seam (an :class:`~tether.Operation` of its handle: the
gate, the call chain, the live version), and record the latency or the error's type.
The loop reads the operation's ``call``/``acall`` at every transaction, so a new
version of the plugin takes over between two transactions. The loop is written out
twice, once per kind of client, because every call saved on it is throughput on a
small machine.

A client draws from ``engine.weights``; :meth:`Engine.set_weights` replaces them (a
reloaded workload's new operation mix), and each client makes a new chooser at its
next transaction (one identity check per transaction).

Measuring starts after ``warmup``: operations that *start* before then run but are
not recorded and do not count towards ``transactions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tether import error_text
from tether.hosts.workload._pacing import intended_start_ns
from tether.hosts.workload._stats import Collector, OperationStats, OperationTick
from tether.hosts.workload._weights import make_chooser

__all__ = [
    "DirectOperation",
    "Engine",
    "EngineResult",
    "Executable",
    "Plan",
    "Tick",
    "in_thread",
]

_NS = 1_000_000_000
_YIELD_NS = 1_000_000  # an async client whose operations never wait yields this often
_FAR = 1 << 62

log = logging.getLogger("tether.bench")


def _log_new_error(operation: str, error_type: str, message: str) -> None:
    log.warning(
        "operation %s failed: %s: %s (the first of its kind; the report counts them all)",
        operation, error_type, message,
    )  # fmt: skip


_SHORT_WAIT = 0.05  # shorter pacing waits sleep; longer ones wake up on stop


class Executable(Protocol):
    """What a client calls per transaction: ``call(db, op)`` or ``await acall(db, op)``.

    A plugin's :class:`tether.Operation` (``handle.operation("execute_operation")``), or
    a :class:`DirectOperation` around a plain function (the benchmarks' baseline).
    """

    is_async: bool

    @property
    def call(self) -> Callable[..., object]: ...
    @property
    def acall(self) -> Callable[..., Any]: ...


class DirectOperation:
    """A plain function as an :class:`Executable`, with no plugin and no seam around it."""

    __slots__ = ("acall", "call", "is_async")

    def __init__(self, fn: Callable[..., Any], *, is_async: bool) -> None:
        self.call = fn
        self.acall = fn
        self.is_async = is_async


@dataclass(frozen=True, slots=True)
class Plan:
    """What one process runs. ``rate`` and ``transactions`` are this process's share."""

    clients: int
    duration: float | None = None
    transactions: int | None = None
    warmup: float = 0.0
    rate: float | None = None
    phase: float = 0.0
    seed: int = 0
    first_client: int = 0
    tick: float = 0.5


@dataclass(frozen=True, slots=True)
class Tick:
    """What happened from ``since`` to ``elapsed`` (seconds of the measured run, < 0
    while warming up): the interval since the previous tick.

    Ticks keep one schedule from the run's start, ``plan.tick`` apart, the same in
    every process: ``slot`` is this tick's place on it (the last tick of a run, when
    the clients end, takes the next slot, or the previous one's when it comes less
    than half a tick after it). ``operations`` holds the same figures per operation
    (only the operations that did something).
    """

    since: float
    elapsed: float
    successes: int
    errors: int
    latencies: Counter[int]
    total_successes: int
    total_errors: int
    slot: int = 0
    operations: Mapping[str, OperationTick] = field(default_factory=dict)


@dataclass(slots=True)
class EngineResult:
    stats: dict[str, OperationStats]
    elapsed: float
    stop_reason: str  # "duration", "transactions" or "interrupted"


class Engine:
    """Runs ``plan.clients`` clients over the given connections until the plan is done."""

    def __init__(
        self,
        plan: Plan,
        *,
        operation: Executable,
        weights: dict[str, int],
        on_tick: Callable[[Tick], None] | None = None,
    ) -> None:
        self.plan = plan
        self.operation = operation
        self.is_async = operation.is_async
        self.weights = weights
        self.on_tick = on_tick
        self.collector = Collector(weights, on_new_error=_log_new_error)
        self.stopping = False
        self.stop_reason = "duration" if plan.transactions is None else "transactions"
        self._tickets = itertools.count()
        self._slots = itertools.count()
        self._thread_stop = threading.Event()
        self._async_stop: asyncio.Event | None = None
        self._totals = [0, 0]
        self._last_tick_ns = 0
        self._slot = 0
        self._start_ns = 0
        self._measure_ns = 0
        self._end_ns = _FAR

    # ------------------------------------------------------------------ control

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop starting operations; those in flight finish and are recorded."""
        if not self.stopping:
            self.stop_reason = reason
        self.stopping = True
        self._thread_stop.set()
        if self._async_stop is not None:
            self._async_stop.set()

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Clients draw from ``weights`` from their next transaction on (operations new
        to the run are counted from then)."""
        self.collector.add_operations(weights)
        self.weights = dict(weights)  # a new object: the clients' cue

    def _exhausted(self) -> None:
        if not self.stopping:
            self.stop_reason = "transactions"
        self.stopping = True
        self._thread_stop.set()

    async def run(
        self, connections: Sequence[object], *, start_ns: int | None = None
    ) -> EngineResult:
        """Run every client to the end of the plan; ``start_ns`` (monotonic) aligns processes."""
        plan = self.plan
        self._async_stop = asyncio.Event()
        self._start_ns = time.monotonic_ns() if start_ns is None else start_ns
        self._measure_ns = self._start_ns + int(plan.warmup * _NS)
        self._last_tick_ns = self._start_ns
        self.collector.origin_ns = self._measure_ns
        if plan.duration is not None:
            self._end_ns = self._measure_ns + int(plan.duration * _NS)
        await self._wait_until(self._start_ns)
        ticker = asyncio.create_task(self._tick_forever())
        try:
            await self._run_clients(connections)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        finished = time.monotonic_ns()
        is_apart = finished - self._last_tick_ns >= self.plan.tick * _NS / 2
        self._tick(finished, self._slot + 1 if is_apart else self._slot)
        elapsed = max(0, finished - self._measure_ns) / _NS
        return EngineResult(self.collector.stats, elapsed, self.stop_reason)

    async def _run_clients(self, connections: Sequence[object]) -> None:
        """Run one client per connection until the plan is done (a subclass may run them
        its own way: :class:`~._multiplexed.MultiplexedEngine`)."""
        if self.is_async:
            await asyncio.gather(
                *(self._async_client(conn, index) for index, conn in enumerate(connections))
            )
        else:
            await asyncio.gather(
                *(
                    in_thread(self._sync_client, conn, index)
                    for index, conn in enumerate(connections)
                )
            )

    async def _wait_until(self, moment_ns: int) -> None:
        delay = (moment_ns - time.monotonic_ns()) / _NS
        if delay > 0:
            await asyncio.sleep(delay)

    async def _tick_forever(self) -> None:
        """Tick at ``start + k * plan.tick`` (a late tick skips the slots it missed), so
        that the ticks of every process line up on the run's clock."""
        period = max(1, int(self.plan.tick * _NS))
        while True:
            await self._wait_until(self._start_ns + (self._slot + 1) * period)
            now = time.monotonic_ns()
            self._tick(now, max(self._slot + 1, (now - self._start_ns) // period))

    def _tick(self, now_ns: int, slot: int) -> None:
        operations = self.collector.drain_operations()
        latencies: Counter[int] = Counter()
        successes = errors = 0
        for done in operations.values():
            latencies.update(done.latencies)
            successes += done.successes
            errors += done.errors
        self._totals[0] += successes
        self._totals[1] += errors
        since, self._last_tick_ns, self._slot = self._last_tick_ns, now_ns, slot
        if self.on_tick is not None:
            measure = self._measure_ns
            self.on_tick(
                Tick(
                    (since - measure) / _NS,
                    (now_ns - measure) / _NS,
                    successes,
                    errors,
                    latencies,
                    self._totals[0],
                    self._totals[1],
                    slot=slot,
                    operations=operations,
                )
            )

    def _rng(self, index: int) -> random.Random:
        return random.Random(f"{self.plan.seed}:{self.plan.first_client + index}")  # noqa: S311

    # ------------------------------------------------------------------ async clients

    async def _pace(self, intended_ns: int) -> None:
        delay = (intended_ns - time.monotonic_ns()) / _NS
        if delay <= 0:
            return
        if delay < _SHORT_WAIT:
            await asyncio.sleep(delay)
            return
        assert self._async_stop is not None  # set by run()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._async_stop.wait(), delay)

    async def _async_client(self, db: object, index: int) -> None:  # noqa: C901 - hot loop
        plan = self.plan
        rng = self._rng(index)
        drawn_from = self.weights
        choose = make_chooser(drawn_from, rng)
        operation = self.operation
        latencies = self.collector.latencies
        errors = self.collector.errors
        now = time.monotonic_ns
        measure_ns, end_ns = self._measure_ns, self._end_ns
        budget = plan.transactions
        tickets, slots = self._tickets, self._slots
        rate, phase, start_ns = plan.rate, plan.phase, self._start_ns
        yielded = now()
        while not self.stopping:
            if rate is None:
                began = now()
                if began >= end_ns:
                    break
            else:
                began = intended_start_ns(next(slots), start_ns=start_ns, rate=rate, phase=phase)
                if began >= end_ns:
                    break
                await self._pace(began)
                if self.stopping:
                    break
            measured = began >= measure_ns
            if measured and budget is not None and next(tickets) >= budget:
                self._exhausted()
                break
            if self.weights is not drawn_from:  # set_weights: a new operation mix
                drawn_from = self.weights
                choose = make_chooser(drawn_from, rng)
            op = choose()
            try:
                await operation.acall(db, op)
            except Exception as exc:  # the seam counted it against the plugin already
                if measured:
                    errors.append((op, type(exc).__name__, error_text(exc), now()))
                await asyncio.sleep(0)  # a failing plugin must not starve the loop
                continue
            finished = now()
            if measured:
                latencies[op].append((finished - began) // 1000)
            if finished - yielded >= _YIELD_NS:  # an operation that never waits would
                yielded = finished  # starve the loop (the ticks, Ctrl-C): let it run
                await asyncio.sleep(0)

    # ------------------------------------------------------------------ threaded clients

    def _sync_client(self, db: object, index: int) -> None:  # noqa: C901 - hot loop
        plan = self.plan
        rng = self._rng(index)
        drawn_from = self.weights
        choose = make_chooser(drawn_from, rng)
        operation = self.operation
        latencies = self.collector.latencies
        errors = self.collector.errors
        now = time.monotonic_ns
        measure_ns, end_ns = self._measure_ns, self._end_ns
        budget = plan.transactions
        tickets, slots = self._tickets, self._slots
        rate, phase, start_ns = plan.rate, plan.phase, self._start_ns
        wait = self._thread_stop.wait
        while not self.stopping:
            if rate is None:
                began = now()
                if began >= end_ns:
                    break
            else:
                began = intended_start_ns(next(slots), start_ns=start_ns, rate=rate, phase=phase)
                if began >= end_ns:
                    break
                delay = (began - now()) / _NS
                if delay > 0 and wait(delay):
                    break
            measured = began >= measure_ns
            if measured and budget is not None and next(tickets) >= budget:
                self._exhausted()
                break
            if self.weights is not drawn_from:  # set_weights: a new operation mix
                drawn_from = self.weights
                choose = make_chooser(drawn_from, rng)
            op = choose()
            try:
                operation.call(db, op)
            except Exception as exc:  # the seam counted it against the plugin already
                if measured:
                    errors.append((op, type(exc).__name__, error_text(exc), now()))
            else:
                if measured:
                    latencies[op].append((now() - began) // 1000)


async def in_thread(fn: Callable[[object, int], None], db: object, index: int) -> None:
    """Run one threaded client in a thread of its own (not the loop's bounded pool)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def target() -> None:
        try:
            fn(db, index)
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, exc)
        else:
            loop.call_soon_threadsafe(settle, None)

    threading.Thread(target=target, name=f"tether-bench-client-{index}", daemon=True).start()
    await done
