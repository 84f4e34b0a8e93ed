"""What a reload is asked to do (:class:`ReloadConfig`) and what it did (:class:`ReloadResult`).

Pure data: the coordinator (``tether._reload``) fills them, the state tables keep the
results (``plugin_reloads``), the admin API and the CLI show them.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, get_args

from tether._durations import parse_duration
from tether.errors import ConfigError

if TYPE_CHECKING:
    from tether._config import ReloadSection

__all__ = ["Outcome", "ReloadConfig", "ReloadResult", "ResolvedReload", "Strategy"]

Strategy = Literal["block", "reject"]
Outcome = Literal["reloaded", "rolled_back", "failed"]

_MAX_QUEUE = 1_000_000
_MAX_SECONDS = 24 * 3600.0


def _seconds(field: str, value: object) -> float:
    hint = f"give {field} as seconds (2.5) or a duration ('500ms', '30s')"
    if isinstance(value, bool) or not isinstance(value, int | float | str | timedelta):
        raise ConfigError(f"reload config: {field} must be a duration, got {value!r:.80}",
                          hint=hint)  # fmt: skip
    try:
        seconds = parse_duration(value).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"reload config: {field}: {exc}", hint=hint) from None
    if not 0 <= seconds <= _MAX_SECONDS:
        raise ConfigError(
            f"reload config: {field} must be between 0 and 24h, got {seconds:g}s",
            hint=f"give {field} as a duration of at most a day",
        )
    return seconds


@dataclass(frozen=True, slots=True)
class ResolvedReload:
    """A :class:`ReloadConfig` with every field settled (from the config's ``reload:``)."""

    queue_timeout: float
    max_queue_size: int
    strategy: Strategy
    grace_period: float


@dataclass(frozen=True, slots=True)
class ReloadConfig:
    """How one reload holds callers and watches the new version; ``None`` fields take the
    framework config's ``reload:`` section (``queue_timeout`` 30 s, ``max_queue_size``
    1000, ``strategy`` ``block``, ``grace_period`` 30 s).

    ``block``: calls that arrive during the swap wait (up to ``queue_timeout``, at most
    ``max_queue_size`` of them) and go to whichever version is live once it is done;
    ``reject``: they are refused at once with ``PluginUnavailableError`` (503 in
    ``tether serve``). For ``grace_period`` seconds after a reload the previous version is
    kept in memory: if the new one trips its error threshold or fails its health check,
    it is rolled back at once.
    """

    queue_timeout: float | None = None
    max_queue_size: int | None = None
    strategy: Strategy | None = None
    grace_period: float | None = None

    def __post_init__(self) -> None:
        if self.queue_timeout is not None:
            object.__setattr__(self, "queue_timeout", _seconds("queue_timeout", self.queue_timeout))
        if self.grace_period is not None:
            object.__setattr__(self, "grace_period", _seconds("grace_period", self.grace_period))
        size = self.max_queue_size
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _MAX_QUEUE
        ):
            raise ConfigError(
                f"reload config: max_queue_size must be a whole number from 1 to {_MAX_QUEUE:,}, "
                f"got {size!r}",
                hint="give how many callers may wait while the plugin reloads",
            )
        if self.strategy is not None and self.strategy not in get_args(Strategy):
            raise ConfigError(
                f"reload config: strategy must be 'block' or 'reject', got {self.strategy!r}",
                hint="block holds calls during the swap; reject refuses them at once",
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> ReloadConfig:
        """From a JSON body or keyword options; unknown keys and bad values are a
        ``ConfigError`` naming the field."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"reload config must be an object, got {type(data).__name__}",
                hint='send a JSON object such as {"strategy": "reject"}, or nothing',
            )
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
                raise ConfigError(f"reload config: unknown field {str(key)[:80]!r}", hint=hint)
        values = {k: v for k, v in data.items() if v is not None}
        return cls(**values)  # type: ignore[arg-type]

    def resolve(self, section: ReloadSection) -> ResolvedReload:
        """Every field settled: this config's, else the section's."""

        def pick(mine: object, theirs: object) -> object:
            return theirs if mine is None else mine

        return ResolvedReload(
            queue_timeout=float(pick(self.queue_timeout, section.queue_timeout)),  # type: ignore[arg-type]
            max_queue_size=int(pick(self.max_queue_size, section.max_queue_size)),  # type: ignore[call-overload]
            strategy=pick(self.strategy, section.strategy),  # type: ignore[arg-type]
            grace_period=float(pick(self.grace_period, section.grace_period)),  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one reload (or rollback) did.

    ``outcome``: ``reloaded`` (the new version runs), ``rolled_back`` (the previous version
    runs again) or ``failed`` (neither could be started: the plugin is in error). ``step``
    names where the new version failed (``manifest``, ``dependencies``, ``import``,
    ``config``, ``initialize``, ``start``, ``grace``); ``held`` and ``rejected`` count the
    calls held at the plugin's gate and refused while it swapped; ``discarded_writes`` the
    storage keys a failed version changed that its rollback restored.
    """

    plugin: str
    outcome: Outcome
    from_version: str
    to_version: str | None
    step: str | None = None
    error: str | None = None
    duration: float = 0.0
    held: int = 0
    rejected: int = 0
    discarded_writes: int = 0
    at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    kind: Literal["reload", "rollback"] = "reload"

    @property
    def ok(self) -> bool:
        return self.outcome == "reloaded"

    def to_dict(self) -> dict[str, object]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["at"] = self.at.isoformat()
        data["duration"] = round(self.duration, 6)
        return data

    def summary(self) -> str:
        """One line: ``reloaded greeter 1.0.0 -> 1.1.0 in 12 ms (3 calls held)``."""
        to = self.to_version or "?"
        took = f"{self.duration * 1000:.0f} ms"
        held = f" ({self.held} call(s) held" + (
            f", {self.rejected} refused)" if self.rejected else ")"
        )
        if self.step is None and self.outcome != "failed":
            verb = "reloaded" if self.outcome == "reloaded" else "rolled back"
            return f"{verb} {self.plugin} {self.from_version} -> {to} in {took}{held}"
        what = "rolled back to" if self.outcome == "rolled_back" else "FAILED; was"
        return (
            f"{self.plugin} {to} failed at {self.step}: {self.error}; {what} "
            f"{self.from_version} in {took}{held}"
        )
