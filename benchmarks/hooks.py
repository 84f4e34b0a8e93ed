"""Sync hook dispatch: tether's ``HookRegistry.call`` against pluggy and a bare loop.

For 1, 5 and 20 trivial sync handlers (each returns its argument), in one process:

- tether: ``registry.call("pre_request", x)`` over handlers each plugin registered
  through its own context (``ctx.register_hook``): one real, open gate and door per
  plugin, the default call chain (in-flight counting, execution counts, one call in 16
  timed, errors counted against the plugin): the production path;
- pluggy: ``pm.hook.myhook(arg=x)`` with the same number of hookimpls;
- bare: a Python loop over the same handler functions appending the results (the floor).

    .venv/bin/python benchmarks/hooks.py [--rounds 25] [--sample-ms 25]

The three contenders alternate within each round (the order rotates from round to
round) so that machine noise hits them alike; the table shows the minimum of the
rounds (the median in brackets). The cyclic GC stays on, as in production
(``--no-gc`` turns it off). Goal: tether/pluggy <= 0.5 at 5 handlers.

The last line puts the goal in proportion: timing a call of n handlers reads the
clock n + 1 times, which is why tether times one call of the chain in 16 (like every
call into a plugin) rather than each.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from importlib.metadata import version
from time import perf_counter_ns
from types import SimpleNamespace

import pluggy

from tether import HookRegistry, Runtime
from tether.testing import make_scope

SIZES = (1, 5, 20)
GOAL_SIZE, GOAL_RATIO = 5, 0.5
hookspec = pluggy.HookspecMarker("bench")
hookimpl = pluggy.HookimplMarker("bench")


class Spec:
    @hookspec
    def myhook(self, arg: object) -> object:
        """The hook every contender calls."""


def make_handler() -> Callable[[object], object]:
    def handler(arg: object) -> object:
        return arg

    return handler


def build(size: int) -> dict[str, object]:
    """The namespace each timed statement runs in."""
    handlers = [make_handler() for _ in range(size)]

    runtime = Runtime()
    for n, handler in enumerate(handlers):
        make_scope(f"plugin-{n}", runtime=runtime).context.register_hook(
            "pre_request", 100, handler
        )
    registry = runtime.hooks

    pm = pluggy.PluginManager("bench")
    pm.add_hookspecs(Spec)
    for n, handler in enumerate(handlers):
        pm.register(SimpleNamespace(myhook=hookimpl(handler)), name=f"plugin-{n}")

    def bare(arg: object) -> list[object]:
        results = []
        for handler in handlers:
            results.append(handler(arg))  # noqa: PERF401 - the loop is the point
        return results

    x = object()
    expected = [x] * size
    if registry.call("pre_request", x).results != expected:
        sys.exit("tether returned the wrong results")
    if pm.hook.myhook(arg=x) != expected or bare(x) != expected:
        sys.exit("pluggy or the bare loop returned the wrong results")
    return {"registry": registry, "pm": pm, "bare": bare, "x": x}


STATEMENTS = {
    "tether": 'registry.call("pre_request", x)',
    "pluggy": "pm.hook.myhook(arg=x)",
    "bare": "bare(x)",
}


def measure(size: int, rounds: int, sample_seconds: float) -> dict[str, list[float]]:
    """Nanoseconds per call of each contender, one sample per round."""
    namespace = build(size)
    timers = {name: timeit.Timer(stmt, globals=namespace) for name, stmt in STATEMENTS.items()}
    numbers = {}
    for name, timer in timers.items():
        loops, seconds = timer.autorange()
        numbers[name] = max(1, int(loops * sample_seconds / seconds))
    samples: dict[str, list[float]] = {name: [] for name in timers}
    names = list(timers)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            number = numbers[name]
            samples[name].append(timers[name].timeit(number) / number * 1e9)
    registry = namespace["registry"]
    assert isinstance(registry, HookRegistry)  # for the type checker
    counted = registry.metrics("plugin-0")["pre_request"].execution_count
    if counted < rounds * numbers["tether"]:
        sys.exit(f"metrics counted {counted} executions, fewer than the calls made")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--sample-ms", type=float, default=25.0)
    parser.add_argument("--no-gc", action="store_true", help="disable the cyclic GC while timing")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()} on {platform.platform()}, pluggy {version('pluggy')}"
    )
    print(f"{args.rounds} alternating rounds of ~{args.sample_ms:.0f} ms per contender and size")
    print("ns/call: minimum over rounds (median)\n")
    header = (
        f"{'handlers':>8}  {'tether':>15}  {'pluggy':>15}  {'bare':>13}  "
        f"{'tether/pluggy':>13}  {'tether/bare':>11}"
    )
    print(header)
    print("-" * len(header))
    ratios: dict[int, float] = {}
    if args.no_gc:
        gc.disable()
    try:
        for size in SIZES:
            samples = measure(size, args.rounds, args.sample_ms / 1000)
            best = {name: min(values) for name, values in samples.items()}
            median = {name: statistics.median(values) for name, values in samples.items()}
            ratios[size] = best["tether"] / best["pluggy"]
            cells = [f"{best[n]:>6.0f} ({median[n]:>6.0f})" for n in ("tether", "pluggy")]
            print(
                f"{size:>8}  {cells[0]:>15}  {cells[1]:>15}  "
                f"{best['bare']:>5.0f} ({median['bare']:>5.0f})  "
                f"{ratios[size]:>13.3f}  {best['tether'] / best['bare']:>11.2f}"
            )
    finally:
        gc.enable()
    clock = min(timeit.repeat("clock()", globals={"clock": perf_counter_ns}, number=200_000))
    reads_ns = clock / 200_000 * 1e9 * (GOAL_SIZE + 1)
    ratio = ratios[GOAL_SIZE]
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(
        f"\nfor scale: the {GOAL_SIZE + 1} perf_counter_ns() reads that time a call of "
        f"{GOAL_SIZE} handlers cost {reads_ns:.0f} ns (tether times one call in 16)"
    )
    print(
        f"goal tether/pluggy <= {GOAL_RATIO} at {GOAL_SIZE} handlers: {verdict} "
        f"(tether/pluggy = {ratio:.3f})"
    )


if __name__ == "__main__":
    main()
