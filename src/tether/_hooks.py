"""Hooks: plugins register handlers at named points; the host calls every handler there.

A hook point has a type: one of the seven the reference defines (``startup``,
``shutdown``, ``pre_request``, ``post_request``, ``pre_response``, ``post_response``,
``error``) or one a host declares for itself (``workload.before_operation``). A point
may be declared with its argument and result types (a :class:`tether.types.HookPoint`),
so that a type checker flags a handler with the wrong signature. Each handler takes
one argument, the object the host passes, and handlers run in descending priority,
ties in registration order::

    registry = HookRegistry()
    registry.register(door, "pre_request", 300, check_token)
    outcome = registry.call("pre_request", request)      # all-sync chain: the fast path
    outcome = await registry.run("pre_request", request)  # any chain; awaits async handlers

A handler that raises does not stop the others: its error is counted in the
(plugin, hook type) metrics, recorded on the plugin's gate, logged with the plugin's
name and returned in ``outcome.failures``. Only ``BaseException`` subclasses that are
not ``Exception`` (``KeyboardInterrupt``, ``SystemExit``, ``CancelledError``) propagate.

Every handler call passes its version's door (see ``tether._seam``). ``call`` never
blocks: a handler whose gate is closed or held is skipped with a
``PluginUnavailableError`` failure (not counted as the plugin's error). ``run`` waits
at a held gate and skips only when the gate refuses. A handler of a version that was
replaced (a reload) is stood in for by the live version's handlers of that hook type.

Registrations belong to a version: a version that is not yet committed has its
handlers staged (they are not called), and dropping a version removes all of its
handlers at once. ``refresh`` rebuilds the snapshots after a commit.

How ``call`` stays fast:

- Each hook type has an immutable snapshot (``_Chain``): the handlers presorted, a
  precomputed "has async handlers" flag, and the function that calls them. Changes
  build a new snapshot under a lock and publish it with one dict store
  (copy-on-write), so a call never sorts, never locks, and is safe while another
  thread registers.
- For an all-sync chain that function is generated from the seam's hook block
  (``tether._seam.HOOK_BLOCK``): code compiled once per chain length, run by each chain
  with its own globals, in which every handler, door and entry has its own name. The
  unrolled code has no loop, no tuple unpacking, and builds the results list in one
  step. A handler whose plugin runs a call chain other than the default is called
  through its own entry instead.
- The clock is read once between consecutive handlers (n + 1 reads for n handlers),
  and the readings are logged, not turned into metrics, on the way: one
  ``list.extend`` per call, summed up in C now and then (see ``_Chain``).
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import functools
import inspect
import logging
import re
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from itertools import count
from time import perf_counter_ns
from types import CodeType, FrameType, FunctionType
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar, cast, overload

from tether._gate import GateState
from tether._manifest import HOOK_TYPES
from tether._seam import (
    ASYNC_HOOK_BLOCK,
    HOOK_BLOCK,
    ONE_ARGUMENT,
    CallChain,
    CallStats,
    Entry,
    compile_chain,
    counts_as_seam,
    fail,
    is_async_callable,
)
from tether.errors import HookError, HookTimeoutError, PluginUnavailableError
from tether.types import HookPoint

if TYPE_CHECKING:
    from tether._gate import Door

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

A = TypeVar("A")
R = TypeVar("R")

_HOOK_TYPE = re.compile(r"^[A-Za-z_][\w.:-]*$")

# Metrics for one (plugin, hook type) live in a list of plain ints (a ``Door.stats``
# entry), indexed below. The adds are not atomic across threads: when several threads
# call the same hook at once an update can be lost now and then, which is acceptable
# for metrics and keeps locks off the hot path.
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
class HookOutcome(Generic[R]):
    """What one call of a hook produced.

    ``results`` holds the handlers' return values in call order (``None`` included),
    without those of failed or skipped handlers; in first-result mode, only the first
    value that is not ``None``. ``failures`` has one entry per failed or skipped handler.
    """

    results: list[R]
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


def _outcome(results: list[object], failures: list[HookFailure]) -> HookOutcome[object]:
    outcome: HookOutcome[object] = _new_object(HookOutcome)
    _set_results(outcome, results)
    _set_failures(outcome, failures)
    return outcome


# --------------------------------------------------------------------------- registrations


class _Handler:
    """One registered handler, as the registry keeps it: its entry, priority and order."""

    __slots__ = ("door", "entry", "handler", "hook_type", "inline", "plugin", "priority",
                 "sequence", "stats")  # fmt: skip

    def __init__(
        self, entry: Entry, hook_type: str, priority: int, sequence: int, *, inline: bool
    ) -> None:
        self.entry = entry
        self.door = entry.door
        self.plugin = entry.plugin
        self.handler = entry.fn
        self.stats = entry.stats
        self.hook_type = hook_type
        self.priority = priority
        self.sequence = sequence
        self.inline = inline  # the default chain: the unrolled block times and records it

    @property
    def is_async(self) -> bool:
        return self.entry.is_async

    def call_order(self) -> tuple[int, int]:
        return (-self.priority, self.sequence)


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
        """True until the handler is removed (a staged handler is active, not yet called)."""
        return self._registry._holds(self._entry)  # noqa: SLF001 - the registry's own handle

    def remove(self) -> None:
        """Unregister the handler. Removing it again does nothing."""
        self._registry._remove(self._entry)  # noqa: SLF001 - the registry's own handle

    def __repr__(self) -> str:
        entry = self._entry
        return f"<Registration {entry.plugin} {entry.hook_type} priority={entry.priority}>"


# --------------------------------------------------------------------------- failures


class _Many(tuple[object, ...]):
    """Values a slow path produced (the live version's stand-ins, or a wait): each was
    timed and recorded by its own entry, so the chain's clock log leaves them out."""

    __slots__ = ()


def _refusal(entry: _Handler, error: PluginUnavailableError) -> HookFailure:
    return HookFailure(entry.plugin, entry.hook_type, error)


def _held_error(entry: _Handler) -> PluginUnavailableError:
    return PluginUnavailableError(
        entry.plugin,
        "it is reloading, and a synchronous hook call does not wait for it "
        f"(`await registry.run('{entry.hook_type}', ...)` waits)",
    )


def _log_failure(entry: _Handler, error: BaseException) -> HookFailure:
    plugin, hook_type = entry.plugin, entry.hook_type
    _log.error(
        "plugin '%s': %s hook failed: %s: %s",
        plugin,
        hook_type,
        type(error).__name__,
        error,
        exc_info=error,
    )
    return HookFailure(plugin, hook_type, error)


def _fail(
    entry: _Handler, error: Exception, started: int, frame: FrameType | None = None
) -> HookFailure:
    """An inline handler failed: time it, count it (metrics, recovery), log it.

    ``frame`` is the chain's frame (the seam the handler's error leaves).
    """
    stats = entry.stats
    stats[_COUNT] += 1
    stats[_NANOS] += perf_counter_ns() - started
    if fail(entry.entry, error, frame if frame is not None else sys._getframe(1)):  # noqa: SLF001
        stats[_ERRORS] += 1
    return _log_failure(entry, error)


# --------------------------------------------------------------------------- chains

_Caller = Callable[[object], HookOutcome[object]]
_AsyncCaller = Callable[[object], Awaitable[HookOutcome[object]]]

# A generated caller logs its clock readings instead of updating metrics per handler.
# The log is drained into the metrics when it holds this many readings, when metrics
# are read, and when the snapshot is replaced.
_LOG_LIMIT = 2048
_drain_lock = threading.Lock()


class _Chain:
    """An immutable snapshot of one hook type's live handlers, and how to call them.

    Metrics of the generated caller: a call in which every handler ran without error
    appends its n + 1 clock readings to ``log`` (one atomic ``list.extend``). Handler
    i's duration in that call is reading i + 1 minus reading i, so draining the log
    adds, to each inline handler, the number of rows and the difference of two column
    sums, done in C by ``sum`` over slices. A call with a failure or a skip is
    accounted right away instead (``_settle``). Readings logged by a call still running
    on a snapshot that has just been replaced are lost, as the module's metrics allow.
    """

    __slots__ = ("acall", "call", "entries", "is_async", "log", "registry")

    def __init__(self, registry: HookRegistry | None, entries: tuple[_Handler, ...]) -> None:
        self.registry = registry
        self.entries = entries
        self.is_async = any(entry.is_async for entry in entries)
        self.log: list[int] = []
        self.call: _Caller = _no_sync_call
        self.acall: _AsyncCaller | None = None
        if not self.is_async:
            self.call = cast("_Caller", self._caller(HOOK_BLOCK, is_async=False))
            self.acall = cast("_AsyncCaller", self._caller(ASYNC_HOOK_BLOCK, is_async=True))

    def _caller(self, block: str, *, is_async: bool) -> Callable[[object], object]:
        entries = self.entries
        registry = self.registry
        if not entries or registry is None:
            return _no_handlers_async if is_async else _no_handlers
        if len(entries) > _UNROLL_LIMIT:
            if is_async:
                return functools.partial(registry.run_entries, entries)
            return functools.partial(_call_loop, registry, entries, first=False)
        namespace = {
            **_CALLER_GLOBALS,
            "log": self.log,
            "drain": functools.partial(_drain, entries, self.log),
            "settle": functools.partial(_settle, entries),
            "slow": registry.aslow_call if is_async else registry.slow_call,
        }
        for i, entry in enumerate(entries):
            namespace |= {f"e{i}": entry, f"d{i}": entry.door}
            # A handler of another chain is called through its own entry, which times and
            # records it; inline ones are called bare and timed by the clock log.
            namespace[f"h{i}"] = entry.handler if entry.inline else _through(entry)
        # A copy of the code per chain: the interpreter specializes global loads per code
        # object, and chains of one length must not keep undoing each other's work.
        name = f"hook_chain_{entries[0].hook_type}"
        code = _caller_code(len(entries), block, is_async).replace(co_name=name)
        return cast("Callable[[object], object]", FunctionType(code, namespace))

    def drain(self) -> None:
        """Add the logged calls to the handlers' metrics."""
        _drain(self.entries, self.log)


def _through(entry: _Handler) -> Callable[[object], object]:
    """Call a handler through its entry; the entry has counted any error already."""
    call = entry.entry.call

    def handler(arg: object) -> object:
        try:
            return call(arg)
        except Exception as exc:
            raise _Recorded(exc) from exc

    return handler


class _Recorded(Exception):  # noqa: N818 - a carrier, not an error of its own
    """Wraps an error its entry has recorded already, so the chain only logs it."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


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
            if entry.inline:
                stats = entry.stats
                stats[_COUNT] += rows
                stats[_NANOS] += sums[i + 1] - sums[i]


def _settle(
    entries: tuple[_Handler, ...], readings: tuple[int, ...], values: tuple[object, ...]
) -> list[object]:
    """Account a call that took a slow path or had failures; return its results."""
    results: list[object] = []
    for i, entry in enumerate(entries):
        value = values[i]
        if value is _FAILED:
            continue
        if isinstance(value, _Many):
            results.extend(value)
            continue
        if entry.inline:
            stats = entry.stats
            stats[_COUNT] += 1
            stats[_NANOS] += readings[i + 1] - readings[i]
        results.append(value)
    return results


def _no_sync_call(_arg: object) -> HookOutcome[object]:  # pragma: no cover - guarded by is_async
    raise AssertionError("an async chain has no synchronous caller")


def _no_handlers(_arg: object) -> HookOutcome[object]:
    return _outcome([], _NO_FAILURES)


async def _no_handlers_async(_arg: object) -> HookOutcome[object]:
    return _outcome([], _NO_FAILURES)


_FAILED = object()  # stands in for a failed or skipped handler's value until results are built


def _fail_any(entry: _Handler, exc: Exception, started: int) -> HookFailure:
    """The block's failure path: inline handlers are recorded here, others by their entry."""
    if isinstance(exc, _Recorded):
        return _log_failure(entry, exc.error)
    return _fail(entry, exc, started, sys._getframe(1))  # noqa: SLF001 - the chain's frame


# What every generated caller reads besides its own handlers, doors and log.
_CALLER_GLOBALS: dict[str, object] = {
    "__builtins__": builtins,
    "clock": perf_counter_ns,
    "fail": _fail_any,
    "FAILED": _FAILED,
    "NO_FAILURES": _NO_FAILURES,
    "LOG_LIMIT": _LOG_LIMIT,
    "new": _new_object,
    "set_results": _set_results,
    "set_failures": _set_failures,
    "Outcome": HookOutcome,
    "ISAWAITABLE": inspect.isawaitable,
}


@functools.cache
def _caller_code(size: int, block: str, is_async: bool) -> CodeType:
    """Compile (once per chain length and kind) an unrolled caller of ``size`` handlers.

    The source is built from the seam's hook block and numbers only. Each chain runs
    its own copy of the code with its own globals (``_Chain._caller``): global loads
    are the cheapest way for the code to reach a chain's handlers, doors and log.
    """
    readings = ", ".join(f"t{i}" for i in range(size + 1))
    values = ", ".join(f"v{i}" for i in range(size))
    lines = [
        f"{'async ' if is_async else ''}def call(arg):",
        "    failures = NO_FAILURES",
        "    t0 = clock()",
        *(block.format(i=i, j=i + 1) for i in range(size)),
        "    if failures is NO_FAILURES:",
        f"        log.extend(({readings},))",
        "        if len(log) >= LOG_LIMIT:",
        "            drain()",
        f"        results = [{values}]",
        "    else:",
        f"        results = settle(({readings},), ({values},))",
        "    outcome = new(Outcome)",
        "    set_results(outcome, results)",
        "    set_failures(outcome, failures)",
        "    return outcome",
    ]
    source = "\n".join(lines) + "\n"
    kind = "async " if is_async else ""
    filename = f"<tether {kind}hook chain of {size} handler{'s' if size != 1 else ''}>"
    return compile_chain(source, filename)


def _call_loop(
    registry: HookRegistry, entries: tuple[_Handler, ...], arg: object, *, first: bool
) -> HookOutcome[object]:
    """Call sync handlers in order (long chains, and first-result mode)."""
    results: list[object] = []
    failures: list[HookFailure] = []
    t0 = perf_counter_ns()
    for entry in entries:
        door = entry.door
        if door.is_open and entry.inline:
            calls = door.calls
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
            values: tuple[object, ...] = (value,)
        else:
            found: object
            if door.is_open:  # another call chain: through the handler's own entry
                found = registry.call_entries((entry,), arg, failures)
            else:
                found = registry.slow_call(entry, arg, failures)
            t0 = perf_counter_ns()
            if not isinstance(found, _Many):
                continue
            values = found
        for value in values:
            if not first:
                results.append(value)
            elif value is not None:
                return _outcome([value], failures or _NO_FAILURES)
    return _outcome(results, failures or _NO_FAILURES)


counts_as_seam(_call_loop)  # it counts the errors of the handlers it calls inline
_EMPTY = _Chain(None, ())


def _name_of(hook: str | HookPoint[A, R]) -> str:
    return hook if isinstance(hook, str) else hook.name


# --------------------------------------------------------------------------- the registry


class HookRegistry:
    """Hook points, the handlers registered at them, and their per-plugin metrics."""

    __slots__ = (
        "__weakref__",
        "_all",
        "_callers",
        "_chains",
        "_lock",
        "_sequence",
        "_stores",
        "version",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sequence = count()
        # hook type -> every handler registered there, staged ones included
        self._all: dict[str, list[_Handler]] = {t: [] for t in HOOK_TYPES}
        self._chains: dict[str, _Chain] = dict.fromkeys(HOOK_TYPES, _EMPTY)
        # hook type -> the chain's caller, for the chains without async handlers only:
        # being here is the precomputed "all sync" flag ``call`` checks.
        self._callers: dict[str, _Caller] = dict.fromkeys(HOOK_TYPES, _EMPTY.call)
        self.version = 0  # changes whenever a snapshot does (hosts cache what they read)
        # where the handlers' metrics live (each gate's CallStats; they outlive handlers)
        self._stores: weakref.WeakSet[CallStats] = weakref.WeakSet()

    # ------------------------------------------------------------------ hook points

    def declare(self, hook: str | HookPoint[A, R]) -> None:
        """Make a hook type a point plugins may register at (a host's own hook point)."""
        hook_type = _name_of(hook)
        if not isinstance(hook_type, str) or not _HOOK_TYPE.match(hook_type):
            raise HookError(
                f"invalid hook type {hook_type!r}: use a name like 'pre_request' or "
                "'workload.before_operation'",
                hint="a hook type starts with a letter or '_' and contains letters, digits, "
                "'_', '.', ':' and '-'",
            )
        with self._lock:
            if hook_type not in self._chains:
                self._all[hook_type] = []
                self._chains[hook_type] = _EMPTY
                self._callers[hook_type] = _EMPTY.call

    def is_known(self, hook: str | HookPoint[A, R]) -> bool:
        return _name_of(hook) in self._chains

    @property
    def hook_types(self) -> tuple[str, ...]:
        """Every known hook type: the reference's seven, then the declared ones."""
        return tuple(self._chains)

    # ------------------------------------------------------------------ registering

    def register(
        self,
        door: Door,
        hook: str | HookPoint[A, R],
        priority: int,
        handler: Callable[[A], R | Awaitable[R]] | HookHandler,
        *,
        timeout: float | None = None,
        chain: CallChain | None = None,
    ) -> Registration:
        """Register ``handler`` of ``door``'s version at a hook type; higher priority first.

        ``timeout`` (seconds) bounds an ``async`` handler when the hook is ``run`` (the
        plugin's ``timeouts.call`` otherwise); a plain function cannot be interrupted
        in-process, so it takes no timeout of its own. The handler is staged until its
        version is committed.
        """
        hook_type = _name_of(hook)
        plugin = door.plugin
        self._check_registration(plugin, hook_type, priority, handler, timeout)
        chain = chain or door.chain
        if timeout is not None:
            chain = dataclasses.replace(chain, timeout=timeout)
        entry = Entry(
            door,
            cast("Callable[..., object]", handler),
            f"hook:{hook_type}",
            chain=chain,
            timeout_error=functools.partial(HookTimeoutError, plugin, hook_type),
            params=ONE_ARGUMENT,
        )
        with self._lock:
            if door.gate.stats not in self._stores:
                self._stores.add(door.gate.stats)
                door.gate.stats.add_drainer(self.drain)
            item = _Handler(entry, hook_type, priority, next(self._sequence),
                            inline=chain.is_default)  # fmt: skip
            self._all[hook_type].append(item)
            if door.committed:
                self._publish(hook_type)
        return Registration(self, item)

    def _check_registration(
        self,
        plugin: str,
        hook_type: str,
        priority: int,
        handler: object,
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

    def _publish(self, hook_type: str) -> None:
        """Install a new snapshot of ``hook_type``'s live handlers. The caller holds the lock."""
        live = sorted(
            (e for e in self._all[hook_type] if e.door.committed), key=_Handler.call_order
        )
        self._chains[hook_type].drain()
        chain = _Chain(self, tuple(live)) if live else _EMPTY
        self._chains[hook_type] = chain
        self.version += 1
        if chain.is_async:
            self._callers.pop(hook_type, None)
        else:
            self._callers[hook_type] = chain.call

    def refresh(self) -> None:
        """Rebuild every snapshot (a version was committed: its handlers go live)."""
        with self._lock:
            for hook_type in self._all:
                self._publish(hook_type)

    def _holds(self, entry: _Handler) -> bool:
        return any(e is entry for e in self._all.get(entry.hook_type, ()))

    def _remove(self, entry: _Handler) -> bool:
        with self._lock:
            items = self._all.get(entry.hook_type, [])
            if not any(e is entry for e in items):
                return False
            self._all[entry.hook_type] = [e for e in items if e is not entry]
            self._publish(entry.hook_type)
            return True

    def remove_door(self, door: Door) -> int:
        """Unregister every handler of one version (discarded or retired); return how many."""
        return self._remove_where(lambda e: e.door is door)

    def remove_plugin(self, plugin: str) -> int:
        """Unregister every handler of every version of ``plugin``; return how many.

        The plugin's metrics stay, so a plugin that is reloaded and registers again keeps
        its history.
        """
        return self._remove_where(lambda e: e.plugin == plugin)

    def _remove_where(self, doomed: Callable[[_Handler], bool]) -> int:
        removed = 0
        with self._lock:
            for hook_type, items in list(self._all.items()):
                gone = [e for e in items if doomed(e)]
                if gone:
                    removed += len(gone)
                    self._all[hook_type] = [e for e in items if not doomed(e)]
                    self._publish(hook_type)
        return removed

    # ------------------------------------------------------------------ slow paths

    def _stand_ins(self, entry: _Handler, live: Door) -> tuple[_Handler, ...]:
        """The live version's handlers of ``entry``'s hook type, in call order."""
        return tuple(e for e in self._chains[entry.hook_type].entries if e.door is live)

    def slow_call(self, entry: _Handler, arg: object, failures: list[HookFailure]) -> object:
        """A sync call found the door shut: refuse (closed, held) or call the stand-ins."""
        gate = entry.door.gate
        live = gate.live
        if gate.state is not GateState.OPEN or live is None:
            error = (
                PluginUnavailableError(entry.plugin, gate.closed_reason)
                if gate.state is GateState.CLOSED
                else _held_error(entry)
            )
            failures.append(_refusal(entry, error))
            return _FAILED
        if live is entry.door:  # it opened just now
            return self.call_entries((entry,), arg, failures)
        return self.call_entries(self._stand_ins(entry, live), arg, failures)

    def call_entries(
        self, entries: tuple[_Handler, ...], arg: object, failures: list[HookFailure]
    ) -> _Many:
        values: list[object] = []
        for item in entries:
            try:
                values.append(item.entry.call(arg))
            except PluginUnavailableError as exc:  # its gate closed meanwhile
                failures.append(_refusal(item, exc))
            except Exception as exc:
                failures.append(_log_failure(item, exc))
        return _Many(values)

    async def aslow_call(self, entry: _Handler, arg: object, failures: list[HookFailure]) -> object:
        """``run`` found the door shut: wait at a held gate; refuse, or call the stand-ins."""
        gate = entry.door.gate
        try:
            live = await gate.wait_async(entry.door)
        except PluginUnavailableError as exc:
            failures.append(_refusal(entry, exc))
            return _FAILED
        stand_ins = (entry,) if live is entry.door else self._stand_ins(entry, live)
        return await self._run_entries(stand_ins, arg, failures)

    async def _run_entries(
        self, entries: tuple[_Handler, ...], arg: object, failures: list[HookFailure]
    ) -> _Many:
        values: list[object] = []
        for item in entries:
            try:
                values.append(await item.entry.acall(arg))
            except PluginUnavailableError as exc:
                failures.append(_refusal(item, exc))
            except Exception as exc:
                failures.append(_log_failure(item, exc))
        return _Many(values)

    # ------------------------------------------------------------------ calling

    def _chain(self, hook_type: str) -> _Chain:
        try:
            return self._chains[hook_type]
        except KeyError:
            raise self._unknown(hook_type) from None

    @overload
    def call(self, hook: HookPoint[A, R], arg: A) -> HookOutcome[R]: ...
    @overload
    def call(self, hook: str, arg: object = None) -> HookOutcome[object]: ...
    def call(self, hook: str | HookPoint[A, R], arg: object = None) -> HookOutcome[R]:
        """Call every handler of an all-sync hook, in order. Never blocks at a gate."""
        hook_type = _name_of(hook)
        try:
            caller = self._callers[hook_type]
        except KeyError:
            chain = self._chain(hook_type)  # raises for an unknown hook type
            if chain.is_async:
                raise _async_chain_error(hook_type, chain) from None
            caller = chain.call  # the async handlers were removed just now
        return caller(arg)  # type: ignore[return-value]  # R is what the point's handlers return

    def call_first(self, hook: str | HookPoint[A, R], arg: object = None) -> HookOutcome[object]:
        """Like ``call``, but stop at the first handler that returns something not None."""
        hook_type = _name_of(hook)
        chain = self._chain(hook_type)
        if chain.is_async:
            raise _async_chain_error(hook_type, chain)
        return _call_loop(self, chain.entries, arg, first=True)

    @overload
    async def run(
        self, hook: HookPoint[A, R], arg: A, *, first_result: bool = False
    ) -> HookOutcome[R]: ...
    @overload
    async def run(
        self, hook: str, arg: object = None, *, first_result: bool = False
    ) -> HookOutcome[object]: ...
    async def run(
        self, hook: str | HookPoint[A, R], arg: object = None, *, first_result: bool = False
    ) -> HookOutcome[R]:
        """Call every handler in order, awaiting async ones and waiting at held gates.

        With ``first_result``, stop at the first handler that returns something not None.
        """
        try:
            chain = self._chains[hook if isinstance(hook, str) else hook.name]
        except KeyError:
            raise self._unknown(_name_of(hook)) from None
        acall = chain.acall
        if acall is not None and not first_result:
            return await acall(arg)  # type: ignore[return-value]  # all sync: the unrolled caller
        return await self.run_entries(chain.entries, arg, first_result=first_result)  # type: ignore[return-value]

    async def run_entries(
        self, entries: tuple[_Handler, ...], arg: object, *, first_result: bool = False
    ) -> HookOutcome[object]:
        """Call ``entries`` through their seams in order (chains with async handlers)."""
        results: list[object] = []
        failures: list[HookFailure] = []
        for entry in entries:
            if entry.door.is_open:
                try:
                    values: tuple[object, ...] = (await entry.entry.acall(arg),)
                except PluginUnavailableError as exc:
                    failures.append(_refusal(entry, exc))
                    continue
                except Exception as exc:
                    failures.append(_log_failure(entry, exc))
                    continue
            else:
                found = await self.aslow_call(entry, arg, failures)
                if not isinstance(found, _Many):
                    continue
                values = found
            for value in values:
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

    def handlers(self, hook: str | HookPoint[A, R]) -> list[tuple[str, int]]:
        """``(plugin, priority)`` of each live handler of a hook type, in call order."""
        return [(e.plugin, e.priority) for e in self._chain(_name_of(hook)).entries]

    def has_handlers(self, hook: str | HookPoint[A, R]) -> bool:
        """Whether a hook type has any live handler (cheaper than ``handlers``)."""
        chain = self._chains.get(hook if isinstance(hook, str) else hook.name)
        return chain is not None and chain.entries != ()

    def drain(self) -> None:
        """Add every chain's logged clock readings to the handlers' metrics now."""
        with self._lock:  # no snapshot is replaced while its log is drained
            for chain in self._chains.values():
                if chain.log:
                    chain.drain()

    def metrics(self, plugin: str) -> dict[str, HookMetrics]:
        """Hook type -> metrics, for every hook type ``plugin`` has registered at.

        Every version of the plugin together, those gone included.
        """
        with self._lock:
            stores = list(self._stores)
        totals: dict[str, list[int]] = {}
        for store in stores:
            for source, found in store.of(plugin, prefix="hook:").items():
                total = totals.setdefault(source.removeprefix("hook:"), [0, 0, 0])
                total[0] += found.calls
                total[1] += round(found.total_duration.total_seconds() * 1e9)
                total[2] += found.errors
        out: dict[str, HookMetrics] = {}
        for hook_type, (executions, nanos, errors) in totals.items():
            duration = timedelta(microseconds=nanos / 1000)
            average = duration / executions if executions else timedelta(0)
            out[hook_type] = HookMetrics(executions, duration, average, errors)
        return out


def _check_timeout(plugin: str, hook_type: str, handler: object, timeout: float) -> None:
    if not is_async_callable(handler):
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
