"""Hooks: plugins register handlers at named points; the host calls every handler there.

A hook point has a type: one of the seven the reference defines (``startup``,
``shutdown``, ``pre_request``, ``post_request``, ``pre_response``, ``post_response``,
``error``) or one a host declares for itself (``workload.before_operation``). Each
handler takes one argument, the context object the host passes, and handlers run in
descending priority, ties in registration order::

    registry = HookRegistry()
    registry.register("auth", gate, "pre_request", 300, check_token)
    outcome = registry.call("pre_request", request)      # all-sync chain: the fast path
    outcome = await registry.run("pre_request", request)  # any chain; awaits async handlers

A handler that raises does not stop the others: its error is counted in the
(plugin, hook type) metrics, recorded on the plugin's gate, logged with the plugin's
name and returned in ``outcome.failures``. Only ``BaseException`` subclasses that are
not ``Exception`` (``KeyboardInterrupt``, ``SystemExit``, ``CancelledError``) propagate.

Every handler call passes its plugin's gate. ``call`` never blocks: a handler whose
gate is not open is skipped with a ``PluginUnavailableError`` failure (not counted as
the plugin's error). ``run`` waits at a held gate and skips only when the gate refuses.

How ``call`` stays fast:

- Each hook type has an immutable snapshot (``_Chain``): the handlers presorted, a
  precomputed "has async handlers" flag, and the function that calls them. Register
  and remove build a new snapshot under a lock and publish it with one dict store
  (copy-on-write), so a call never sorts, never locks, and is safe while another
  thread registers.
- For an all-sync chain that function is generated: code compiled once per chain
  length, run by each chain with its own globals, in which every handler, gate and
  in-flight deque has its own name. The unrolled code has no loop, no tuple
  unpacking, and builds the results list in one step.
- The clock is read once between consecutive handlers (n + 1 reads for n handlers),
  and the readings are logged, not turned into metrics, on the way: one
  ``list.extend`` per call, summed up in C now and then (see ``_Chain``).
"""

from __future__ import annotations

import asyncio
import builtins
import difflib
import functools
import inspect
import linecache
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from itertools import count
from time import perf_counter_ns
from types import CodeType, FunctionType
from typing import NoReturn, cast

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
"""A hook handler: takes the host's context object; a plain function or ``async def``."""

_HOOK_TYPE = re.compile(r"^[A-Za-z_][\w.:-]*$")

# Metrics for one (plugin, hook type) live in a list of plain ints, indexed below. The
# adds are not atomic across threads: when several threads call the same hook at once
# an update can be lost now and then, which is acceptable for metrics and keeps locks
# off the hot path.
_COUNT, _NANOS, _ERRORS = 0, 1, 2

# Chains longer than this run through a loop instead of generated code.
_UNROLL_LIMIT = 64


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class HookMetrics:
    """How often one plugin's handlers for one hook type ran, for how long, and failed."""

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
    value that is not ``None``. ``failures`` has one entry per failed or skipped handler.
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


class _NoFailures(list[HookFailure]):
    """The ``failures`` of every outcome without failures: one shared, read-only empty list.

    Sharing it spares the fast path an allocation per call; refusing changes keeps one
    caller's slip from showing up in every other outcome.
    """

    __slots__ = ()

    def _read_only(self, *_args: object, **_kwargs: object) -> NoReturn:
        raise TypeError(
            "an outcome without failures shares one read-only empty failures list; "
            "copy it first: list(outcome.failures)"
        )

    append = extend = insert = remove = pop = clear = sort = reverse = _read_only
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only


_NO_FAILURES = _NoFailures()

# The generated frozen ``__init__`` sets each field through ``object.__setattr__``,
# which costs as much as a short sync chain; the hot paths fill the two slots through
# their descriptors instead (about half the cost).
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

    def __init__(
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

    def call_order(self) -> tuple[int, int]:
        return (-self.priority, self.sequence)


def _is_async(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    dunder_call = getattr(handler, "__call__", None)  # noqa: B004 - looking for an async __call__
    return inspect.iscoroutinefunction(dunder_call)


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
        """Unregister the handler. Removing it again does nothing."""
        self._registry._remove(self._entry)  # noqa: SLF001 - the registry's own handle

    def __repr__(self) -> str:
        entry = self._entry
        return f"<Registration {entry.plugin} {entry.hook_type} priority={entry.priority}>"


# --------------------------------------------------------------------------- failures


def _refuse(entry: _Handler) -> HookFailure:
    """The failure for a handler skipped because its gate is not open (not its error)."""
    gate = entry.gate
    if gate.state is GateState.CLOSED:
        reason = gate.closed_reason
    else:
        reason = (
            "it is reloading, and a synchronous hook call does not wait for it "
            f"(`await registry.run('{entry.hook_type}', ...)` waits)"
        )
    error = PluginUnavailableError(entry.plugin, reason)
    return HookFailure(entry.plugin, entry.hook_type, error)


def _fail(entry: _Handler, error: Exception, started: int) -> HookFailure:
    """Count, record and log the error of a handler that started at ``started``."""
    stats = entry.stats
    stats[_COUNT] += 1
    stats[_NANOS] += perf_counter_ns() - started
    stats[_ERRORS] += 1
    plugin, hook_type = entry.plugin, entry.hook_type
    _log.error(
        "plugin '%s': %s hook failed: %s: %s",
        plugin,
        hook_type,
        type(error).__name__,
        error,
        exc_info=error,
    )
    try:
        entry.gate.record_error(error, source=f"hook:{hook_type}")
    except Exception:
        _log.exception(
            "plugin '%s': an error listener failed on a %s hook error", plugin, hook_type
        )
    return HookFailure(plugin, hook_type, error)


# --------------------------------------------------------------------------- chains

_Caller = Callable[[object], HookOutcome]

# A generated caller logs its clock readings instead of updating metrics per handler.
# The log is drained into the metrics when it holds this many readings, when metrics
# are read, and when the snapshot is replaced.
_LOG_LIMIT = 2048
_drain_lock = threading.Lock()


class _Chain:
    """An immutable snapshot of one hook type's handlers, and how to call them.

    Metrics of the generated caller: a call in which every handler ran without error
    appends its n + 1 clock readings to ``log`` (one atomic ``list.extend``). Handler
    i's duration in that call is reading i + 1 minus reading i, so draining the log
    adds, to each handler, the number of rows and the difference of two column sums,
    done in C by ``sum`` over slices. A call with a failure or a skip is accounted
    right away instead (``_settle``). Readings logged by a call still running on a
    snapshot that has just been replaced are lost, as the module's metrics allow.
    """

    __slots__ = ("call", "entries", "is_async", "log")

    def __init__(self, entries: tuple[_Handler, ...]) -> None:
        self.entries = entries
        self.is_async = any(entry.is_async for entry in entries)
        self.log: list[int] = []
        self.call: _Caller = _no_sync_call if self.is_async else self._sync_caller()

    def _sync_caller(self) -> _Caller:
        entries = self.entries
        if not entries:
            return _no_handlers
        if len(entries) > _UNROLL_LIMIT:
            return functools.partial(_call_loop, entries, first=False)
        namespace = {
            **_CALLER_GLOBALS,
            "log": self.log,
            "drain": functools.partial(_drain, entries, self.log),
            "settle": functools.partial(_settle, entries),
        }
        for i, entry in enumerate(entries):
            namespace |= {f"e{i}": entry, f"h{i}": entry.handler, f"g{i}": entry.gate}
            namespace[f"c{i}"] = entry.gate.calls
        # A copy of the code per chain: the interpreter specializes global loads per code
        # object, and chains of one length must not keep undoing each other's work.
        code = _caller_code(len(entries)).replace(co_name=f"hook_chain_{entries[0].hook_type}")
        return cast("_Caller", FunctionType(code, namespace))

    def drain(self) -> None:
        """Add the logged calls to the handlers' metrics."""
        _drain(self.entries, self.log)


def _drain(entries: tuple[_Handler, ...], log: list[int]) -> None:
    with _drain_lock:
        readings = log[:]
        del log[: len(readings)]  # readings appended meanwhile stay for the next drain
        if not readings:
            return
        width = len(entries) + 1
        rows = len(readings) // width
        sums = [sum(readings[k::width]) for k in range(width)]
        for i, entry in enumerate(entries):
            stats = entry.stats
            stats[_COUNT] += rows
            stats[_NANOS] += sums[i + 1] - sums[i]


def _settle(
    entries: tuple[_Handler, ...], readings: tuple[int, ...], values: tuple[object, ...]
) -> None:
    """Account a call that had failures: the handlers that ran without error."""
    for i, entry in enumerate(entries):
        if values[i] is not _FAILED:
            stats = entry.stats
            stats[_COUNT] += 1
            stats[_NANOS] += readings[i + 1] - readings[i]


def _no_sync_call(_arg: object) -> HookOutcome:  # pragma: no cover - guarded by is_async
    raise AssertionError("an async chain has no synchronous caller")


def _no_handlers(_arg: object) -> HookOutcome:
    return _outcome([], _NO_FAILURES)


_FAILED = object()  # stands in for a failed or skipped handler's value until results are built

# One block per handler: ``t{i}`` is the reading before handler i, ``t{j}`` the one after.
# ``fail`` records a failed handler's error and duration (reading the clock itself, so
# the time spent logging it is nobody's duration); ``refuse`` a skip at a closed gate.
_HANDLER_BLOCK = """\
    if g{i}.is_open:
        c{i}.append(None)
        try:
            v{i} = h{i}(arg)
        except Exception as exc:
            v{i} = FAILED
            if failures is NO_FAILURES:
                failures = []
            failures.append(fail(e{i}, exc, t{i}))
        finally:
            c{i}.pop()
        t{j} = clock()
    else:
        v{i} = FAILED
        if failures is NO_FAILURES:
            failures = []
        failures.append(refuse(e{i}))
        t{j} = clock()
"""


# What every generated caller reads besides its own handlers, gates and log.
_CALLER_GLOBALS: dict[str, object] = {
    "__builtins__": builtins,
    "clock": perf_counter_ns,
    "fail": _fail,
    "refuse": _refuse,
    "FAILED": _FAILED,
    "NO_FAILURES": _NO_FAILURES,
    "LOG_LIMIT": _LOG_LIMIT,
    "new": _new_object,
    "set_results": _set_results,
    "set_failures": _set_failures,
    "Outcome": HookOutcome,
}


@functools.cache
def _caller_code(size: int) -> CodeType:
    """Compile (once per chain length) the code of an unrolled caller of ``size`` handlers.

    The source is built from this module's templates and numbers only. Each chain runs
    its own copy of the code with its own globals (``_Chain._sync_caller``): global
    loads are the cheapest way for the code to reach a chain's handlers, gates and log.
    """
    readings = ", ".join(f"t{i}" for i in range(size + 1))
    values = ", ".join(f"v{i}" for i in range(size))
    lines = [
        "def call(arg):",
        "    failures = NO_FAILURES",
        "    t0 = clock()",
        *(_HANDLER_BLOCK.format(i=i, j=i + 1) for i in range(size)),
        "    if failures is NO_FAILURES:",
        f"        log.extend(({readings},))",
        "        if len(log) >= LOG_LIMIT:",
        "            drain()",
        f"        results = [{values}]",
        "    else:",
        f"        settle(({readings},), ({values},))",
        f"        results = [v for v in ({values},) if v is not FAILED]",
        "    outcome = new(Outcome)",
        "    set_results(outcome, results)",
        "    set_failures(outcome, failures)",
        "    return outcome",
    ]
    source = "\n".join(lines) + "\n"
    filename = f"<tether hook chain of {size} handler{'s' if size != 1 else ''}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = compile(source, filename, "exec")
    return next(c for c in module.co_consts if isinstance(c, CodeType))


def _call_loop(entries: tuple[_Handler, ...], arg: object, *, first: bool) -> HookOutcome:
    """Call sync handlers in order (long chains, and first-result mode)."""
    results: list[object] = []
    failures: list[HookFailure] = []
    t0 = perf_counter_ns()
    for entry in entries:
        gate = entry.gate
        if not gate.is_open:
            failures.append(_refuse(entry))
            t0 = perf_counter_ns()
            continue
        calls = gate.calls
        calls.append(None)
        try:
            value = entry.handler(arg)
        except Exception as exc:
            failures.append(_fail(entry, exc, t0))
            t0 = perf_counter_ns()
            continue
        finally:
            calls.pop()
        t1 = perf_counter_ns()
        stats = entry.stats
        stats[_COUNT] += 1
        stats[_NANOS] += t1 - t0
        t0 = t1
        if not first:
            results.append(value)
        elif value is not None:
            return _outcome([value], failures or _NO_FAILURES)
    return _outcome(results, failures or _NO_FAILURES)


_EMPTY = _Chain(())


# --------------------------------------------------------------------------- the registry


class HookRegistry:
    """Hook points, the handlers registered at them, and their per-plugin metrics."""

    __slots__ = ("_callers", "_chains", "_lock", "_sequence", "_stats")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sequence = count()
        self._chains: dict[str, _Chain] = dict.fromkeys(HOOK_TYPES, _EMPTY)
        # hook type -> the chain's caller, for the chains without async handlers only:
        # being here is the precomputed "all sync" flag ``call`` checks.
        self._callers: dict[str, _Caller] = dict.fromkeys(HOOK_TYPES, _EMPTY.call)
        self._stats: dict[tuple[str, str], list[int]] = {}

    # ------------------------------------------------------------------ hook points

    def declare(self, hook_type: str) -> None:
        """Make ``hook_type`` a point plugins may register at (a host's own hook point)."""
        if not isinstance(hook_type, str) or not _HOOK_TYPE.match(hook_type):
            raise HookError(
                f"invalid hook type {hook_type!r}: use a name like 'pre_request' or "
                "'workload.before_operation'",
                hint="a hook type starts with a letter or '_' and contains letters, digits, "
                "'_', '.', ':' and '-'",
            )
        with self._lock:
            if hook_type not in self._chains:
                self._chains[hook_type] = _EMPTY
                self._callers[hook_type] = _EMPTY.call

    def is_known(self, hook_type: str) -> bool:
        return hook_type in self._chains

    @property
    def hook_types(self) -> tuple[str, ...]:
        """Every known hook type: the reference's seven, then the declared ones."""
        return tuple(self._chains)

    # ------------------------------------------------------------------ registering

    def register(
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
            stats = self._stats.setdefault((plugin, hook_type), [0, 0, 0])
            sequence = next(self._sequence)
            entry = _Handler(plugin, gate, hook_type, priority, handler, timeout, stats, sequence)
            self._publish(hook_type, [*self._chains[hook_type].entries, entry])
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
                f"{priority!r}: a priority is an integer (higher runs first)",
                plugin=plugin,
            )
        if not callable(handler):
            raise HookError(
                f"plugin '{plugin}' registered a {hook_type} hook whose handler is not "
                f"callable: {handler!r}",
                plugin=plugin,
            )
        if timeout is not None:
            _check_timeout(plugin, hook_type, handler, timeout)

    def _suggestion(self, hook_type: str) -> str:
        close = difflib.get_close_matches(hook_type, list(self._chains), n=1)
        return f" (did you mean '{close[0]}'?)" if close else ""

    def _publish(self, hook_type: str, entries: list[_Handler]) -> None:
        """Install a new snapshot for ``hook_type``. The caller holds the lock."""
        entries.sort(key=_Handler.call_order)
        self._chains[hook_type].drain()
        chain = _Chain(tuple(entries)) if entries else _EMPTY
        self._chains[hook_type] = chain
        if chain.is_async:
            self._callers.pop(hook_type, None)
        else:
            self._callers[hook_type] = chain.call

    def _holds(self, entry: _Handler) -> bool:
        chain = self._chains.get(entry.hook_type, _EMPTY)
        return any(e is entry for e in chain.entries)

    def _remove(self, entry: _Handler) -> bool:
        with self._lock:
            chain = self._chains.get(entry.hook_type, _EMPTY)
            kept = [e for e in chain.entries if e is not entry]
            if len(kept) == len(chain.entries):
                return False
            self._publish(entry.hook_type, kept)
            return True

    def remove_plugin(self, plugin: str) -> int:
        """Unregister every handler of ``plugin``; return how many there were.

        The plugin's metrics stay, so a plugin that is reloaded and registers again keeps
        its history.
        """
        removed = 0
        with self._lock:
            for hook_type, chain in list(self._chains.items()):
                kept = [e for e in chain.entries if e.plugin != plugin]
                if len(kept) != len(chain.entries):
                    removed += len(chain.entries) - len(kept)
                    self._publish(hook_type, kept)
        return removed

    # ------------------------------------------------------------------ calling

    def _chain(self, hook_type: str) -> _Chain:
        try:
            return self._chains[hook_type]
        except KeyError:
            raise self._unknown(hook_type) from None

    def call(self, hook_type: str, arg: object = None) -> HookOutcome:
        """Call every handler of an all-sync hook, in order. Never blocks at a gate."""
        try:
            caller = self._callers[hook_type]
        except KeyError:
            chain = self._chain(hook_type)  # raises for an unknown hook type
            if chain.is_async:
                raise _async_chain_error(hook_type, chain) from None
            caller = chain.call  # the async handlers were removed just now
        return caller(arg)

    def call_first(self, hook_type: str, arg: object = None) -> HookOutcome:
        """Like ``call``, but stop at the first handler that returns something not None."""
        chain = self._chain(hook_type)
        if chain.is_async:
            raise _async_chain_error(hook_type, chain)
        return _call_loop(chain.entries, arg, first=True)

    async def run(
        self, hook_type: str, arg: object = None, *, first_result: bool = False
    ) -> HookOutcome:
        """Call every handler in order, awaiting async ones and waiting at held gates.

        With ``first_result``, stop at the first handler that returns something not None.
        """
        results: list[object] = []
        failures: list[HookFailure] = []
        t0 = perf_counter_ns()
        for entry in self._chain(hook_type).entries:
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
                t0 = perf_counter_ns()  # the time held at the gate is not the handler's
            try:
                value = entry.handler(arg)
                if entry.is_async or inspect.isawaitable(value):
                    value = await _await_result(entry, cast("Awaitable[object]", value))
            except Exception as exc:
                failures.append(_fail(entry, exc, t0))
                t0 = perf_counter_ns()
                continue
            finally:
                gate.exit()
            t1 = perf_counter_ns()
            stats = entry.stats
            stats[_COUNT] += 1
            stats[_NANOS] += t1 - t0
            t0 = t1
            if not first_result:
                results.append(value)
            elif value is not None:
                return HookOutcome([value], failures or _NO_FAILURES)
        return HookOutcome(results, failures or _NO_FAILURES)

    def _unknown(self, hook_type: str) -> HookError:
        return HookError(
            f"unknown hook type '{hook_type}'{self._suggestion(hook_type)}; known types: "
            f"{', '.join(self._chains)}",
            hint="hosts declare their own hook points with HookRegistry.declare()",
        )

    # ------------------------------------------------------------------ introspection

    def handlers(self, hook_type: str) -> list[tuple[str, int]]:
        """``(plugin, priority)`` of each handler of ``hook_type``, in call order."""
        return [(e.plugin, e.priority) for e in self._chain(hook_type).entries]

    def metrics(self, plugin: str) -> dict[str, HookMetrics]:
        """Hook type -> metrics, for every hook type ``plugin`` has registered at."""
        out: dict[str, HookMetrics] = {}
        with self._lock:  # no snapshot is replaced while its log is drained
            for (owner, hook_type), stats in self._stats.items():
                if owner == plugin:
                    self._chains[hook_type].drain()
                    executions, nanos, errors = stats
                    total = timedelta(microseconds=nanos / 1000)
                    average = total / executions if executions else timedelta(0)
                    out[hook_type] = HookMetrics(executions, total, average, errors)
        return out


def _check_timeout(plugin: str, hook_type: str, handler: HookHandler, timeout: float) -> None:
    if not _is_async(handler):
        raise HookError(
            f"plugin '{plugin}' gave its {hook_type} hook a timeout, but the handler is a "
            "plain function, which cannot be interrupted",
            plugin=plugin,
            hint="make the handler `async def` to give it a timeout, or register it without one",
        )
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise HookError(
            f"plugin '{plugin}' gave its {hook_type} hook the timeout {timeout!r}: a timeout "
            "is a positive number of seconds",
            plugin=plugin,
        )


def _async_chain_error(hook_type: str, chain: _Chain) -> HookError:
    plugins = ", ".join(sorted({f"'{e.plugin}'" for e in chain.entries if e.is_async}))
    return HookError(
        f"hook '{hook_type}' has async handlers (from {plugins}), which a synchronous call "
        f"cannot await; use `await registry.run('{hook_type}', ...)`",
        hint="call the hook from async code with run(), or register plain functions",
    )


async def _await_result(entry: _Handler, awaitable: Awaitable[object]) -> object:
    """Await an async handler's result, within its timeout if it has one."""
    if entry.timeout is None:
        return await awaitable
    scope = asyncio.timeout(entry.timeout)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if not scope.expired():
            raise  # the handler's own TimeoutError, not the deadline
        limit = format_duration(timedelta(seconds=entry.timeout))
        raise HookTimeoutError(entry.plugin, entry.hook_type, limit) from None
