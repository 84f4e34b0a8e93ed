"""What passing a plugin's gate costs on the normal path (the gate open).

Compares, in one run and alternating, a bare call of a trivial function with the
same call wrapped in ``gate.enter()`` / ``gate.exit()`` (sync), and a bare
``await`` of a trivial coroutine with ``await gate.enter_async()`` / ``gate.exit()``.
Prints nanoseconds per call, the gate's added cost, and the ratio to the bare call.

    .venv/bin/python benchmarks/gate.py
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import time
from collections.abc import Callable

from tether._gate import Gate

ROUNDS = 15
CALLS = 200_000


def work(x: int) -> int:
    return x


async def awork(x: int) -> int:
    return x


def bare_sync() -> None:
    for i in range(CALLS):
        work(i)


def gated_sync(gate: Gate) -> Callable[[], None]:
    def run() -> None:
        for i in range(CALLS):
            gate.enter()
            try:
                work(i)
            finally:
                gate.exit()

    return run


async def bare_async() -> None:
    for i in range(CALLS):
        await awork(i)


async def gated_async(gate: Gate) -> None:
    for i in range(CALLS):
        await gate.enter_async()
        try:
            await awork(i)
        finally:
            gate.exit()


def inlined_sync(gate: Gate) -> Callable[[], None]:
    """The fast path the hook registry and event bus inline: one flag, two deque ops."""
    calls = gate.calls

    def run() -> None:
        for i in range(CALLS):
            if not gate.is_open:
                gate.enter()  # the slow path: held or closed
            else:
                calls.append(None)
            try:
                work(i)
            finally:
                calls.pop()

    return run


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - started) / CALLS


def main() -> None:
    gate = Gate("bench")
    gate.open()
    loop = asyncio.new_event_loop()
    contenders: dict[str, Callable[[], object]] = {
        "bare call": bare_sync,
        "gated call": gated_sync(gate),
        "inlined gate": inlined_sync(gate),
        "bare await": lambda: loop.run_until_complete(bare_async()),
        "gated await": lambda: loop.run_until_complete(gated_async(gate)),
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(ROUNDS):
        for name, fn in contenders.items():
            samples[name].append(timed(fn))
    loop.close()
    best = {name: min(values) for name, values in samples.items()}
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"{ROUNDS} alternating rounds of {CALLS:,} calls; ns/call: minimum (median)\n")
    for name in contenders:
        print(f"{name:>12}: {best[name]:7.1f} ({median[name]:7.1f})")
    pairs = (
        ("bare call", "gated call"),
        ("bare call", "inlined gate"),
        ("bare await", "gated await"),
    )
    for bare, gated in pairs:
        added = best[gated] - best[bare]
        print(
            f"\n{gated}: +{added:.1f} ns per call, "
            f"{best[gated] / best[bare]:.2f}x the {bare} (a trivial function: the worst case)"
        )
    assert gate.in_flight == 0


if __name__ == "__main__":
    main()
