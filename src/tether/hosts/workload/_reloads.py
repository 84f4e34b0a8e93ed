"""Following reloads of the workload plugin while a run goes on (``tether bench --watch``).

The core swaps versions (``PluginManager.reload_plugin``): calls held at the gate
during the swap go to the new version, and the engine's :class:`tether.Operation`
follows the live version by itself. What the core cannot know is the run: the
operation mix the clients draw from, the kind of connection they hold, and the
run's clock. :class:`ReloadFollower` listens to the manager's reloads
(``manager.on_reload``) and, after each one of the workload that put a version
live:

1. checks that the new version fits the open connections: ``execute_operation``
   still sync or still ``async def``, the same ``get_connection_type()``, and, when
   the multiplexed engine runs, its statements still declared (the engine reads
   them again itself, and prepares them, before its next transaction);
2. runs its optional ``reload_setup(db)`` on the bench's setup connection (unless
   the run is ``--no-setup``): ``setup`` itself is not run again;
3. reads its ``get_operation_types()``, applies ``operation_weights`` of the run's
   config, and hands the weights to the engine (clients draw from them from their
   next transaction on).

A version that fails one of these is refused: the bench rolls it back
(``manager.rollback_plugin``) and the run goes on with the previous version. Every
attempt, good or not, is kept (:class:`ReloadAttempt`) with the phases
(:class:`PhaseLog`) for the report. A reload whose outcome is ``failed`` (not even
the previous version could start again) stops the run (``stop_reason:
reload_failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol, cast

from tether import ReloadResult, error_text
from tether.errors import TetherError
from tether.hosts.workload._engine import Engine
from tether.hosts.workload._engines import declaration_problem
from tether.hosts.workload._errors import BenchError
from tether.hosts.workload._multiplexed import MultiplexedEngine
from tether.hosts.workload._phases import Phase, PhaseLog, ReloadAttempt
from tether.hosts.workload._weights import check_default_weights, resolve_weights
from tether.hosts.workload._workload import LoadedWorkload, connection_driver

__all__ = ["RELOAD_FAILED", "ReloadFollower"]

RELOAD_FAILED = "reload_failed"
"""The ``stop_reason`` of a run stopped because the workload could not run any version."""

_NS = 1_000_000_000
_SETTLE = 30.0  # seconds the end of a run waits for a version being fitted (reload_setup...)
log = logging.getLogger("tether.bench")


class _Watching(Protocol):
    async def stop(self) -> None: ...


class _Watchable(Protocol):
    """What --watch needs of the manager: ``PluginManager.watch`` (``tether._watch``)."""

    async def watch(self, *plugins: str) -> _Watching: ...


class ReloadFollower:
    """Keeps one engine's run on the workload's live version (see the module docstring).

    ``db`` is the bench's setup connection (for ``reload_setup``); ``notify`` hears
    one line per attempt, ``on_reload`` each :class:`ReloadAttempt`.
    """

    def __init__(
        self,
        workload: LoadedWorkload,
        engine: Engine,
        *,
        db: object,
        run_setup: bool = True,
        notify: Callable[[str], None] = lambda _: None,
        on_reload: Callable[[ReloadAttempt], None] | None = None,
    ) -> None:
        self.workload = workload
        self.engine = engine
        self.db = db
        self.run_setup = run_setup
        self.notify = notify
        self.on_reload = on_reload
        self.log = PhaseLog(workload.version, workload.weights)
        self.attempts: list[ReloadAttempt] = []
        self._queue: asyncio.Queue[int | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self._is_listening = False
        self._latest_swap = -1  # the attempt that put the live version live

    # ------------------------------------------------------------------ running

    @contextlib.asynccontextmanager
    async def following(self, *, watch: bool) -> AsyncIterator[None]:
        """Follow reloads while the block runs; with ``watch``, watch the workload's
        directory and reload it on save."""
        self._loop = asyncio.get_running_loop()
        if not self._is_listening:  # listeners stay for the manager's life: add once
            self.workload.manager.on_reload(self._heard)
            self._is_listening = True
        self._worker = asyncio.create_task(self._work())
        watching = await self._watch() if watch else None
        try:
            yield
        finally:
            if watching is not None:
                await watching.stop()
            self._loop = None
            await self._settle(self._worker)

    async def _settle(self, worker: asyncio.Task[None]) -> None:
        """Let a version being fitted finish (its reload_setup, a rollback), within bounds."""
        self._queue.put_nowait(None)
        done, _ = await asyncio.wait({worker}, timeout=_SETTLE)
        if not done:
            log.warning(
                "workload %s: the run ended while a reloaded version was being fitted "
                "(reload_setup, or a rollback) for over %gs: cancelled",
                self.workload.name, _SETTLE,
            )  # fmt: skip
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    async def _watch(self) -> _Watching:
        name = self.workload.name
        try:
            watching = await cast("_Watchable", self.workload.manager).watch(name)
        except TetherError as exc:
            raise BenchError(
                f"cannot watch workload '{name}': {error_text(exc)}",
                plugin=name,
                hint=exc.hint
                or "--watch needs a workload loaded from a directory "
                "(--plugin-path, or a config entry's path)",
            ) from exc
        return watching

    def phases(self, elapsed: float) -> list[Phase]:
        """The run's phases; call it after the engine has finished."""
        return self.log.phases(elapsed, self.engine.collector.counted())

    # ------------------------------------------------------------------ hearing a reload

    def _heard(self, result: ReloadResult) -> None:
        """The manager's listener (any thread): place the reload on the run's clock now."""
        loop = self._loop
        if result.plugin != self.workload.name or loop is None:
            return
        now = time.monotonic_ns()
        with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
            loop.call_soon_threadsafe(self._note, result, now)

    def _note(self, result: ReloadResult, now_ns: int) -> None:
        origin = self.engine.collector.origin_ns
        at = (now_ns - origin) / _NS if origin else -1.0  # the run has not started: warmup
        attempt = ReloadAttempt(
            at=at,
            outcome=result.outcome,
            from_version=result.from_version,
            to_version=result.to_version,
            step=result.step,
            error=result.error,
            duration=result.duration,
            held=result.held,
            rejected=result.rejected,
            started_at=result.at,
            kind=result.kind,
        )
        is_swap = attempt.is_swap
        if is_swap:
            version = self.workload.handle.version or attempt.to_version or attempt.from_version
            self.log.switch(version, at, self.engine.collector.counted())
        self.attempts.append(attempt)
        self.notify(f"workload {self.workload.name} {attempt.describe()}")
        if self.on_reload is not None:
            self.on_reload(attempt)
        if attempt.outcome == "failed":
            self.engine.request_stop(RELOAD_FAILED)
        elif is_swap:
            self._latest_swap = len(self.attempts) - 1
            self._queue.put_nowait(self._latest_swap)

    # ------------------------------------------------------------------ fitting a version

    async def _work(self) -> None:
        while True:
            index = await self._queue.get()
            if index is None:
                return
            if index != self._latest_swap:
                continue  # another version went live meanwhile: fit that one
            try:
                weights = await self._fit()
            except Exception as exc:
                await self._refuse(index, error_text(exc))
                continue
            if weights is not None:
                self.log.set_weights(weights)
                self.engine.set_weights(weights)

    async def _fit(self) -> dict[str, int] | None:
        """The live version's weights, once it is known to fit the run (None: a later
        reload came while it ran its ``reload_setup``)."""
        workload = self.workload
        handle, name = workload.handle, workload.name
        version = handle.version
        execute = handle.entry("execute_operation")
        if execute.is_async != workload.is_async:
            was, now = ("async def", "def") if workload.is_async else ("def", "async def")
            raise BenchError(
                f"execute_operation is now `{now}`, the run's clients hold connections "
                f"for `{was}`: restart the run to change it"
            )
        wanted = await workload.call("get_connection_type")
        driver = connection_driver(name, is_async=workload.is_async, wanted=wanted)
        if driver != workload.driver:
            raise BenchError(
                f"get_connection_type() now asks for {driver} connections, the run's "
                f"clients hold {workload.driver} ones: restart the run to change it"
            )
        if isinstance(self.engine, MultiplexedEngine):
            problem = declaration_problem(workload)
            if problem is not None:
                raise BenchError(
                    f"the run's engine is multiplexed, and the new version no longer "
                    f"declares its statements ({problem}): restart the run to change it"
                )
        if self.run_setup and handle.has("reload_setup"):
            await workload.call("reload_setup", self.db, blocking=not workload.is_async)
        if handle.version != version:
            return None
        spec = workload.spec
        defaults = check_default_weights(name, await workload.call("get_operation_types"))
        return resolve_weights(
            name, defaults, spec.config.get("operation_weights"), source=spec.config_source
        )

    async def _refuse(self, index: int, reason: str) -> None:
        attempt = self.attempts[index]
        self.attempts[index] = dataclasses.replace(attempt, refused=reason)
        name = self.workload.name
        self.notify(f"workload {name} {self.attempts[index].describe()}")
        log.info(
            "workload %s %s does not fit the run: %s; rolling back to the previous version",
            name, attempt.to_version, reason,
        )  # fmt: skip
        try:
            await self.workload.manager.rollback_plugin(name)
        except Exception as exc:
            self.notify(f"workload {name}: cannot roll back to the previous version: {exc}")
            self.engine.request_stop(RELOAD_FAILED)
