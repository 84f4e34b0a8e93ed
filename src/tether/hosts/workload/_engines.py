"""Which engine runs a bench's clients, the connections it needs, and making one.

``engine: auto`` (the default) runs the multiplexed engine
(:mod:`._multiplexed`) when the workload declares its statements
(``get_statements()`` returns them and ``statement_parameters`` exists, both plain
methods) and the server's connections are not TLS; else the per-client engine
(:mod:`._engine`: one thread or task per client, calling ``execute_operation``).
``multiplexed`` insists (an error says why it cannot run), ``per-client`` never
multiplexes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tether.hosts.workload._database import close_connections, open_connections
from tether.hosts.workload._engine import Engine, Plan, Tick
from tether.hosts.workload._errors import BenchError
from tether.hosts.workload._multiplexed import MultiplexedEngine, is_direct
from tether.hosts.workload._workload import LoadedWorkload

__all__ = [
    "MULTIPLEXED",
    "PER_CLIENT",
    "attach",
    "choose_engine",
    "declaration_problem",
    "engine_driver",
    "make_engine",
    "release",
]

MULTIPLEXED = "multiplexed"
PER_CLIENT = "per-client"
_DECLARATIVE = ("get_statements", "statement_parameters")


def declaration_problem(workload: LoadedWorkload) -> str | None:
    """Why the live version does not declare its statements (``None``: it does)."""
    handle = workload.handle
    missing = [name for name in _DECLARATIVE if not handle.has(name)]
    if missing:
        return f"it has no {' and no '.join(f'{name}()' for name in missing)}"
    for name in _DECLARATIVE:
        if handle.entry(name).is_async:
            return f"its {name}() is `async def` (the engine's thread calls it: make it plain)"
    if handle.call("get_statements") is None:
        return "its get_statements() returns None (its configuration does not declare them)"
    return None


async def choose_engine(workload: LoadedWorkload, wanted: str, dsn: str) -> str:
    """The engine a run uses, :data:`MULTIPLEXED` or :data:`PER_CLIENT` (see the module
    docstring); ``dsn`` is probed for TLS once, when it matters."""
    if wanted == PER_CLIENT:
        return PER_CLIENT
    problem = declaration_problem(workload)
    if problem is None:
        (probe,) = await open_connections(dsn, 1, driver="psycopg")
        try:
            if not is_direct(probe):
                problem = "the connections use TLS, which it cannot speak through"
        finally:
            await close_connections([probe], driver="psycopg")
    if problem is None:
        return MULTIPLEXED
    if wanted == MULTIPLEXED:
        raise BenchError(
            f"--engine multiplexed cannot run workload '{workload.name}': {problem}",
            plugin=workload.name,
            hint="declare get_statements() and statement_parameters(op, count) "
            "(docs/workloads.md), or run with --engine auto or per-client",
        )
    return PER_CLIENT


def engine_driver(workload: LoadedWorkload, engine: str) -> str:
    """The clients' connections: libpq ones (psycopg) for the multiplexed engine."""
    return "psycopg" if engine == MULTIPLEXED else workload.driver


def make_engine(
    workload: LoadedWorkload,
    engine: str,
    plan: Plan,
    weights: dict[str, int],
    on_tick: Callable[[Tick], None] | None,
) -> Engine:
    """The engine ``engine`` names, over ``workload``'s handle."""
    if engine == MULTIPLEXED:
        handle = workload.handle
        return MultiplexedEngine(
            plan,
            parameters=handle.operation("statement_parameters"),
            statements=handle.operation("get_statements"),
            weights=weights,
            on_tick=on_tick,
            workload=workload.name,
        )
    return Engine(plan, operation=workload.operation, weights=weights, on_tick=on_tick)


async def attach(engine: Engine, connections: list[object]) -> None:
    """Prepare a multiplexed engine's statements on ``connections`` (before the run)."""
    if isinstance(engine, MultiplexedEngine):
        await asyncio.to_thread(engine.attach, connections)


def release(engine: Engine) -> None:
    """Give a multiplexed engine's sockets back (before the connections close)."""
    if isinstance(engine, MultiplexedEngine):
        engine.close()
