"""Retries with backoff, and plugins a host may start without (the policy; the manager's
up path, ``tether._bringup``, applies it).

A config entry's ``retries: {attempts: 3, backoff: 1s}`` gives a plugin several tries
at coming up. One try is a load (import the code, create the object, check its config)
followed, when ``initialize_all`` comes to it, by ``initialize``; a failed
``initialize`` is tried again on a fresh copy (the code imported again, a new object),
never on the object that failed. Tries are counted across both steps: three attempts
are three loads at most, whichever step failed. After the first failed try the
manager waits ``backoff``, then twice that, then four times..., never more than an hour
(:meth:`RetryPolicy.delay`).
Each failed try is logged once, naming the plugin, the step and the attempt, when the
plugin has more than one.

Only failures that may pass are tried again (:func:`is_retryable`): what the plugin's
code raised while it was imported, created or initialized. A syntax error, a missing
module or entry, an object that does not fit its contract, a refused config, a step
that ran past its time limit (its thread may still run) and every check made before
any code runs fail at once, whatever ``attempts`` says. ``start`` is not tried again:
a plugin whose ``start()`` failed has been initialized and may hold what it set up.

``required: false`` (a config entry's) lets ``load_plugins_from_config``,
``initialize_all`` and ``start_all`` go on without a plugin that failed all its tries,
or whose ``start()`` failed: it is taken down, forgotten, and kept as a
:class:`FailedPlugin` that health reports show (the overall status ``degraded``).
A plugin that needs it (a dependency not marked optional) fails with an error naming
both, unless it is not required either; then it is set aside too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tether._config import PluginConfig
from tether._describe import error_line, error_text
from tether._durations import format_duration
from tether._manifest import Manifest
from tether.errors import (
    InterfaceError,
    MissingDependencyError,
    PluginImportError,
    PluginLifecycleError,
    PluginLoadError,
    PluginLoadTimeoutError,
    StepTimeoutError,
    TetherError,
)

__all__ = [
    "DEFAULT_BACKOFF",
    "MAX_ATTEMPTS",
    "MAX_DELAY",
    "FailedPlugin",
    "RetryPolicy",
    "Tries",
    "describe",
    "failed_dependency",
    "is_retryable",
    "needs_failed",
]

log = logging.getLogger("tether")

DEFAULT_BACKOFF = 1.0
"""Seconds waited after a plugin's first failed try, when its ``retries`` give none."""


MAX_ATTEMPTS = 100
"""The most tries a plugin gets (``retries.attempts``, ``--retries``)."""
MAX_DELAY = 3600.0
"""The longest wait between two tries, in seconds: the doubling stops there."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many tries a plugin gets (``attempts``, the first included) and the first wait.

    ``attempts`` is an integer from 1 to :data:`MAX_ATTEMPTS`, ``backoff`` a finite
    number of seconds from 0 to :data:`MAX_DELAY` (a ``TypeError`` or ``ValueError``
    says which is not):
    the config and the CLI check theirs, and this holds for programs calling
    ``load_plugin(retries=..., retry_backoff=...)`` too.
    """

    attempts: int = 1
    backoff: float = DEFAULT_BACKOFF

    def __post_init__(self) -> None:
        attempts, backoff = self.attempts, self.backoff
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise TypeError(f"retry attempts must be an integer, got {attempts!r}")
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise ValueError(
                f"retry attempts must be from 1 to {MAX_ATTEMPTS} (retries from 0 to "
                f"{MAX_ATTEMPTS - 1}), got {attempts}"
            )
        if isinstance(backoff, bool) or not isinstance(backoff, int | float):
            raise TypeError(f"retry backoff must be a number of seconds, got {backoff!r}")
        if not 0 <= backoff <= MAX_DELAY:  # NaN fails the comparison too
            raise ValueError(
                f"retry backoff must be a number of seconds from 0 to {MAX_DELAY:g}, "
                f"got {backoff!r}"
            )

    @classmethod
    def of(cls, settings: PluginConfig, *, attempts: int | None = None) -> RetryPolicy:
        """The entry's ``retries`` (one try without them); ``attempts`` overrides theirs
        (``--retries N``)."""
        given = settings.retries
        backoff = given.backoff if given is not None else DEFAULT_BACKOFF
        if attempts is None:
            attempts = given.attempts if given is not None else 1
        return cls(attempts, backoff)

    @classmethod
    def overridden(
        cls, policy: RetryPolicy, *, retries: object = None, backoff: object = None
    ) -> RetryPolicy:
        """``policy`` with ``retries`` (tries after the first) and ``backoff`` (seconds)
        in place of its own where given (``load_plugin``'s arguments)."""
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
            raise TypeError(f"retries must be an integer, got {retries!r}")
        return cls(
            policy.attempts if retries is None else retries + 1,
            policy.backoff if backoff is None else backoff,  # type: ignore[arg-type] # checked
        )

    def delay(self, failed: int) -> float:
        """Seconds to wait after the ``failed``-th failed try: backoff, 2x, 4x... and never
        more than :data:`MAX_DELAY`."""
        doublings = min(max(failed - 1, 0), 64)  # 2**64 times any backoff is past the cap
        return min(float(self.backoff) * 2.0**doublings, MAX_DELAY)


def is_retryable(exc: BaseException) -> bool:
    """Whether another try may succeed: the plugin's code failed while it was imported,
    created or initialized, and not by a syntax error, a missing module or entry, a
    broken contract or a time limit."""
    if isinstance(exc, StepTimeoutError):
        return False
    if isinstance(exc, PluginLifecycleError):
        return exc.step == "initialization"
    if isinstance(exc, InterfaceError | PluginLoadTimeoutError):
        return False
    cause = exc.__cause__
    if isinstance(exc, PluginImportError):
        return not isinstance(cause, SyntaxError | ImportError)
    # A failure with a cause (the plugin's constructor raised, a file could not be read)
    # may pass; one without (the entry attribute does not exist) will not.
    return (
        isinstance(exc, PluginLoadError)
        and cause is not None
        and not isinstance(cause, ImportError)
    )


@dataclass(slots=True)
class Tries:
    """The tries one plugin has made at coming up, across its load and ``initialize``."""

    plugin: str
    policy: RetryPolicy
    made: int = 0

    def begin(self) -> None:
        self.made += 1

    async def again(self, step: str, error: BaseException) -> bool:
        """After a failed try: log it, and wait the backoff if another try follows (True)."""
        left = self.made < self.policy.attempts
        retry = left and is_retryable(error)
        if self.policy.attempts > 1:
            if retry:
                delay = self.policy.delay(self.made)
                then = f"trying again in {format_duration(timedelta(seconds=delay))}"
            else:
                then = "no attempts left" if not left else "not retried: it cannot pass by itself"
            log.warning(
                "plugin %s: attempt %d of %d failed (%s): %s; %s",
                self.plugin, self.made, self.policy.attempts, step, _cause(error), then,
            )  # fmt: skip
        if retry:
            await asyncio.sleep(self.policy.delay(self.made))
        return retry

    def exhausted(self, error: TetherError) -> TetherError:
        """``error``, its message saying how many tries were made (when more than one)."""
        if self.made > 1:
            error.message = f"{error.message} (after {self.made} attempts)"
            error.args = (error.message,)
        return error


@dataclass(frozen=True, slots=True)
class FailedPlugin:
    """A plugin with ``required: false`` that could not be brought up: the host runs
    without it. ``step`` is ``load``, ``initialization``, ``start`` or ``dependency``."""

    name: str
    step: str
    error: BaseException
    attempts: int
    version: str
    path: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    settings: PluginConfig | None = field(default=None, repr=False, compare=False)

    @property
    def reason(self) -> str:
        return describe(self.error)

    def to_dict(self) -> dict[str, object]:
        """The shape of ``PluginHealth.to_dict()`` for what a failed plugin has."""
        return {
            "name": self.name,
            "version": self.version,
            "status": "failed",
            "state": "failed",
            "enabled": True,
            "ready": False,
            "degraded": False,
            "required": False,
            "failed_step": self.step,
            "attempts": self.attempts,
            "error_count": 1,
            "hook_metrics": {},
            "last_error": self.reason,
            "last_error_at": self.at.isoformat(),
            "unavailable_reason": f"it failed ({self.step}) and is not required",
            "path": self.path,
        }


def describe(error: BaseException) -> str:
    """An error in a line: tether's by its message, another with its class."""
    return error_text(error) if isinstance(error, TetherError) else error_line(error)


def _cause(error: BaseException) -> str:
    """What failed, without the words the log line already says (plugin, step)."""
    if isinstance(error, PluginLifecycleError):
        return error.cause_text
    return describe(error)


def failed_dependency(
    manifest: Manifest, failed: Mapping[str, FailedPlugin]
) -> FailedPlugin | None:
    """The first dependency of ``manifest`` (not marked optional) that failed, if any."""
    return next(
        (failed[d.name] for d in manifest.dependencies if not d.optional and d.name in failed),
        None,
    )


def needs_failed(manifest: Manifest, dependency: FailedPlugin) -> MissingDependencyError:
    """The error of a required plugin whose dependency failed: it names both."""
    constraint = next(d.version for d in manifest.dependencies if d.name == dependency.name)
    error = MissingDependencyError(
        manifest.name,
        dependency.name,
        constraint,
        note=f" (it failed ({dependency.step}) and is not required: {dependency.reason})",
    )
    error.hint = (
        f"fix '{dependency.name}'; or give '{manifest.name}' `required: false` too, to start "
        f"without both; or mark the dependency on '{dependency.name}' optional in "
        f"'{manifest.name}''s manifest"
    )
    return error
