"""Hooks: plugins register handlers at named points; the host calls every handler there.

A hook point has a type: one of the seven the reference defines (``startup``,
``shutdown``, ``pre_request``, ``post_request``, ``pre_response``, ``post_response``,
``error``) or one a host declares for itself (``workload.before_operation``). Each
handler takes one argument, the context object the host passes, and handlers run in
descending priority, ties in registration order::

    registry = HookRegistry()
    registry.register("auth", gate, "pre_request", 300, check_token)
    outcome = registry.call("pre_request", request)     # all-sync chain: the fast path
    outcome = await registry.run("pre_request", request) # any chain; awaits async handlers

A handler that raises does not stop the others: its error is counted in the
(plugin, hook type) metrics, recorded on the plugin's gate, logged with the plugin's
name and returned in ``outcome.failures``. Only ``BaseException``\\ s that are not
``Exception``\\ s (``KeyboardInterrupt``, ``SystemExit``, ``CancelledError``) propagate.

Every handler call passes its plugin's gate. ``call`` never blocks: a handler whose
gate is not open is skipped with a ``PluginUnavailableError`` failure. ``run`` waits at
a held gate (``Gate.enter_async``) and skips only when the gate refuses.

How the fast path stays fast: each hook type keeps an immutable, presorted tuple of
handlers, rebuilt on every register/remove under a lock and published by a single
dict store (copy-on-write), so a call never sorts, never locks and is safe while
another thread registers. All-sync chains are also published in a second dict of
flat ``(handler, gate, calls, stats, plugin)`` tuples; ``call`` looks only there,
which is its once-per-call "no async handlers" check. The clock is read once between
consecutive handlers (n + 1 reads for n handlers), and a handler's execution count
and its duration share one integer (see ``_ONE``), so the per-handler bookkeeping is
one list-item add.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import logging
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from itertools import count
from time import perf_counter_ns
from typing import cast

from tether._durations import format_duration
from tether._gate import Gate, GateState
from tether._manifest import HOOK_TYPES
from tether.errors import HookError, HookTimeoutError, PluginUnavailableError

__all__ = [
    "HookFailure",
    "HookHandler",
    "HookMetrics",
    "HookOutcome",
    "HookRegistry",
    "Registration",
]

_log = logging.getLogger("tether.hooks")

HookHandler = Callable[[object], object]
"""A hook handler: takes the host's context object; plain or ``async def``."""

_HOOK_TYPE = re.compile(r"^[A-Za-z_][\w.:-]*$")

# A (plugin, hook type) accumulator is a list of two ints: [packed, errors]. ``packed``
# holds the execution count in the bits from 64 up and the total nanoseconds below
# them, so counting one execution and adding its duration is a single ``+= dt + _ONE``.
# The durations overflow into the count only after 2**64 ns (584 years). The adds are
# not atomic across threads: under heavy multi-threaded calling an update can be lost,
# which is acceptable for metrics and keeps locks off the hot path.
_ONE = 1 << 64
_NS_MASK = _ONE - 1
_PACKED, _ERRORS = 0, 1


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class HookMetrics:
    """How often one plugin's handlers for one hook type ran, how long, how often they failed."""

    execution_count: int
    total_duration: timedelta
    average_duration: timedelta
    error_count: int


@dataclass(frozen=True, slots=True)
class HookFailure:
    """One handler's error, returned to the caller instead of raised."""

    plugin: str
    hook_type: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """What one call of a hook produced.

    ``results`` holds the handlers' return values in call order (``None`` included),
    without those of failed or skipped handlers; in first-result mode, only the first
    value that is not ``None``. ``failures`` holds one entry per failed or skipped handler.
    """

    results: list[object]
    failures: list[HookFailure]

    @property
    def ok(self) -> bool:
        """True when no handler failed or was skipped."""
        return not self.failures

    def raise_first(self) -> None:
        """Re-raise the first failure's error, for hosts that want errors to propagate."""
        if self.failures:
            raise self.failures[0].error


# The generated frozen ``__init__`` goes through ``object.__setattr__`` for each field,
# which costs more than the rest of a short sync chain; the fast paths fill the slots
# through their descriptors instead.
_new_object = object.__new__
_set_results = HookOutcome.__dict__["results"].__set__
_set_failures = HookOutcome.__dict__["failures"].__set__


def _outcome(results: list[object], failures: list[HookFailure]) -> HookOutcome:
    outcome: HookOutcome = _new_object(HookOutcome)
    _set_results(outcome, results)
    _set_failures(outcome, failures)
    return outcome


# --------------------------------------------------------------------------- registrations


class _Handler:
    """One registered handler, as the registry keeps it."""

    __slots__ = (
        "gate",
        "handler",
        "hook_type",
        "is_async",
        "plugin",
        "priority",
        "sequence",
        "stats",
        "timeout",
    )

    def __init__(  # noqa: PLR0917 - internal record, built in one place
        self,
        plugin: str,
        gate: Gate,
        hook_type: str,
        priority: int,
        handler: HookHandler,
        timeout: float | None,
        stats: list[int],
        sequence: int,
    ) -> None:
        self.plugin = plugin
        self.gate = gate
        self.hook_type = hook_type
        self.priority = priority
        self.handler = handler
        self.timeout = timeout
        self.stats = stats
        self.sequence = sequence
        self.is_async = _is_async(handler)


class Registration:
    """The handle ``HookRegistry.register`` returns; ``remove()`` unregisters the handler."""

    __slots__ = ("_entry", "_registry")

    def __init__(self, registry: HookRegistry, entry: _Handler) -> None:
        self._registry = registry
        self._entry = entry

    @property
    def plugin(self) -> str:
        return self._entry.plugin

    @property
    def hook_type(self) -> str:
        return self._entry.hook_type

    @property
    def priority(self) -> int:
        return self._entry.priority

    @property
    def is_active(self) -> bool:
        """True until the handler is removed."""
        return self._registry._holds(self._entry)  # noqa: SLF001 - the registry's own handle

    def remove(self) -> None:
        """Unregister the handler. Removing twice does nothing."""
        self._registry._remove(self._entry)  # noqa: SLF001 - the registry's own handle

    def __repr__(self) -> str:
        entry = self._entry
        return f"<Registration {entry.plugin} {entry.hook_type} priority={entry.priority}>"


def _is_async(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an async __call__ is what we look for
    return inspect.iscoroutinefunction(call)


# --------------------------------------------------------------------------- the registry

_FastEntry = tuple[HookHandler, Gate, deque[None], list[int], str]


class HookRegistry:
    """Hook points, the handlers registered at them, and their per-plugin metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sequence = count()
        # hook type -> handlers in call order; every known type has an entry.
        self._chains: dict[str, tuple[_Handler, ...]] = dict.fromkeys(HOOK_TYPES, ())
        # hook type -> flat entries, only for chains without async handlers.
        self._sync: dict[str, tuple[_FastEntry, ...]] = dict.fromkeys(HOOK_TYPES, ())
        self._stats: dict[tuple[str, str], list[int]] = {}

    # ------------------------------------------------------------------ hook points

    def declare(self, hook_type: str) -> None:
        """Make ``hook_type`` a hook point plugins may register at (the host's own points)."""
        if not isinstance(hook_type, str) or not _HOOK_TYPE.match(hook_type):
            raise HookError(
                f"invalid hook type {hook_type!r}: use a name like 'pre_request' or "
                "'workload.before_operation'",
                hint="hook types start with a letter or '_' and contain letters, digits, "
                "'_', '.', ':' and '-'",
            )
        with self._lock:
            if hook_type not in self._chains:
                self._chains[hook_type] = ()
                self._sync[hook_type] = ()

    def is_known(self, hook_type: str) -> bool:
        return hook_type in self._chains

    @property
    def hook_types(self) -> tuple[str, ...]:
        """Every known hook type: the reference's seven, then the declared ones."""
        return tuple(self._chains)

    # ------------------------------------------------------------------ registering

    def register(  # noqa: PLR0917 - the reference's RegisterHook(type, priority, handler)
        self,
        plugin: str,
        gate: Gate,
        hook_type: str,
        priority: int,
        handler: HookHandler,
        *,
        timeout: float | None = None,
    ) -> Registration:
        """Register ``handler`` for ``plugin`` at ``hook_type``; higher ``priority`` runs first.

        ``timeout`` (seconds) bounds an ``async`` handler when the hook is ``run``; a plain
        function cannot be interrupted in-process, so it takes no timeout.
        """
        self._check_registration(plugin, hook_type, priority, handler, timeout)
        with self._lock:
            stats = self._stats.setdefault((plugin, hook_type), [0, 0])
            entry = _Handler(
                plugin, gate, hook_type, priority, handler, timeout, stats, next(self._sequence)
            )
            chain = (*self._chains[hook_type], entry)
            self._publish(hook_type, sorted(chain, key=_call_order))
        return Registration(self, entry)

    def _check_registration(
        self,
        plugin: str,
        hook_type: str,
        priority: int,
        handler: HookHandler,
        timeout: float | None,
    ) -> None:
        if hook_type not in self._chains:
            raise HookError(
                f"plugin '{plugin}' cannot register a hook for unknown hook type "
                f"'{hook_type}'{self._suggestion(hook_type)}; known types: "
                f"{', '.join(self._chains)}",
                plugin=plugin,
                hint=f"use one of the known types, or have the host declare '{hook_type}' "
                "as a hook point",
            )
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise HookError(
                f"plugin '{plugin}' registered a {hook_type} hook with priority "
                f"{priority!r}: the priority must be an integer (higher runs first)",
                plugin=plugin,
            )
        if not callable(handler):
            raise HookError(
                f"plugin '{plugin}' registered a {hook_type} hook whose handler is not "
                f"callable: {handler!r}",
                plugin=plugin,
            )
        if timeout is not None:
            self._check_timeout(plugin, hook_type, handler, timeout)

    @staticmethod
    def _check_timeout(plugin: str, hook_type: str, handler: HookHandler, timeout: float) -> None:
        if not _is_async(handler):
            raise HookError(
                f"plugin '{plugin}' gave its {hook_type} hook a timeout, but the handler is "
                "a plain function, which cannot be interrupted",
                plugin=plugin,
                hint="make the handler `async def` to give it a timeout, or register it "
                "without one",
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise HookError(
                f"plugin '{plugin}' gave its {hook_type} hook the timeout {timeout!r}: "
                "a timeout is a positive number of seconds",
                plugin=plugin,
            )

    def _suggestion(self, hook_type: str) -> str:
        close = difflib.get_close_matches(hook_type, list(self._chains), n=1)
        return f" (did you mean '{close[0]}'?)" if close else ""

    def _publish(self, hook_type: str, chain: list[_Handler]) -> None:
        """Install a new call order for ``hook_type``. Caller holds the lock."""
        self._chains[hook_type] = tuple(chain)
        if any(entry.is_async for entry in chain):
            self._sync.pop(hook_type, None)
        else:
            self._sync[hook_type] = tuple(
                (e.handler, e.gate, e.gate.calls, e.stats, e.plugin) for e in chain
            )

    def _holds(self, entry: _Handler) -> bool:
        return entry in self._chains.get(entry.hook_type, ())

    def _remove(self, entry: _Handler) -> bool:
        with self._lock:
            chain = self._chains.get(entry.hook_type, ())
            if entry not in chain:
                return False
            self._publish(entry.hook_type, [e for e in chain if e is not entry])
            return True

    def remove_plugin(self, plugin: str) -> int:
        """Unregister every handler of ``plugin``; return how many there were.

        The plugin's metrics stay, so a plugin that reloads and registers again keeps
        its history.
        """
        removed = 0
        with self._lock:
            for hook_type, chain in list(self._chains.items()):
                kept = [e for e in chain if e.plugin != plugin]
                if len(kept) != len(chain):
                    removed += len(chain) - len(kept)
                    self._publish(hook_type, kept)
        return removed

    # ------------------------------------------------------------------ calling

    def call(self, hook_type: str, arg: object = None) -> HookOutcome:
        """Call every handler of an all-sync hook, in order; never blocks at a gate."""
        try:
            chain = self._sync[hook_type]
        except KeyError:
            raise self._not_callable(hook_type) from None
        results: list[object] = []
        failures: list[HookFailure] = []
        append = results.append
        one = _ONE
        clock = perf_counter_ns
        t0 = clock()
        for handler, gate, calls, stats, plugin in chain:
            if not gate.is_open:
                failures.append(_refusal(plugin, hook_type, gate))
                t0 = clock()
                continue
            calls.append(None)
            try:
                value = handler(arg)
            except Exception as exc:
                calls.pop()
                failures.append(_failed(plugin, hook_type, gate, stats, exc, t0))
                t0 = clock()
                continue
            except BaseException:
                calls.pop()
                raise
            calls.pop()
            append(value)
            t1 = clock()
            stats[0] += t1 - t0 + one
            t0 = t1
        return _outcome(results, failures)

    def call_first(self, hook_type: str, arg: object = None) -> HookOutcome:
        """Like ``call``, but stop at the first handler that returns something not None."""
        try:
            chain = self._sync[hook_type]
        except KeyError:
            raise self._not_callable(hook_type) from None
        failures: list[HookFailure] = []
        t0 = perf_counter_ns()
        for handler, gate, calls, stats, plugin in chain:
            if not gate.is_open:
                failures.append(_refusal(plugin, hook_type, gate))
                t0 = perf_counter_ns()
                continue
            calls.append(None)
            try:
                value = handler(arg)
            except Exception as exc:
                failures.append(_failed(plugin, hook_type, gate, stats, exc, t0))
                t0 = perf_counter_ns()
                continue
            finally:
                calls.pop()
            t1 = perf_counter_ns()
            stats[0] += t1 - t0 + _ONE
            t0 = t1
            if value is not None:
                return _outcome([value], failures)
        return _outcome([], failures)

    async def run(
        self, hook_type: str, arg: object = None, *, first_result: bool = False
    ) -> HookOutcome:
        """Call every handler in order, awaiting async ones and waiting at held gates.

        With ``first_result``, stop at the first handler that returns something not None.
        """
        chain = self._chain(hook_type)
        results: list[object] = []
        failures: list[HookFailure] = []
        t0 = perf_counter_ns()
        for entry in chain:
            gate = entry.gate
            if gate.is_open:
                gate.calls.append(None)
            else:
                try:
                    await gate.enter_async()
                except PluginUnavailableError as exc:
                    failures.append(HookFailure(entry.plugin, hook_type, exc))
                    t0 = perf_counter_ns()
                    continue
                t0 = perf_counter_ns()  # time spent held at the gate is not the handler's
            try:
                value = entry.handler(arg)
                if entry.is_async or inspect.isawaitable(value):
                    value = await _settle(entry, cast("Awaitable[object]", value))
            except Exception as exc:
                failures.append(_failed(entry.plugin, hook_type, gate, entry.stats, exc, t0))
                t0 = perf_counter_ns()
                continue
            finally:
                gate.exit()
            t1 = perf_counter_ns()
            entry.stats[0] += t1 - t0 + _ONE
            t0 = t1
            if not first_result:
                results.append(value)
            elif value is not None:
                return HookOutcome([value], failures)
        return HookOutcome(results, failures)

    def _chain(self, hook_type: str) -> tuple[_Handler, ...]:
        try:
            return self._chains[hook_type]
        except KeyError:
            raise self._unknown(hook_type) from None

    def _unknown(self, hook_type: str) -> HookError:
        return HookError(
            f"unknown hook type '{hook_type}'{self._suggestion(hook_type)}; known types: "
            f"{', '.join(self._chains)}",
            hint="hosts declare their own hook points with HookRegistry.declare()",
        )

    def _not_callable(self, hook_type: str) -> HookError:
        chain = self._chains.get(hook_type)
        if chain is None:
            return self._unknown(hook_type)
        plugins = sorted({e.plugin for e in chain if e.is_async})
        names = ", ".join(f"'{p}'" for p in plugins)
        return HookError(
            f"hook '{hook_type}' has async handlers (from {names}), which a synchronous "
            f"call cannot await; use `await registry.run('{hook_type}', ...)`",
            hint="call the hook from async code with run(), or register plain functions",
        )

    # ------------------------------------------------------------------ introspection

    def handlers(self, hook_type: str) -> list[tuple[str, int]]:
        """``(plugin, priority)`` of each handler of ``hook_type``, in call order."""
        return [(e.plugin, e.priority) for e in self._chain(hook_type)]

    def metrics(self, plugin: str) -> dict[str, HookMetrics]:
        """Hook type -> metrics, for every hook type ``plugin`` has registered at."""
        out: dict[str, HookMetrics] = {}
        for (owner, hook_type), (packed, errors) in list(self._stats.items()):
            if owner != plugin:
                continue
            executions = packed >> 64
            total = timedelta(microseconds=(packed & _NS_MASK) / 1000)
            average = total / executions if executions else timedelta(0)
            out[hook_type] = HookMetrics(executions, total, average, errors)
        return out

    def clear_metrics(self, plugin: str) -> None:
        """Reset the plugin's counters (registered handlers keep running and counting)."""
        with self._lock:
            for (owner, _), stats in self._stats.items():
                if owner == plugin:
                    stats[:] = [0, 0]


def _call_order(entry: _Handler) -> tuple[int, int]:
    return (-entry.priority, entry.sequence)


# --------------------------------------------------------------------------- failures


def _refusal(plugin: str, hook_type: str, gate: Gate) -> HookFailure:
    """The failure for a handler skipped because its gate is not open (not the plugin's error)."""
    if gate.state is GateState.CLOSED:
        reason = gate._closed_reason  # noqa: SLF001 - the reason close() was given
    else:
        reason = (
            "it is reloading, and a synchronous hook call does not wait "
            f"(use `await registry.run('{hook_type}', ...)` to wait for it)"
        )
    return HookFailure(plugin, hook_type, PluginUnavailableError(plugin, reason))


def _failed(
    plugin: str, hook_type: str, gate: Gate, stats: list[int], error: Exception, started: int
) -> HookFailure:
    """Count, record and log a handler's error; return it as a failure."""
    stats[_PACKED] += perf_counter_ns() - started + _ONE
    stats[_ERRORS] += 1
    _log.error(
        "plugin '%s': %s hook %s failed: %s",
        plugin,
        hook_type,
        type(error).__name__,
        error,
        exc_info=error,
    )
    try:
        gate.record_error(error, source=f"hook:{hook_type}")
    except Exception:
        _log.exception("plugin '%s': recording a %s hook error failed", plugin, hook_type)
    return HookFailure(plugin, hook_type, error)


async def _settle(entry: _Handler, awaitable: Awaitable[object]) -> object:
    """Await an async handler's result, within its timeout if it has one."""
    if entry.timeout is None:
        return await awaitable
    scope = asyncio.timeout(entry.timeout)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if not scope.expired():
            raise  # the handler's own TimeoutError, not ours
        limit = format_duration(timedelta(seconds=entry.timeout))
        raise HookTimeoutError(entry.plugin, entry.hook_type, limit) from None
