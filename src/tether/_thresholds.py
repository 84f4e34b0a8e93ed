"""Error thresholds: count a plugin's errors in a sliding window and act when there are too many.

The reference's block, per plugin::

    ErrorThreshold(max_errors=100, time_window="5m", action="disable", reset_on_success=True)

Every error recorded on the plugin's gate (a raising hook, event handler, service call,
route, failed health check...) enters the window; errors older than ``time_window``
leave it. At ``warn_at`` (95% by default) of ``max_errors`` one warning is logged; at
``max_errors`` the threshold is exceeded and ``action`` runs:

``log``
    the error line only.
``alert``
    the error line, and the event ``plugin.error_threshold_exceeded`` on the bus.
``disable``
    the error line, then the plugin is disabled: its gate closes with the reason
    "it was disabled: error threshold exceeded", so every call into it is refused
    (routes answer 503) until it is enabled again.

Each warning and each action happens once per crossing: the window has to drop below
the level again before it repeats. With ``reset_on_success``, a success reported for the
plugin (:meth:`ErrorThresholds.record_success`) empties its window.

With a ``cooldown``, a plugin the threshold disabled is tried again once the cooldown
has passed (half-open): its gate reopens; the first error disables it again (for
another cooldown), and the first success, or a cooldown without errors, closes the
breaker. Without one it stays disabled until an operator enables it.

Time comes from ``clock`` (``time.monotonic``), so tests can drive it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, get_args

from tether._config import ErrorThresholdSettings
from tether._durations import format_duration, parse_duration
from tether.errors import ConfigError

__all__ = [
    "DISABLED_REASON",
    "THRESHOLD_EVENT",
    "ErrorThreshold",
    "ErrorThresholds",
    "ThresholdAction",
    "ThresholdStatus",
    "merge_settings",
]

log = logging.getLogger("tether.observability")

ThresholdAction = Literal["disable", "log", "alert"]
THRESHOLD_EVENT = "plugin.error_threshold_exceeded"
DISABLED_REASON = "it was disabled: error threshold exceeded"
_ACTIONS = get_args(ThresholdAction)


def _problem(field_name: str, message: str) -> ConfigError:
    return ConfigError(
        f"invalid error threshold: {field_name} {message}",
        hint="ErrorThreshold(max_errors=100, time_window='5m', action='disable'|'log'|'alert')",
    )


@dataclass(frozen=True, slots=True)
class ErrorThreshold:
    """When a plugin has made too many errors, and what to do then (see the module docstring).

    ``time_window`` and ``cooldown`` take a ``timedelta``, a number of seconds or a
    duration text (``"5m"``).
    """

    max_errors: int = 100
    time_window: timedelta = timedelta(minutes=5)
    action: ThresholdAction = "disable"
    reset_on_success: bool = True
    warn_at: float = 0.95
    cooldown: timedelta | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_errors, int) or isinstance(self.max_errors, bool):
            raise _problem("max_errors", f"must be an integer, got {self.max_errors!r}")
        if self.max_errors < 1:
            raise _problem("max_errors", f"must be at least 1, got {self.max_errors}")
        if self.action not in _ACTIONS:
            raise _problem("action", f"must be one of {', '.join(_ACTIONS)}, got {self.action!r}")
        if not 0 < self.warn_at <= 1:
            raise _problem("warn_at", f"must be a fraction in (0, 1], got {self.warn_at!r}")
        object.__setattr__(self, "time_window", _duration("time_window", self.time_window))
        if self.time_window <= timedelta(0):
            raise _problem("time_window", "must be longer than zero")
        if self.cooldown is not None:
            object.__setattr__(self, "cooldown", _duration("cooldown", self.cooldown))

    @classmethod
    def from_settings(cls, settings: ErrorThresholdSettings) -> ErrorThreshold:
        """The threshold a config block describes (its ``enabled`` is the caller's business)."""
        cooldown = settings.cooldown
        return cls(
            max_errors=settings.max_errors,
            time_window=timedelta(seconds=settings.time_window),
            action=settings.action,
            reset_on_success=settings.reset_on_success,
            warn_at=settings.warn_at,
            cooldown=None if cooldown is None else timedelta(seconds=cooldown),
        )

    @property
    def warn_count(self) -> int:
        """The number of errors in the window that logs the warning."""
        return math.ceil(self.max_errors * self.warn_at - 1e-9)

    @property
    def window_text(self) -> str:
        return format_duration(self.time_window)

    def to_dict(self) -> dict[str, object]:
        return {
            "max_errors": self.max_errors,
            "time_window": self.window_text,
            "action": self.action,
            "reset_on_success": self.reset_on_success,
            "warn_at": self.warn_at,
            "cooldown": None if self.cooldown is None else format_duration(self.cooldown),
        }


def _duration(name: str, value: object) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _problem(name, str(exc)) from None


def merge_settings(
    section: ErrorThresholdSettings | None, entry: ErrorThresholdSettings | None
) -> ErrorThreshold | None:
    """The threshold for one plugin: the section's block, overridden key by key by its entry's."""
    if entry is None:
        chosen = section
    elif section is None:
        chosen = entry
    else:
        chosen = section.model_copy(update={k: getattr(entry, k) for k in entry.model_fields_set})
    if chosen is None or not chosen.enabled:
        return None
    return ErrorThreshold.from_settings(chosen)


BreakerState = Literal["closed", "open", "half-open"]


@dataclass(frozen=True, slots=True)
class ThresholdStatus:
    """Where one plugin stands against its threshold."""

    threshold: ErrorThreshold
    errors_in_window: int
    state: BreakerState  # closed: calls pass; open: disabled by the threshold; half-open: trial
    exceeded_count: int  # how many times the threshold was exceeded

    def to_dict(self) -> dict[str, object]:
        return {
            **self.threshold.to_dict(),
            "errors_in_window": self.errors_in_window,
            "state": self.state,
            "exceeded_count": self.exceeded_count,
        }


@dataclass(slots=True)
class _Guard:
    threshold: ErrorThreshold
    times: deque[float] = field(default_factory=deque)
    warned: bool = False
    exceeded: bool = False
    state: BreakerState = "closed"
    opened_at: float = 0.0  # when it was disabled, or when the trial began
    exceeded_count: int = 0

    def trim(self, now: float) -> int:
        horizon = now - self.threshold.time_window.total_seconds()
        times = self.times
        while times and times[0] <= horizon:
            times.popleft()
        count = len(times)
        if count < self.threshold.max_errors:
            self.exceeded = False
        if count < self.threshold.warn_count:
            self.warned = False
        return count


@dataclass(frozen=True, slots=True)
class _Act:
    """What to do, decided under the lock and done outside it."""

    kind: Literal["warn", "exceed", "retrip", "half-open", "close"]
    plugin: str
    count: int
    threshold: ErrorThreshold


class ErrorThresholds:
    """Every plugin's threshold and window. Thread-safe: errors arrive from any thread.

    ``disable(plugin, reason)`` and ``enable(plugin)`` switch a plugin (the hub passes the
    manager's ``set_enabled``); ``enable`` returns False when the plugin cannot be
    reopened (it is not running). ``alert(plugin, data)`` publishes the alert event.
    """

    def __init__(
        self,
        *,
        disable: Callable[[str, str], None],
        enable: Callable[[str], bool],
        alert: Callable[[str, dict[str, object]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._disable = disable
        self._enable = enable
        self._alert = alert
        self.clock = clock
        self._guards: dict[str, _Guard] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ settings

    def set(self, plugin: str, threshold: ErrorThreshold | None) -> None:
        """Give ``plugin`` a threshold (a fresh window), or take it away (``None``)."""
        with self._lock:
            if threshold is None:
                self._guards.pop(plugin, None)
            else:
                self._guards[plugin] = _Guard(threshold)

    def get(self, plugin: str) -> ErrorThreshold | None:
        guard = self._guards.get(plugin)
        return None if guard is None else guard.threshold

    def status(self, plugin: str) -> ThresholdStatus | None:
        with self._lock:
            guard = self._guards.get(plugin)
            if guard is None:
                return None
            count = guard.trim(self.clock())
            return ThresholdStatus(guard.threshold, count, guard.state, guard.exceeded_count)

    def reset(self, plugin: str) -> None:
        """Empty the window and close the breaker (an operator enabled the plugin)."""
        with self._lock:
            guard = self._guards.get(plugin)
            if guard is not None:
                self._guards[plugin] = _Guard(guard.threshold, exceeded_count=guard.exceeded_count)

    # ------------------------------------------------------------------ signals

    def record_error(self, plugin: str, source: str, error: BaseException) -> None:  # noqa: ARG002
        """Count one error (a gate error listener: ``source`` and ``error`` are not needed)."""
        guard = self._guards.get(plugin)
        if guard is None:
            return
        with self._lock:
            act = self._count(plugin, guard, self.clock())
        if act is not None:
            self._do(act)

    def _count(self, plugin: str, guard: _Guard, now: float) -> _Act | None:
        threshold = guard.threshold
        if guard.state == "open":
            return None  # disabled: nothing of it runs, late errors change nothing
        guard.times.append(now)
        count = guard.trim(now)
        if guard.state == "half-open":
            guard.state, guard.opened_at = "open", now
            guard.exceeded_count += 1
            return _Act("retrip", plugin, count, threshold)
        if count >= threshold.max_errors and not guard.exceeded:
            guard.exceeded = guard.warned = True
            guard.exceeded_count += 1
            if threshold.action == "disable":
                guard.state, guard.opened_at = "open", now
            return _Act("exceed", plugin, count, threshold)
        if threshold.warn_count <= count < threshold.max_errors and not guard.warned:
            guard.warned = True
            return _Act("warn", plugin, count, threshold)
        return None

    def record_success(self, plugin: str) -> None:
        """A call into ``plugin`` succeeded: with ``reset_on_success``, empty its window.

        A plugin on trial (half-open) is taken back for good.
        """
        guard = self._guards.get(plugin)
        if guard is None:
            return
        act = None
        with self._lock:
            if guard.state == "half-open":
                guard.state = "closed"
                act = _Act("close", plugin, 0, guard.threshold)
            if guard.threshold.reset_on_success and guard.state == "closed" and guard.times:
                guard.times.clear()
                guard.warned = guard.exceeded = False
        if act is not None:
            log.info("Plugin %s recovered: a call succeeded on trial", plugin)

    def check_cooldowns(self) -> list[str]:
        """Try again the plugins whose cooldown has passed; close trials that stayed quiet.

        Returns the plugins reopened on trial. The hub calls this every tick.
        """
        now = self.clock()
        due: list[_Act] = []
        with self._lock:
            for plugin, guard in self._guards.items():
                cooldown = guard.threshold.cooldown
                if cooldown is None or now - guard.opened_at < cooldown.total_seconds():
                    continue
                if guard.state == "open":
                    guard.state, guard.opened_at = "half-open", now
                    guard.times.clear()
                    guard.warned = guard.exceeded = False
                    due.append(_Act("half-open", plugin, 0, guard.threshold))
                elif guard.state == "half-open":
                    guard.state = "closed"
                    due.append(_Act("close", plugin, 0, guard.threshold))
        reopened = []
        for act in due:
            if act.kind == "close":
                log.info("Plugin %s recovered: no error during its trial", act.plugin)
            elif self._enable(act.plugin):
                reopened.append(act.plugin)
                log.info(
                    "Plugin %s re-enabled on trial after a cooldown of %s (half-open)",
                    act.plugin, format_duration(act.threshold.cooldown or timedelta(0)),
                )  # fmt: skip
            else:
                self._guards_back_open(act.plugin, now)
        return reopened

    def _guards_back_open(self, plugin: str, now: float) -> None:
        """The plugin could not be reopened (it is not running): wait another cooldown."""
        with self._lock:
            guard = self._guards.get(plugin)
            if guard is not None:
                guard.state, guard.opened_at = "open", now

    # ------------------------------------------------------------------ actions

    def _do(self, act: _Act) -> None:
        plugin, count, threshold = act.plugin, act.count, act.threshold
        limit, window = threshold.max_errors, threshold.window_text
        if act.kind == "warn":
            log.warning(
                "Plugin %s approaching error threshold: %d/%d errors in %s",
                plugin, count, limit, window,
            )  # fmt: skip
            return
        if act.kind == "retrip":
            log.error("Plugin %s failed on trial: disabled again", plugin)
            self._disable(plugin, DISABLED_REASON)
            return
        log.error(
            "Plugin %s exceeded error threshold: %d/%d errors in %s", plugin, count, limit, window
        )
        if threshold.action == "disable":
            self._disable(plugin, DISABLED_REASON)
            log.info("Plugin %s automatically disabled due to error threshold", plugin)
        elif threshold.action == "alert":
            data: dict[str, object] = {"plugin": plugin, "errors": count, **threshold.to_dict()}
            self._alert(plugin, data)
            log.warning("Plugin %s error threshold alert sent as event %s", plugin, THRESHOLD_EVENT)
