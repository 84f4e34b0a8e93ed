"""``--processes P``: clients spread over worker processes, results merged exactly.

Each worker is a fresh interpreter (``spawn``): it loads and initializes the
workload plugin itself, opens its share of the connections, says it is ready, and
waits. The parent then sends every worker the same start time (``CLOCK_MONOTONIC``
is one clock for the whole machine), so warmup, duration and the paced schedule
line up. Workers stream :class:`Tick`\\ s for the progress line and finish with
their histograms encoded (HdrHistogram's compressed form), which the parent
decodes and adds: the merged percentiles are exact, not averages of percentiles.

Workers ignore SIGINT: Ctrl-C reaches the parent, which tells them to stop; a
worker whose parent disappears stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

from tether import TetherConfig
from tether.errors import TetherError
from tether.hosts.workload._database import close_connections, open_connections
from tether.hosts.workload._engine import Engine, Plan, Tick
from tether.hosts.workload._engines import attach, engine_driver, make_engine, release
from tether.hosts.workload._errors import WorkerError
from tether.hosts.workload._loop import run_with_best_loop
from tether.hosts.workload._stats import OperationStats
from tether.hosts.workload._workload import WorkloadSpec, open_workload

__all__ = ["WorkerOutcome", "merge_metrics", "run_workers"]

_READY_TIMEOUT = 120.0
_START_DELAY_NS = 100_000_000


@dataclass(frozen=True, slots=True)
class _Job:
    index: int
    spec: WorkloadSpec
    framework_config: TetherConfig | None
    dsn: str
    plan: Plan
    weights: dict[str, int]
    retry_attempts: int | None = None
    engine: str = "per-client"


@dataclass(slots=True)
class WorkerOutcome:
    """What all workers did together."""

    stats: dict[str, OperationStats]
    elapsed: float
    stop_reason: str
    metrics: list[dict[str, object]]


# --------------------------------------------------------------------------- worker side


def _worker_main(job: _Job, queue: Queue[object], control: Connection) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_with_best_loop(_worker(job, queue, control))
    except BaseException as exc:  # reported to the parent, which decides
        queue.put(("error", job.index, _describe(exc), getattr(exc, "hint", None)))


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TetherError) else f"{type(exc).__name__}: {exc}"


async def _worker(job: _Job, queue: Queue[object], control: Connection) -> None:
    loop = asyncio.get_running_loop()
    start: asyncio.Future[int | None] = loop.create_future()
    engine: list[Engine] = []

    def on_message(message: tuple[object, ...] | None) -> None:
        if message is not None and message[0] == "start" and not start.done():
            start.set_result(int(message[1]))  # type: ignore[call-overload]
            return
        if not start.done():
            start.set_result(None)  # told to stop (or the parent is gone) before starting
        for running in engine:
            running.request_stop()

    threading.Thread(target=_listen, args=(control, loop, on_message), daemon=True).start()
    workload = await open_workload(
        job.spec, framework_config=job.framework_config, retry_attempts=job.retry_attempts
    )
    connections: list[Any] = []
    driver = engine_driver(workload, job.engine)
    running = make_engine(
        workload,
        job.engine,
        job.plan,
        job.weights,
        lambda tick: queue.put(("tick", job.index, tick)),
    )
    try:
        connections = await open_connections(job.dsn, job.plan.clients, driver=driver)
        await attach(running, connections)
        queue.put(("ready", job.index))
        start_ns = await start
        if start_ns is None:
            queue.put(("done", job.index, {}, 0.0, "interrupted", {}))
            return
        engine.append(running)
        result = await running.run(connections, start_ns=start_ns)
        metrics = await workload.metrics()
        encoded = {op: stats.encode() for op, stats in result.stats.items()}
        queue.put(("done", job.index, encoded, result.elapsed, result.stop_reason, metrics))
    finally:
        release(running)
        await close_connections(connections, driver=driver)
        await workload.aclose()


def _listen(
    control: Connection,
    loop: asyncio.AbstractEventLoop,
    on_message: Callable[[tuple[object, ...] | None], None],
) -> None:
    while True:
        try:
            message = control.recv()
        except (EOFError, OSError):
            message = None
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to tell
            loop.call_soon_threadsafe(on_message, message)
        if message is None or message[0] == "stop":
            return


# --------------------------------------------------------------------------- parent side


class _Parent:
    def __init__(self, jobs: list[_Job], on_tick: Callable[[Tick], None] | None) -> None:
        self.jobs = jobs
        self.on_tick = on_tick
        self.context = multiprocessing.get_context("spawn")
        self.queue: Any = self.context.Queue()
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        self.ready: set[int] = set()
        self.done: dict[int, tuple[Any, ...]] = {}
        self.failure: WorkerError | None = None
        self.changed = asyncio.Event()
        self.stopped = False

    def start(self) -> None:
        for job in self.jobs:
            parent_end, child_end = self.context.Pipe()
            process = self.context.Process(
                target=_worker_main,
                args=(job, self.queue, child_end),
                name=f"tether-bench-worker-{job.index}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self.pipes.append(parent_end)
            self.processes.append(process)
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._read, args=(loop,), daemon=True).start()

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            message = self.queue.get()
            if message is None:
                return
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._handle, message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind, index = message[0], message[1]
        if kind == "tick":
            if self.on_tick is not None:
                self.on_tick(message[2])
            return
        if kind == "ready":
            self.ready.add(index)
        elif kind == "done":
            self.done[index] = message
        elif kind == "error" and self.failure is None:
            text, hint = message[2], message[3]
            self.failure = WorkerError(f"worker process {index} failed: {text}", hint=hint)
        self.changed.set()

    def send(self, message: tuple[object, ...]) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(message)

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.send(("stop",))

    async def wait_for(self, condition: Callable[[], bool], timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not condition():
            if self.failure is not None:
                raise self.failure
            dead = [p for p in self.processes if not p.is_alive() and p.exitcode not in (0, None)]
            if dead and not condition():
                await asyncio.sleep(0.2)  # its last message may still be on the way
                if self.failure is not None:
                    raise self.failure
                if not condition():
                    raise WorkerError(
                        f"worker process {dead[0].name} exited with code {dead[0].exitcode}",
                        hint="run with --processes 1 to see the error in this process",
                    )
            if deadline is not None and time.monotonic() > deadline:
                raise WorkerError(
                    f"worker processes not ready after {timeout:g}s",
                    hint="check the database and the plugin's initialize()",
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)
        if self.failure is not None:
            raise self.failure

    async def close(self) -> None:
        self.stop()
        for process in self.processes:
            await asyncio.to_thread(process.join, 10.0)
            if process.is_alive():
                process.terminate()
                await asyncio.to_thread(process.join, 5.0)
        self.queue.put(None)
        for pipe in self.pipes:
            pipe.close()


async def run_workers(
    *,
    spec: WorkloadSpec,
    framework_config: TetherConfig | None,
    dsn: str,
    plans: list[Plan],
    weights: dict[str, int],
    on_tick: Callable[[Tick], None] | None,
    stop_requested: asyncio.Event,
    retry_attempts: int | None = None,
    engine: str = "per-client",
) -> WorkerOutcome:
    """Run one worker process per plan (each with the engine ``engine`` names); merge
    their histograms, errors and metrics."""
    jobs = [
        _Job(index, spec, framework_config, dsn, plan, weights, retry_attempts, engine)
        for index, plan in enumerate(plans)
    ]
    parent = _Parent(jobs, on_tick)
    parent.start()
    watcher: asyncio.Task[None] | None = None
    try:
        await parent.wait_for(lambda: len(parent.ready) == len(jobs), _READY_TIMEOUT)
        parent.send(("start", time.monotonic_ns() + _START_DELAY_NS))

        async def relay_stop() -> None:
            await stop_requested.wait()
            parent.stop()

        watcher = asyncio.create_task(relay_stop())
        await parent.wait_for(lambda: len(parent.done) == len(jobs), None)
    finally:
        if watcher is not None:
            watcher.cancel()
        await parent.close()
    return _merge(weights, [parent.done[i] for i in range(len(jobs))])


def _merge(weights: dict[str, int], messages: list[tuple[Any, ...]]) -> WorkerOutcome:
    stats = {op: OperationStats() for op in weights}
    elapsed = 0.0
    reasons: set[str] = set()
    metrics: list[dict[str, object]] = []
    for _, _, encoded, worker_elapsed, reason, worker_metrics in messages:
        for op, data in encoded.items():
            stats[op].merge(OperationStats.decode(data))
        elapsed = max(elapsed, worker_elapsed)
        reasons.add(reason)
        metrics.append(worker_metrics)
    reason = next(
        (r for r in ("interrupted", "transactions", "duration") if r in reasons), "duration"
    )
    return WorkerOutcome(stats, elapsed, reason, metrics)


def merge_metrics(values: list[dict[str, object]]) -> dict[str, object]:
    """One dict from each worker's ``get_metrics()``.

    Numbers are added up (metrics are counters: a mean cannot be added, so report a
    sum and a count instead); nested dicts are merged the same way; other values
    every worker agrees on are kept, and differing ones become a list, one entry
    per worker.
    """
    merged: dict[str, object] = {}
    keys = [key for metrics in values for key in metrics]
    for key in dict.fromkeys(keys):
        found = [m[key] for m in values if key in m]
        if all(_is_number(v) for v in found):
            merged[key] = sum(found)  # type: ignore[arg-type]
        elif all(isinstance(v, dict) for v in found):
            merged[key] = merge_metrics(found)  # type: ignore[arg-type]
        elif all(v == found[0] for v in found):
            merged[key] = found[0]
        else:
            merged[key] = found
    return merged


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
