"""Event fan-out: one publisher, 10 subscribers with trivial handlers, N events.

    .venv/bin/python benchmarks/events.py [--events 20000] [--subscribers 10] [--rounds 7]

Throughput is deliveries per second (events x subscribers), timed from the first
publish until every subscriber has received all N events. Variants, run alternately
in each round (the median of the rounds is reported):

- tether ``await bus.publish`` (policy ``wait``, queues of 1,000: the publisher is
  held back whenever a subscriber falls 1,000 events behind);
- tether ``bus.publish_nowait`` with queues of N (nothing ever waits);
- blinker ``Signal.send`` to N receivers: synchronous, its delivery *is* the send;
- bare asyncio queues: N bounded ``asyncio.Queue`` (1,000) and N consumer tasks,
  the publisher awaiting ``put`` on each: the textbook asyncio fan-out;
- bare deque fan-out: per subscriber a ``deque`` and a wake-up future, consumers
  draining in a plain loop, unbounded: the shape tether's queues use, with nothing
  else (no gate, no statistics, no Event objects, no backpressure). The floor.

Each tether delivery also passes the subscriber's gate, counts statistics and checks
whether the handler returned an awaitable; that is what the ratio to bare asyncio
measures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable

from blinker import Signal

from tether._events import Event, EventBus
from tether.testing import make_scope

QUEUE = 1000


class Counter:
    """A trivial handler that resolves ``done`` when it has seen ``target`` events."""

    def __init__(self, target: int, done: Callable[[], None]) -> None:
        self.seen = 0
        self.target = target
        self.done = done

    def __call__(self, *_args: object, **_kwargs: object) -> None:
        self.seen += 1
        if self.seen == self.target:
            self.done()


def _counters(loop: asyncio.AbstractEventLoop, count: int, events: int):
    futures = [loop.create_future() for _ in range(count)]
    counters = [Counter(events, lambda f=f: f.set_result(None)) for f in futures]
    return counters, futures


def subscriber_door(name: str) -> object:
    """A subscriber plugin's door: open, committed, with the default call chain."""
    return make_scope(name).door


async def tether_await(events: int, subscribers: int) -> float:
    bus = EventBus(queue_size=QUEUE)
    await bus.start()
    counters, futures = _counters(asyncio.get_running_loop(), subscribers, events)
    for n, counter in enumerate(counters):
        bus.subscribe(subscriber_door(f"p{n}"), "bench.tick", counter)
    started = time.perf_counter()
    for i in range(events):
        await bus.publish("bench.tick", i)
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await bus.stop()
    return elapsed


async def tether_nowait(events: int, subscribers: int) -> float:
    bus = EventBus(queue_size=events)
    await bus.start()
    counters, futures = _counters(asyncio.get_running_loop(), subscribers, events)
    for n, counter in enumerate(counters):
        bus.subscribe(subscriber_door(f"p{n}"), "bench.tick", counter)
    started = time.perf_counter()
    publish = bus.publish_nowait
    for i in range(events):
        publish("bench.tick", i)
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await bus.stop()
    return elapsed


async def blinker_send(events: int, subscribers: int) -> float:
    signal = Signal("bench.tick")
    counters = [Counter(events, lambda: None) for _ in range(subscribers)]
    for counter in counters:
        signal.connect(counter, weak=False)
    started = time.perf_counter()
    send = signal.send
    for i in range(events):
        send(None, data=i)
    elapsed = time.perf_counter() - started
    if any(c.seen != events for c in counters):
        raise SystemExit("blinker lost events")
    return elapsed


async def bare_asyncio(events: int, subscribers: int) -> float:
    counters, futures = _counters(asyncio.get_running_loop(), subscribers, events)
    queues: list[asyncio.Queue[int]] = [asyncio.Queue(QUEUE) for _ in range(subscribers)]

    async def consume(queue: asyncio.Queue[int], handler: Counter) -> None:
        while True:
            handler(await queue.get())

    tasks = [asyncio.create_task(consume(q, c)) for q, c in zip(queues, counters, strict=True)]
    started = time.perf_counter()
    for i in range(events):
        for queue in queues:
            await queue.put(i)
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return elapsed


async def bare_deque(events: int, subscribers: int) -> float:
    loop = asyncio.get_running_loop()
    counters, futures = _counters(loop, subscribers, events)
    buffers: list[deque[int]] = [deque() for _ in range(subscribers)]
    wakeups: list[asyncio.Future[None] | None] = [None] * subscribers

    async def consume(n: int, buffer: deque[int], handler: Counter) -> None:
        while True:
            while buffer:
                handler(buffer.popleft())
            wakeups[n] = waiter = loop.create_future()
            await waiter

    tasks = [
        asyncio.create_task(consume(n, b, c))
        for n, (b, c) in enumerate(zip(buffers, counters, strict=True))
    ]
    await asyncio.sleep(0)
    started = time.perf_counter()
    for i in range(events):
        for n, buffer in enumerate(buffers):
            buffer.append(i)
            waiter = wakeups[n]
            if waiter is not None:
                wakeups[n] = None
                waiter.set_result(None)
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return elapsed


VARIANTS: dict[str, Callable[[int, int], Awaitable[float]]] = {
    "tether await publish": tether_await,
    "tether publish_nowait": tether_nowait,
    "blinker Signal.send": blinker_send,
    "bare asyncio queues": bare_asyncio,
    "bare deque fan-out": bare_deque,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(
        f"{args.events} events x {args.subscribers} subscribers, {args.rounds} rounds, "
        "variants alternating; medians (min-max)"
    )
    _ = Event  # the type every tether handler receives
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _round in range(args.rounds + 1):  # round 0 warms up and is discarded
        for name, variant in VARIANTS.items():
            gc.collect()
            elapsed = asyncio.run(variant(args.events, args.subscribers))
            if _round:
                times[name].append(elapsed)

    deliveries = args.events * args.subscribers
    rate = {name: deliveries / statistics.median(t) for name, t in times.items()}
    for name, samples in times.items():
        low, high = deliveries / max(samples), deliveries / min(samples)
        print(f"{name:22} {rate[name]:>12,.0f} deliveries/s ({low:,.0f}-{high:,.0f})")
    for tether in ("tether await publish", "tether publish_nowait"):
        for base in ("blinker Signal.send", "bare asyncio queues", "bare deque fan-out"):
            print(f"  {tether} / {base}: {rate[tether] / rate[base]:.2f}x")


if __name__ == "__main__":
    main()
