"""Service calls: an imported service proxy against a direct call of the same bound method.

Two plugin contexts share one ``Runtime`` (as a manager builds them): ``exporter``
calls ``export_service("Bench", service)`` with its gate open, ``importer`` (which
declares the dependency) calls ``import_service("exporter", "Bench")``. Each case
times ``service.method(...)`` (direct) and ``proxy.method(...)`` (through the proxy,
the exporter's gate and its error accounting) in the same process:

- echo: ``def echo(self, x): return x`` -- the proxy's whole cost, nothing to hide it;
- lookup: a dict lookup and an f-string (~100-200 ns of real work);
- kwonly: ``def scaled(self, x, *, factor=2)`` called as ``scaled(3, factor=4)``;
- async: ``async def aecho(self, x)`` awaited in a loop inside one running event loop.

    .venv/bin/python benchmarks/services.py [--rounds 15] [--sample-ms 20]

Direct and proxy alternate within each round (the order flips every round) so that
machine noise hits both alike. The table shows ns/call, the minimum over rounds
(the median in brackets), and proxy/direct for both. Goal: a proxy call costs at
most 1.5x the direct call.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

from tether import Manifest, PluginScope, Runtime
from tether._gate import Gate

GOAL = 1.5


class Service:
    def __init__(self) -> None:
        self.users = {n: {"name": f"user{n}", "email": f"user{n}@example.com"} for n in range(64)}

    def echo(self, x: object) -> object:
        return x

    def lookup(self, user_id: int) -> str:
        user = self.users[user_id]
        return f"{user['name']} <{user['email']}>"

    def scaled(self, x: int, *, factor: int = 2) -> int:
        return x * factor

    async def aecho(self, x: object) -> object:
        return x


def scope(runtime: Runtime, name: str, **fields: object) -> PluginScope:
    """A plugin's scope as a manager builds it: its manifest, its open door, its context."""
    manifest = Manifest.model_validate(
        {
            "name": name,
            "version": "1.0.0",
            "description": f"the {name} benchmark plugin",
            "author": "benchmarks",
            "entry": "plugin:Plugin",
            **fields,
        }
    )
    gate = Gate(name)
    door = gate.add_door(manifest.version)
    made = PluginScope(
        manifest=manifest, config={}, permissions=frozenset(), runtime=runtime, door=door
    )
    door.committed = True
    gate.open(door)
    return made


def build(state: Path) -> tuple[Service, object, Gate]:
    """The service, the importer's proxy for it, and the exporter's gate."""
    runtime = Runtime(state_directory=state)
    exporter = scope(runtime, "exporter", exports=[{"name": "Bench"}])
    importer = scope(runtime, "importer", dependencies=[{"name": "exporter"}])
    service = Service()
    exporter.context.export_service("Bench", service)
    proxy: object = importer.context.import_service("exporter", "Bench")
    return service, proxy, exporter.door.gate


SYNC_CASES = {
    "echo": "target.echo(x)",
    "lookup": "target.lookup(17)",
    "kwonly": "target.scaled(3, factor=4)",
}


def sync_timer(stmt: str, target: object) -> Callable[[int], float]:
    timer = timeit.Timer(stmt, globals={"target": target, "x": object()})
    return timer.timeit


def async_timer(target: object, loop: asyncio.AbstractEventLoop) -> Callable[[int], float]:
    """Time ``await target.aecho(x)`` in a loop inside one coroutine on ``loop``."""
    x = object()
    clock = timeit.default_timer

    async def run(number: int) -> float:
        start = clock()
        for _ in range(number):
            await target.aecho(x)  # type: ignore[attr-defined]
        return clock() - start

    def time_calls(number: int) -> float:
        return loop.run_until_complete(run(number))

    return time_calls


def calibrate(timer: Callable[[int], float], sample_seconds: float) -> int:
    number = 1
    while True:
        elapsed = timer(number)
        if elapsed >= 0.02:  # long enough to scale from
            return max(1, int(number * sample_seconds / elapsed))
        number *= 10


def measure(
    timers: dict[str, Callable[[int], float]], rounds: int, sample_seconds: float
) -> dict[str, list[float]]:
    """ns/call of each contender, one sample per round, alternating."""
    numbers = {name: calibrate(timer, sample_seconds) for name, timer in timers.items()}
    samples: dict[str, list[float]] = {name: [] for name in timers}
    names = list(timers)
    for round_ in range(rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            number = numbers[name]
            samples[name].append(timers[name](number) / number * 1e9)
    return samples


def check(service: Service, proxy: object, loop: asyncio.AbstractEventLoop) -> None:
    p = proxy  # typed as object: the proxy's methods are generated at export time
    calls = [
        (service.echo(1), p.echo(1)),  # type: ignore[attr-defined]
        (service.lookup(17), p.lookup(17)),  # type: ignore[attr-defined]
        (service.scaled(3, factor=4), p.scaled(3, factor=4)),  # type: ignore[attr-defined]
        (
            loop.run_until_complete(service.aecho(2)),
            loop.run_until_complete(p.aecho(2)),  # type: ignore[attr-defined]
        ),
    ]
    for direct, proxied in calls:
        if direct != proxied:
            sys.exit(f"the proxy returned {proxied!r}, the direct call {direct!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--sample-ms", type=float, default=20.0)
    args = parser.parse_args()
    sample_seconds = args.sample_ms / 1000

    with tempfile.TemporaryDirectory(prefix="tether-bench-") as state:
        service, proxy, gate = build(Path(state))
        loop = asyncio.new_event_loop()
        try:
            check(service, proxy, loop)
            print(f"python {platform.python_version()} on {platform.platform()}")
            print(f"{args.rounds} alternating rounds of ~{args.sample_ms:.0f} ms per contender")
            print("ns/call: minimum over rounds (median)\n")
            header = (
                f"{'case':>8}  {'direct':>15}  {'proxy':>15}  {'proxy/direct':>12}  {'(median)':>8}"
            )
            print(header)
            print("-" * len(header))
            ratios: dict[str, float] = {}
            gc.disable()
            try:
                cases: dict[str, dict[str, Callable[[int], float]]] = {
                    name: {"direct": sync_timer(stmt, service), "proxy": sync_timer(stmt, proxy)}
                    for name, stmt in SYNC_CASES.items()
                }
                cases["async"] = {
                    "direct": async_timer(service, loop),
                    "proxy": async_timer(proxy, loop),
                }
                for name, timers in cases.items():
                    samples = measure(timers, args.rounds, sample_seconds)
                    best = {k: min(v) for k, v in samples.items()}
                    median = {k: statistics.median(v) for k, v in samples.items()}
                    ratios[name] = best["proxy"] / best["direct"]
                    median_ratio = median["proxy"] / median["direct"]
                    cells = [f"{best[k]:>6.1f} ({median[k]:>6.1f})" for k in ("direct", "proxy")]
                    print(
                        f"{name:>8}  {cells[0]:>15}  {cells[1]:>15}  "
                        f"{ratios[name]:>12.2f}  {median_ratio:>8.2f}"
                    )
            finally:
                gc.enable()
        finally:
            loop.close()
        if gate.in_flight or gate.error_count:
            sys.exit(
                f"the gate was left with {gate.in_flight} in flight, {gate.error_count} errors"
            )

    met = [name for name, ratio in ratios.items() if ratio <= GOAL]
    missed = [f"{name} ({ratios[name]:.2f}x)" for name in ratios if name not in met]
    verdict = "met for every case" if not missed else f"NOT met for {', '.join(missed)}"
    print(f"\ngoal: a proxy call at most {GOAL}x the direct call: {verdict}")


if __name__ == "__main__":
    main()
