"""What the seam costs per call: every call into a plugin against a bare function call.

Every way into a plugin (hooks, events, services, middleware, routes, operations,
``PluginHandle.call``) is an entry of the seam: the version's door (the gate's fast
path), then the plugin's call chain. This script times, in one run and alternating,
a trivial function called bare and through a seam entry of an open plugin version:

- ``seam``: the default chain (recovery and metrics; for an async call also the
  timeout, ``timeouts.call``: a deadline the watchdog can enforce). Tracing is off
  (no OpenTelemetry SDK is configured), so it compiles to nothing;
- ``door only``: an empty chain (``call_chain: []``): the gate's fast path alone.

It prints nanoseconds per call (minimum over rounds, median in brackets), what the
seam adds, and the ratio to the bare call. The function does nothing, so this is the
worst case: a real plugin method costs more, and the seam's share less.

    .venv/bin/python benchmarks/gate.py [--rounds 15] [--calls 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from collections.abc import Callable

from tether import PluginEntry, Runtime
from tether.testing import make_scope


def work(x: int) -> int:
    return x


async def awork(x: int) -> int:
    return x


def sync_loop(fn: Callable[[int], object], calls: int) -> Callable[[], None]:
    def run() -> None:
        for i in range(calls):
            fn(i)

    return run


def async_loop(
    fn: Callable[[int], object], calls: int, loop: asyncio.AbstractEventLoop
) -> Callable[[], None]:
    async def run() -> None:
        for i in range(calls):
            await fn(i)  # type: ignore[misc]

    return lambda: loop.run_until_complete(run())


def entry(fn: Callable[..., object], *, chain: list[str] | None) -> PluginEntry:
    """An entry of an open, committed plugin version, with the given call chain."""
    scope = make_scope("bench", runtime=Runtime(), call_chain=chain)
    return scope.entry(fn, "call:work")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    calls = args.calls
    loop = asyncio.new_event_loop()
    seam_sync, door_sync = entry(work, chain=None), entry(work, chain=[])
    seam_async, door_async = entry(awork, chain=None), entry(awork, chain=[])
    contenders: dict[str, Callable[[], None]] = {
        "bare call": sync_loop(work, calls),
        "seam call": sync_loop(seam_sync.call, calls),
        "door-only call": sync_loop(door_sync.call, calls),
        "bare await": async_loop(awork, calls, loop),
        "seam await": async_loop(seam_async.acall, calls, loop),
        "door-only await": async_loop(door_async.acall, calls, loop),
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter_ns()
            contenders[name]()
            samples[name].append((time.perf_counter_ns() - started) / calls)
    loop.close()
    if seam_sync.stats[0] < calls * args.rounds or seam_async.stats[0] < calls * args.rounds:
        raise SystemExit("the seam's metrics counted fewer calls than were made")
    best = {name: min(values) for name, values in samples.items()}
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"{args.rounds} alternating rounds of {calls:,} calls; ns/call: minimum (median)\n")
    for name in contenders:
        print(f"{name:>16}: {best[name]:7.1f} ({median[name]:7.1f})")
    print()
    for bare, seam in (
        ("bare call", "seam call"),
        ("bare call", "door-only call"),
        ("bare await", "seam await"),
        ("bare await", "door-only await"),
    ):
        added = best[seam] - best[bare]
        print(
            f"{seam:>16}: +{added:5.1f} ns per call, ratio {best[seam] / best[bare]:.2f} "
            f"(to the {bare} of a function that does nothing: the worst case)"
        )


if __name__ == "__main__":
    main()
