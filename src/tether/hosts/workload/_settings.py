"""How a bench run is shaped: clients, length, pacing, database (checked on creation)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tether.hosts.workload._errors import WorkloadConfigError

__all__ = ["DEFAULT_DURATION", "BenchSettings"]

DEFAULT_DURATION = 10.0


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """One run's settings. Give ``duration`` (seconds) or ``transactions`` (total), not both.

    ``dsn=None`` starts the embedded PostgreSQL in ``data_directory`` (default
    ``~/.tether/pgdata``). ``max_error_rate`` is a fraction (0.01 = 1%).
    ``source`` names where the settings came from, for error messages.
    """

    clients: int = 1
    duration: float | None = None
    transactions: int | None = None
    rate: float | None = None
    warmup: float = 0.0
    setup: bool = True
    cleanup: bool = False
    seed: int = 0
    processes: int = 1
    max_error_rate: float | None = None
    dsn: str | None = None
    data_directory: Path | None = None
    tick: float = 0.5
    source: str = "the bench settings"

    def __post_init__(self) -> None:
        if self.duration is None and self.transactions is None:
            object.__setattr__(self, "duration", DEFAULT_DURATION)
        self._check()

    def _check(self) -> None:
        problems = [
            *_at_least("clients", self.clients, 1),
            *_at_least("processes", self.processes, 1),
            *(
                _at_least("transactions", self.transactions, 1)
                if self.transactions is not None
                else ()
            ),
            *(_positive("duration", self.duration) if self.duration is not None else ()),
            *(_positive("rate", self.rate) if self.rate is not None else ()),
            *_not_negative("warmup", self.warmup),
        ]
        if self.duration is not None and self.transactions is not None:
            problems.append("give either duration or transactions, not both")
        if self.processes > self.clients:
            problems.append(
                f"processes ({self.processes}) must not exceed clients ({self.clients}): "
                "each process runs at least one client"
            )
        if self.max_error_rate is not None and not 0.0 <= self.max_error_rate <= 1.0:
            problems.append(
                f"max_error_rate must be a fraction from 0 to 1 (or a percentage like '5%'), "
                f"got {self.max_error_rate}"
            )
        if problems:
            raise WorkloadConfigError(
                f"invalid bench settings ({self.source}): {problems[0]}",
                hint="fix the option or the `bench:` section of the config; "
                "`tether bench --help` lists every setting",
            )


def _at_least(name: str, value: int, minimum: int) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return [f"{name} must be an integer of at least {minimum}, got {value!r}"]
    return []


def _positive(name: str, value: float) -> list[str]:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return [f"{name} must be a positive number, got {value!r}"]
    return []


def _not_negative(name: str, value: float) -> list[str]:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return [f"{name} must not be negative, got {value!r}"]
    return []
