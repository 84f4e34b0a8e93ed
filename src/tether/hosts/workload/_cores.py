"""How many processes a bench spreads its clients over: the cores this process may use.

Kept apart from the settings models so that ``tether bench --help`` can show the
default without importing them.
"""

from __future__ import annotations

import os

__all__ = [
    "CLIENTS_PER_PROCESS",
    "MAX_PROCESSES",
    "auto_multiplexed_processes",
    "auto_processes",
    "usable_cores",
]

MAX_PROCESSES = 1_024
CLIENTS_PER_PROCESS = 4
"""``processes: auto`` gives each process at least this many clients."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def auto_processes(clients: int, cores: int | None = None) -> int:
    """``processes: auto``: one process per two cores (the server, usually on the same
    machine, needs the others), each with at least :data:`CLIENTS_PER_PROCESS` clients:
    8 clients on 4 cores run in 2 processes; on 2 cores, or with 7 clients or fewer,
    in 1. Measured on 2 cores shared with the server, a second client process raised
    neither select-only nor TPC-B throughput and cost a second start-up."""
    cores = usable_cores() if cores is None else cores
    return max(1, min(cores // 2, clients // CLIENTS_PER_PROCESS, MAX_PROCESSES))


def auto_multiplexed_processes(clients: int, cores: int | None = None) -> int:
    """``processes: auto`` for the multiplexed engine: one process per core, each with at
    least :data:`CLIENTS_PER_PROCESS` clients (8 clients on 2 cores: 2 processes, as
    ``pgbench -j 2`` has two threads). Each process is one thread driving its
    connections: on cores shared with the server and other programs, two such threads
    got more of the CPU, and more transactions through, than one (measured on 2 cores:
    select-only medians 0.79-0.97 of pgbench's against 0.58-0.65 with one process)."""
    cores = usable_cores() if cores is None else cores
    return max(1, min(cores, clients // CLIENTS_PER_PROCESS, MAX_PROCESSES))
