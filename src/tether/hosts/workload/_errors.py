"""The workload host's errors, all :class:`tether.TetherError`\\ s (so the CLI prints them).

::

    TetherError
    ├── BenchError                      a bench run cannot start or go on
    │   ├── DatabaseUnavailableError    the database cannot be reached (DSN shown masked)
    │   ├── EmbeddedServerError         the embedded PostgreSQL cannot be started
    │   ├── WorkerError                 a worker process of --processes failed
    │   └── ReportFileError             a saved report cannot be read, or the HTML one written
    └── ConfigError
        └── WorkloadConfigError         bench settings or operation weights are wrong
"""

from __future__ import annotations

from tether.errors import ConfigError, TetherError

__all__ = [
    "BenchError",
    "DatabaseUnavailableError",
    "EmbeddedServerError",
    "ReportFileError",
    "WorkerError",
    "WorkloadConfigError",
]


class BenchError(TetherError):
    """A bench run cannot start or go on."""


class DatabaseUnavailableError(BenchError):
    """Connecting to the database failed; ``dsn`` has its password masked."""

    def __init__(self, dsn: str, reason: str, *, hint: str | None = None) -> None:
        self.dsn = dsn
        self.reason = reason
        super().__init__(
            f"cannot connect to {dsn}: {reason}",
            hint=hint
            or "check that PostgreSQL runs and accepts connections there; without --dsn, "
            "database.dsn and $TETHER_DSN, tether starts an embedded PostgreSQL",
        )


class EmbeddedServerError(BenchError):
    """The embedded PostgreSQL (pgserver) could not be started."""


class WorkerError(BenchError):
    """A worker process (``--processes``) failed to start, run or report."""


class ReportFileError(BenchError):
    """A report file (``--compare``'s JSON, ``--report``'s HTML) cannot be read or
    written, or is not a bench report; ``path`` is the file."""


class WorkloadConfigError(ConfigError):
    """Bench settings or a workload's ``operation_weights`` are wrong."""
