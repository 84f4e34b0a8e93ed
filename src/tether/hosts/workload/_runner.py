"""``run_bench``: one whole run, from loading the workload to the report.

The order: load and initialize the workload (so a bad name or config fails before
any database work), find the database (a DSN, or the embedded server), connect
once (the setup connection, which also proves the database is reachable), run
``setup``, run the clients (here, or in worker processes), collect
``get_metrics()``, run ``cleanup`` if asked, and close everything.

With ``watch``, the workload's directory is watched while the clients run, and a
save reloads the plugin mid-run (:mod:`~tether.hosts.workload._reloads`): the
report's ``phases`` say which version ran when, its ``reloads`` each attempt. Every
run has its phases (one, without reloads).

Ctrl-C while clients run stops them cleanly: operations in flight finish, and the
report covers what was done (``stop_reason: interrupted``). A second Ctrl-C aborts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from tether import TetherConfig
from tether.hosts.workload._cores import auto_multiplexed_processes
from tether.hosts.workload._database import (
    Database,
    close_connections,
    open_connections,
    server_version,
)
from tether.hosts.workload._embedded import default_data_directory, start_embedded
from tether.hosts.workload._engine import Plan, Tick
from tether.hosts.workload._engines import (
    MULTIPLEXED,
    attach,
    choose_engine,
    engine_driver,
    make_engine,
    release,
)
from tether.hosts.workload._errors import BenchError
from tether.hosts.workload._loop import event_loop_name
from tether.hosts.workload._pacing import process_rates, split_evenly
from tether.hosts.workload._phases import Phase, ReloadAttempt
from tether.hosts.workload._reloads import ReloadFollower
from tether.hosts.workload._report import BenchReport
from tether.hosts.workload._series import Series
from tether.hosts.workload._settings import BenchSettings
from tether.hosts.workload._stats import OperationStats
from tether.hosts.workload._workers import merge_metrics, run_workers
from tether.hosts.workload._workload import (
    LoadedWorkload,
    WorkloadSpec,
    open_workload,
    without_failed,
)

__all__ = ["plans_for", "run_bench"]


def plans_for(settings: BenchSettings) -> list[Plan]:
    """How the clients, transactions and rate of ``settings`` are shared among processes."""
    clients = split_evenly(settings.clients, settings.processes)
    transactions: list[int | None] = (
        list(split_evenly(settings.transactions, settings.processes))
        if settings.transactions is not None
        else [None] * settings.processes
    )
    rates: list[tuple[float | None, float]] = (
        list(process_rates(settings.rate, clients))
        if settings.rate is not None
        else [(None, 0.0)] * settings.processes
    )
    plans = []
    first = 0
    for share, budget, (rate, phase) in zip(clients, transactions, rates, strict=True):
        plans.append(
            Plan(
                clients=share,
                duration=settings.duration,
                transactions=budget,
                warmup=settings.warmup,
                rate=rate,
                phase=phase,
                seed=settings.seed,
                first_client=first,
                tick=settings.tick,
            )
        )
        first += share
    return plans


@dataclass(frozen=True, slots=True)
class _Plugins:
    """What the worker processes load: the framework config, the ``--retries`` override."""

    config: TetherConfig | None
    retry_attempts: int | None


@dataclass(frozen=True, slots=True)
class _Reloads:
    """Whether to watch the workload, and who hears each reload attempt."""

    watch: bool = False
    on_reload: Callable[[ReloadAttempt], None] | None = None


async def run_bench(
    spec: WorkloadSpec,
    settings: BenchSettings,
    *,
    framework_config: TetherConfig | None = None,
    notify: Callable[[str], None] = lambda _: None,
    on_tick: Callable[[Tick], None] | None = None,
    retry_attempts: int | None = None,
    watch: bool = False,
    on_reload: Callable[[ReloadAttempt], None] | None = None,
) -> BenchReport:
    """Run the workload ``spec`` as ``settings`` say; return the report.

    The framework config's other plugins are loaded beside the workload; one that is
    not required and fails is left out (``notify`` says so), here and in the worker
    processes. ``retry_attempts`` replaces every plugin's ``retries.attempts``.
    ``watch`` reloads the workload when its files change while the clients run
    (one process only); ``on_reload`` hears each attempt, ``notify`` gets a line.
    """
    if watch and settings.processes > 1:
        raise BenchError(
            f"--watch reloads the workload in this process, and {settings.processes} "
            "processes each load their own copy: reloading across processes is not "
            "supported yet",
            hint="run with --processes 1 to watch the workload",
        )
    started_at = datetime.now(UTC)
    workload = await open_workload(
        spec, framework_config=framework_config, retry_attempts=retry_attempts
    )
    failed = workload.manager.failed_plugins()
    for name, plugin in failed.items():
        notify(f"note: running without plugin '{name}' (required: false): {plugin.reason}")
    if failed and framework_config is not None:  # the workers go without them at once
        framework_config = without_failed(framework_config, failed.values())
    try:
        database = await _database(settings, notify)
        return await _run(
            workload,
            database,
            settings,
            _Plugins(framework_config, retry_attempts),
            _Reloads(watch, on_reload),
            notify,
            on_tick,
            started_at,
        )
    finally:
        await workload.aclose()


async def _database(settings: BenchSettings, notify: Callable[[str], None]) -> Database:
    if settings.dsn is not None:
        return Database(dsn=settings.dsn)
    directory = settings.data_directory or default_data_directory()
    return await asyncio.to_thread(start_embedded, directory, notify=notify)


async def _run(
    workload: LoadedWorkload,
    database: Database,
    settings: BenchSettings,
    plugins: _Plugins,
    reloads: _Reloads,
    notify: Callable[[str], None],
    on_tick: Callable[[Tick], None] | None,
    started_at: datetime,
) -> BenchReport:
    is_async, driver = workload.is_async, workload.driver
    (admin,) = await open_connections(database.dsn, 1, driver=driver)
    try:
        version = await server_version(admin, driver=driver)
        setup_seconds = None
        if settings.setup:
            notify(f"setting up workload '{workload.name}'...")
            began = time.perf_counter()
            await workload.call("setup", admin, blocking=not is_async)
            setup_seconds = time.perf_counter() - began
        info = await workload.info()
        series = Series(workload.weights, tick=settings.tick)
        engine = await choose_engine(workload, settings.engine, database.dsn)
        if engine == MULTIPLEXED and settings.auto_processes:
            processes = auto_multiplexed_processes(settings.clients)
            settings = dataclasses.replace(settings, processes=processes)
        run = _Clients(workload, database, settings, plugins, reloads, admin, notify, engine)
        stats, elapsed, reason, metrics, phases, attempts = await run(_both(series, on_tick))
        if settings.cleanup:
            notify(f"cleaning up workload '{workload.name}'...")
            await workload.call("cleanup", admin, blocking=not is_async)
    finally:
        await close_connections([admin], driver=driver)
    return BenchReport(
        workload=workload.name,
        event_loop=event_loop_name(),
        workload_version=workload.version,
        workload_origin=workload.spec.origin or (workload.location or ""),
        driver=workload.driver,
        engine=engine,
        database=database.display,
        embedded=database.embedded,
        data_directory=str(database.data_directory) if database.data_directory else None,
        server_version=version,
        settings=settings,
        weights=workload.weights,
        operations=stats,
        elapsed=elapsed,
        stop_reason=reason,
        started_at=started_at,
        info=info,
        metrics=metrics,
        setup_seconds=setup_seconds,
        series=series.result(),
        phases=phases,
        reloads=attempts,
    )


def _both(series: Series, on_tick: Callable[[Tick], None] | None) -> Callable[[Tick], None]:
    """One tick consumer: the series, then ``on_tick`` (the progress line)."""
    if on_tick is None:
        return series

    def both(tick: Tick) -> None:
        series(tick)
        on_tick(tick)

    return both


_Outcome = tuple[
    dict[str, OperationStats], float, str, dict[str, object], list[Phase], list[ReloadAttempt]
]


@dataclass(frozen=True, slots=True)
class _Clients:
    """Running the clients: in this process (following reloads when asked), or in
    worker processes."""

    workload: LoadedWorkload
    database: Database
    settings: BenchSettings
    plugins: _Plugins
    reloads: _Reloads
    admin: object  # the setup connection, for a reloaded version's reload_setup
    notify: Callable[[str], None]
    engine: str  # multiplexed or per-client

    async def __call__(self, on_tick: Callable[[Tick], None] | None) -> _Outcome:
        plans = plans_for(self.settings)
        if len(plans) == 1:
            return await self._here(plans[0], on_tick)
        return await self._in_workers(plans, on_tick)

    async def _here(self, plan: Plan, on_tick: Callable[[Tick], None] | None) -> _Outcome:
        workload = self.workload
        engine = make_engine(workload, self.engine, plan, workload.weights, on_tick)
        follower = ReloadFollower(
            workload,
            engine,
            db=self.admin,
            run_setup=self.settings.setup,
            notify=self.notify,
            on_reload=self.reloads.on_reload,
        )
        driver = engine_driver(workload, self.engine)
        connections = await open_connections(self.database.dsn, plan.clients, driver=driver)
        try:
            await attach(engine, connections)
            with _interrupts(engine.request_stop):
                async with follower.following(watch=self.reloads.watch):
                    result = await engine.run(connections)
        finally:
            release(engine)
            await close_connections(connections, driver=driver)
        metrics = await workload.metrics()
        phases = follower.phases(result.elapsed)
        return (result.stats, result.elapsed, result.stop_reason, metrics, phases,
                follower.attempts)  # fmt: skip

    async def _in_workers(
        self, plans: list[Plan], on_tick: Callable[[Tick], None] | None
    ) -> _Outcome:
        workload = self.workload
        stop_requested = asyncio.Event()
        with _interrupts(stop_requested.set):
            outcome = await run_workers(
                spec=workload.spec,
                framework_config=self.plugins.config,
                retry_attempts=self.plugins.retry_attempts,
                dsn=self.database.dsn,
                plans=plans,
                weights=workload.weights,
                on_tick=on_tick,
                stop_requested=stop_requested,
                engine=self.engine,
            )
        reason = "interrupted" if stop_requested.is_set() else outcome.stop_reason
        metrics = {**await workload.metrics(), **merge_metrics(outcome.metrics)}
        successes = sum(s.count for s in outcome.stats.values())
        errors = sum(s.error_count for s in outcome.stats.values())
        phase = Phase(workload.version, 0.0, outcome.elapsed, successes, errors,
                      dict(workload.weights))  # fmt: skip
        return outcome.stats, outcome.elapsed, reason, metrics, [phase], []


@contextlib.contextmanager
def _interrupts(stop: Callable[[], None]) -> Iterator[None]:
    """While clients run, the first Ctrl-C calls ``stop``; a second one aborts the run."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    presses = [0]

    def on_sigint() -> None:
        presses[0] += 1
        if presses[0] == 1:
            stop()
        elif task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        yield
        return
    try:
        yield
    except asyncio.CancelledError:
        if presses[0] > 1:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)
