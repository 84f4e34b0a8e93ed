"""The schedule of a paced run (``--rate``), and how work is shared among processes (pure).

A paced run is one global schedule: transaction ``k`` is meant to start at
``start + k / rate`` seconds, evenly spaced, whichever client is free takes the
next slot. Latency is measured from that intended start, so a stall of the server
shows up in the latency of every transaction it delayed (no coordinated omission),
and a client that falls behind catches up at once instead of bunching later.
"""

from __future__ import annotations

__all__ = ["intended_start_ns", "process_rates", "split_evenly"]


def intended_start_ns(slot: int, *, start_ns: int, rate: float, phase: float = 0.0) -> int:
    """When slot ``slot`` (0-based) of a schedule of ``rate`` per second starts, in ns.

    ``phase`` (0 <= phase < 1) shifts the schedule by a fraction of one interval, so
    that the schedules of several processes interleave instead of coinciding.
    """
    return start_ns + int((slot + phase) * 1_000_000_000 / rate)


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split in ``parts`` integers differing by at most one, largest first."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def process_rates(rate: float, clients: list[int]) -> list[tuple[float, float]]:
    """Each process's ``(rate, phase)``: a share of ``rate`` in proportion to its clients.

    With ``P`` processes of equal size the union of their schedules is exactly the
    global schedule: process ``p`` takes slots ``p, p + P, p + 2P, ...``.
    """
    total = sum(clients)
    count = len(clients)
    return [(rate * share / total, index / count) for index, share in enumerate(clients)]
