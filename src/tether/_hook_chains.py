"""Hook chains: the snapshot of one hook type's live handlers, and the code that calls them.

The hook registry (``tether._hooks``) keeps registrations; this module turns the live
ones of a hook type into a :class:`Chain` and calls it. Every handler call passes its
version's door; a failure is timed, counted (the seam's rule: against the innermost
plugin it left) and logged; a shut door goes to the registry's slow path.

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
- Every call is counted, and one call of the chain in 16 is timed (the first always),
  like the seam's own calls: a timed call reads the clock once between consecutive
  handlers (n + 1 reads for n handlers); the other calls read no clock at all. The
  readings are logged, not turned into metrics, on the way: one ``list.extend`` per
  timed call, summed up in C now and then, and one add per untimed call (see
  ``Chain``).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import inspect
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from time import perf_counter_ns
from types import CodeType, FrameType, FunctionType
from typing import Generic, NoReturn, Protocol, TypeVar, cast

from tether._attribution import counts_as_seam, fail
from tether._durations import format_duration
from tether._seam import ASYNC_HOOK_BLOCK, HOOK_BLOCK, Entry, compile_chain
from tether.errors import PluginUnavailableError


class Registry(Protocol):
    """What a chain asks of the hook registry it belongs to: the slow paths."""

    def slow_call(
        self, entry: ChainEntry, arg: object, failures: list[HookFailure], /
    ) -> object: ...
    async def aslow_call(
        self, entry: ChainEntry, arg: object, failures: list[HookFailure], /
    ) -> object: ...
    def call_entries(
        self, entries: tuple[ChainEntry, ...], arg: object, failures: list[HookFailure], /
    ) -> tuple[object, ...]: ...
    async def run_entries(
        self, entries: tuple[ChainEntry, ...], arg: object, *, first_result: bool = False
    ) -> HookOutcome[object]: ...


__all__ = [
    "EMPTY_CHAIN",
    "FAILED",
    "NO_FAILURES",
    "UNROLL_LIMIT",
    "AsyncCaller",
    "Caller",
    "Chain",
    "ChainEntry",
    "HookFailure",
    "HookMetrics",
    "HookOutcome",
    "Many",
    "call_loop",
    "held_error",
    "log_failure",
    "new_outcome",
    "refusal",
]

_log = logging.getLogger("tether.hooks")

R = TypeVar("R")

# Metrics for one (plugin, hook type) live in a list of plain ints (a ``Door.stats``
# entry), indexed below. The adds are not atomic across threads: when several threads
# call the same hook at once an update can be lost now and then, which is acceptable
# for metrics and keeps locks off the hot path.
_COUNT, _NANOS, _ERRORS, _TIMED = 0, 1, 2, 3

# Chains longer than this run through a loop instead of generated code.
UNROLL_LIMIT = 64


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class HookMetrics:
    """How often one plugin's handlers for one hook type ran, for how long, and failed.

    ``timed_count`` of the executions were timed, taking ``timed_duration`` together
    (one in 16, the first always); ``total_duration`` estimates all executions' time
    from them.
    """

    execution_count: int
    total_duration: timedelta
    average_duration: timedelta
    error_count: int
    timed_count: int = 0
    timed_duration: timedelta = timedelta(0)


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


NO_FAILURES = _NoFailures()

# The generated frozen ``__init__`` sets each field through ``object.__setattr__``,
# which costs as much as a short sync chain; the hot paths fill the two slots through
# their descriptors instead (about half the cost).
_new_object = object.__new__
_set_results = HookOutcome.__dict__["results"].__set__
_set_failures = HookOutcome.__dict__["failures"].__set__


def new_outcome(results: list[object], failures: list[HookFailure]) -> HookOutcome[object]:
    outcome: HookOutcome[object] = _new_object(HookOutcome)
    _set_results(outcome, results)
    _set_failures(outcome, failures)
    return outcome


class ChainEntry:
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


# --------------------------------------------------------------------------- failures


class Many(tuple[object, ...]):
    """Values a slow path produced (the live version's stand-ins, or a wait): each was
    timed and recorded by its own entry, so the chain's clock log leaves them out."""

    __slots__ = ()


def refusal(entry: ChainEntry, error: PluginUnavailableError) -> HookFailure:
    return HookFailure(entry.plugin, entry.hook_type, error)


def held_error(entry: ChainEntry) -> PluginUnavailableError:
    return PluginUnavailableError(
        entry.plugin,
        "it is reloading, and a synchronous hook call does not wait for it "
        f"(`await registry.run('{entry.hook_type}', ...)` waits)",
    )


def log_failure(entry: ChainEntry, error: BaseException) -> HookFailure:
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


def fail_inline(
    entry: ChainEntry, error: Exception, started: int, frame: FrameType | None = None
) -> HookFailure:
    """An inline handler failed: time it (when ``started``: a timed call), count it
    (metrics, recovery), log it.

    ``frame`` is the chain's frame (the seam the handler's error leaves).
    """
    stats = entry.stats
    stats[_COUNT] += 1
    if started:
        stats[_TIMED] += 1
        stats[_NANOS] += perf_counter_ns() - started
    if fail(entry.entry, error, frame if frame is not None else sys._getframe(1)):  # noqa: SLF001
        stats[_ERRORS] += 1
    return log_failure(entry, error)


# --------------------------------------------------------------------------- chains

Caller = Callable[[object], HookOutcome[object]]
AsyncCaller = Callable[[object], Awaitable[HookOutcome[object]]]

# A generated caller logs its clock readings instead of updating metrics per handler.
# The log is drained into the metrics when it holds this many readings, when metrics
# are read, and when the snapshot is replaced.
_LOG_LIMIT = 2048
_drain_lock = threading.Lock()


class Chain:
    """An immutable snapshot of one hook type's live handlers, and how to call them.

    Metrics of the generated caller: ``counts[0]`` numbers its calls; call 1, 17,
    33... is timed. A timed call in which every handler ran without error appends its
    n + 1 clock readings to ``log`` (one atomic ``list.extend``). Handler i's duration
    in that call is reading i + 1 minus reading i, so draining the log adds, to each
    inline handler, the number of rows and the difference of two column sums, done in
    C by ``sum`` over slices. An untimed call without errors adds one to
    ``counts[1]``, which the drain adds to each inline handler's calls. A call with a
    failure or a skip is accounted right away instead (``_settle``). Readings logged by
    a call still running on a snapshot that has just been replaced are lost, as the
    module's metrics allow.
    """

    __slots__ = ("acall", "call", "counts", "entries", "is_async", "log", "registry")

    def __init__(self, registry: Registry | None, entries: tuple[ChainEntry, ...]) -> None:
        self.registry = registry
        self.entries = entries
        self.is_async = any(entry.is_async for entry in entries)
        self.log: list[int] = []
        self.counts = [0, 0]  # calls, untimed calls without errors not yet drained
        self.call: Caller = _no_sync_call
        self.acall: AsyncCaller | None = None
        if not self.is_async:
            self.call = cast("Caller", self._caller(HOOK_BLOCK, is_async=False))
            self.acall = cast("AsyncCaller", self._caller(ASYNC_HOOK_BLOCK, is_async=True))

    def _caller(self, block: str, *, is_async: bool) -> Callable[[object], object]:
        entries = self.entries
        registry = self.registry
        if not entries or registry is None:
            return _no_handlers_async if is_async else _no_handlers
        if len(entries) > UNROLL_LIMIT:
            if is_async:
                return functools.partial(registry.run_entries, entries)
            return functools.partial(call_loop, registry, entries, first=False)
        namespace = {
            **_CALLER_GLOBALS,
            "log": self.log,
            "counts": self.counts,
            "drain": functools.partial(_drain, entries, self.log, self.counts),
            "settle": functools.partial(_settle, entries),
            "settle_untimed": functools.partial(_settle, entries, None),
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

    @property
    def pending(self) -> bool:
        """Whether calls are logged that the handlers' metrics do not have yet."""
        return bool(self.log) or self.counts[1] > 0

    def drain(self) -> None:
        """Add the logged calls to the handlers' metrics."""
        _drain(self.entries, self.log, self.counts)


def _through(entry: ChainEntry) -> Callable[[object], object]:
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


def _drain(entries: tuple[ChainEntry, ...], log: list[int], counts: list[int]) -> None:
    with _drain_lock:
        untimed = counts[1]
        counts[1] -= untimed  # calls counted meanwhile stay for the next drain
        readings = log[:]
        del log[: len(readings)]  # readings appended meanwhile stay for the next drain
        width = len(entries) + 1
        rows = len(readings) // width
        sums = [sum(readings[k::width]) for k in range(width)] if rows else [0] * width
        for i, entry in enumerate(entries):
            if entry.inline:
                stats = entry.stats
                stats[_COUNT] += rows + untimed
                stats[_TIMED] += rows
                stats[_NANOS] += sums[i + 1] - sums[i]


def _settle(
    entries: tuple[ChainEntry, ...], readings: tuple[int, ...] | None, values: tuple[object, ...]
) -> list[object]:
    """Account a call that took a slow path or had failures (``readings``: the clock
    between handlers, None for an untimed call); return its results."""
    results: list[object] = []
    for i, entry in enumerate(entries):
        value = values[i]
        if value is FAILED:
            continue
        if isinstance(value, Many):
            results.extend(value)
            continue
        if entry.inline:
            stats = entry.stats
            stats[_COUNT] += 1
            if readings is not None:
                stats[_TIMED] += 1
                stats[_NANOS] += readings[i + 1] - readings[i]
        results.append(value)
    return results


def _no_sync_call(_arg: object) -> HookOutcome[object]:  # pragma: no cover - guarded by is_async
    raise AssertionError("an async chain has no synchronous caller")


def _no_handlers(_arg: object) -> HookOutcome[object]:
    return new_outcome([], NO_FAILURES)


async def _no_handlers_async(_arg: object) -> HookOutcome[object]:
    return new_outcome([], NO_FAILURES)


FAILED = object()  # stands in for a failed or skipped handler's value until results are built


def _fail_any(entry: ChainEntry, exc: Exception, started: int) -> HookFailure:
    """The block's failure path: inline handlers are recorded here, others by their entry."""
    if isinstance(exc, _Recorded):
        return log_failure(entry, exc.error)
    return fail_inline(entry, exc, started, sys._getframe(1))  # noqa: SLF001 - the chain's frame


async def await_within(entry: ChainEntry, awaitable: Awaitable[object]) -> object:
    """Await what a plain handler returned within its plugin's ``timeouts.call`` (the
    handler itself ran inline; what it returned is the plugin's work all the same)."""
    chain = entry.entry.chain
    limit = chain.timeout if chain.has("timeout") else None
    if limit is None:
        return await awaitable
    scope = asyncio.timeout(limit)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if not scope.expired():
            raise  # the plugin's own TimeoutError
        raise entry.entry.timeout_error(format_duration(timedelta(seconds=limit))) from None


# What every generated caller reads besides its own handlers, doors and log.
_CALLER_GLOBALS: dict[str, object] = {
    "__builtins__": builtins,
    "clock": perf_counter_ns,
    "fail": _fail_any,
    "FAILED": FAILED,
    "NO_FAILURES": NO_FAILURES,
    "LOG_LIMIT": _LOG_LIMIT,
    "new": _new_object,
    "set_results": _set_results,
    "set_failures": _set_failures,
    "Outcome": HookOutcome,
    "ISAWAITABLE": inspect.isawaitable,
    "AWAIT": await_within,
}


def _untimed(block: str) -> str:
    """The hook block of a call that is not timed: no clock, failures not timed."""
    lines = [line for line in block.splitlines(keepends=True) if "= clock()" not in line]
    return "".join(lines).replace("fail(e{i}, exc, t{i})", "fail(e{i}, exc, 0)")


def _indented(block: str) -> str:
    return "".join(
        f"    {line}" if line.strip() else line for line in block.splitlines(keepends=True)
    )


@functools.cache
def _caller_code(size: int, block: str, is_async: bool) -> CodeType:
    """Compile (once per chain length and kind) an unrolled caller of ``size`` handlers.

    The source is built from the seam's hook block and numbers only. Each chain runs
    its own copy of the code with its own globals (``Chain._caller``): global loads
    are the cheapest way for the code to reach a chain's handlers, doors and log.
    """
    readings = ", ".join(f"t{i}" for i in range(size + 1))
    values = ", ".join(f"v{i}" for i in range(size))
    untimed = _untimed(block)
    lines = [
        f"{'async ' if is_async else ''}def call(arg):",
        "    failures = NO_FAILURES",
        "    n = counts[0] = counts[0] + 1",
        "    if n & 15 == 1:",
        "        t0 = clock()",
        *(_indented(block.format(i=i, j=i + 1)) for i in range(size)),
        "        if failures is NO_FAILURES:",
        f"            log.extend(({readings},))",
        "            if len(log) >= LOG_LIMIT:",
        "                drain()",
        f"            results = [{values}]",
        "        else:",
        f"            results = settle(({readings},), ({values},))",
        "    else:",
        *(_indented(untimed.format(i=i, j=i + 1)) for i in range(size)),
        "        if failures is NO_FAILURES:",
        "            counts[1] += 1",
        f"            results = [{values}]",
        "        else:",
        f"            results = settle_untimed(({values},))",
        "    outcome = new(Outcome)",
        "    set_results(outcome, results)",
        "    set_failures(outcome, failures)",
        "    return outcome",
    ]
    source = "\n".join(lines) + "\n"
    kind = "async " if is_async else ""
    filename = f"<tether {kind}hook chain of {size} handler{'s' if size != 1 else ''}>"
    return compile_chain(source, filename)


def call_loop(
    registry: Registry, entries: tuple[ChainEntry, ...], arg: object, *, first: bool
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
                failures.append(fail_inline(entry, exc, t0))
                t0 = perf_counter_ns()
                continue
            finally:
                calls.pop()
            t1 = perf_counter_ns()
            stats = entry.stats
            stats[_COUNT] += 1
            stats[_TIMED] += 1
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
            if not isinstance(found, Many):
                continue
            values = found
        for value in values:
            if not first:
                results.append(value)
            elif value is not None:
                return new_outcome([value], failures or NO_FAILURES)
    return new_outcome(results, failures or NO_FAILURES)


counts_as_seam(call_loop)  # it counts the errors of the handlers it calls inline
EMPTY_CHAIN = Chain(None, ())
