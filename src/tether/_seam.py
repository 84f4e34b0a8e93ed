"""The seam: how a call enters a plugin, written once.

Every way into a plugin (hook handlers, event deliveries, service methods, middleware,
routes, workload operations, executions, ``PluginHandle.call``) is an :class:`Entry`:
one callable of one loaded version, with the label of where it is called from
(``hook:pre_request``, ``service:AuthService.verify``...). An entry's ``call`` and
``acall`` are functions generated from the templates in this module, so the sequence
below is written out exactly once:

1. pass the version's door (``tether._gate``): the fast path reads one flag and
   appends to the door's in-flight deque; a held gate makes the caller wait, a closed
   one refuses, and a version that is no longer live sends the call to the live
   version's equivalent (the *redirect*, which each mechanism defines);
2. run the plugin's **call chain** around the call;
3. leave the door.

The call chain is 003's "middleware chain" around plugin execution. Links, outermost
first in the order a plugin's ``call_chain`` lists them (the default is
``[tracing, recovery, metrics, timeout]``):

``tracing``
    an OpenTelemetry span per call, child of the caller's span, so a request can be
    followed through hooks, services and events. Compiled in only when an
    OpenTelemetry SDK is configured when the plugin loads: otherwise it costs nothing.
``logging``
    a debug line per call: plugin, version, source, duration, outcome.
``recovery``
    an exception the plugin raises is counted against it (``Gate.record_error``: its
    error count, errors by type, and its error threshold), then propagates to the
    mechanism, which isolates it from the caller's other plugins.
``metrics``
    calls, errors and time per (version, source), in ``Door.stats``.
``validation``
    arguments that do not fit the operation's signature are refused with a
    :class:`~tether.errors.CallInputError` before the plugin is entered (and are not
    the plugin's error).
``timeout``
    an async call that runs past the plugin's ``timeouts.call`` is cancelled and
    raises :class:`~tether.errors.CallTimeoutError`. A sync call in-process cannot be
    interrupted; it runs to the end (process isolation kills instead).

Deadlines cost one dict entry per call, not a timer: a watchdog thread scans the
doors with async calls in flight and cancels the overdue ones on their loop.

The hook registry unrolls whole chains of handlers into one generated function; its
per-handler block (``HOOK_BLOCK``) is written here beside the entry templates and
uses the same fast path. Everything generated is compiled from these templates and
numbers only (never from user text); compiled code is cached by shape.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import inspect
import itertools
import linecache
import logging
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from time import perf_counter_ns
from types import CodeType, FrameType, FunctionType
from typing import TYPE_CHECKING, Protocol, cast

from tether._durations import format_duration
from tether.errors import (
    CallError,
    CallInputError,
    CallTimeoutError,
    ConfigError,
    PluginUnavailableError,
)

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context

    from tether._gate import Door

__all__ = [
    "ASYNC_HOOK_BLOCK",
    "DEFAULT_CHAIN",
    "HOOK_BLOCK",
    "LINKS",
    "NO_CHAIN",
    "ONE_ARGUMENT",
    "CallChain",
    "CallMetrics",
    "CallRow",
    "CallStats",
    "Entry",
    "ErrorPolicy",
    "Parameters",
    "Redirect",
    "attach_trace",
    "blame",
    "compile_chain",
    "counts_as_seam",
    "detach_trace",
    "fail",
    "is_async_callable",
    "is_seam",
    "note_error",
    "parameters_of",
    "pass_through",
    "record_failure",
    "trace_context",
    "tracing_configured",
    "watchdog",
]

_log = logging.getLogger("tether.calls")

LINKS = ("tracing", "logging", "recovery", "metrics", "validation", "timeout")
DEFAULT_CHAIN = ("tracing", "recovery", "metrics", "timeout")

# The indices of a ``Door.stats`` list.
CALLS, NANOS, ERRORS = 0, 1, 2


# --------------------------------------------------------------------------- the chain


class ErrorPolicy:
    """Which exceptions leaving a plugin are answers rather than failures.

    A host adds predicates (``tether serve``: an ``HTTPException`` below 500 is an
    answer); an exception any predicate accepts is not counted against the plugin.
    One per runtime, shared by the chains of its plugins.
    """

    __slots__ = ("answers",)

    def __init__(self) -> None:
        self.answers: tuple[Callable[[BaseException], bool], ...] = ()

    def add_answer(self, predicate: Callable[[BaseException], bool]) -> None:
        self.answers = (*self.answers, predicate)

    def is_failure(self, error: BaseException) -> bool:
        return not any(answer(error) for answer in self.answers)


@dataclass(frozen=True, slots=True)
class CallChain:
    """The links one plugin's calls pass through, and its call timeout (seconds)."""

    links: tuple[str, ...] = DEFAULT_CHAIN
    timeout: float | None = 30.0
    tracing: bool = False  # an OpenTelemetry SDK was configured when the chain was made
    policy: ErrorPolicy = field(default_factory=ErrorPolicy, compare=False)

    @classmethod
    def parse(
        cls,
        links: Sequence[str] | None,
        *,
        plugin: str,
        timeout: float | None,
        policy: ErrorPolicy | None = None,
    ) -> CallChain:
        """The chain a config lists (``None``: the default), checked."""
        chosen: tuple[str, ...]
        if links is None:
            chosen = DEFAULT_CHAIN
        else:
            chosen = tuple(links)
            unknown = [link for link in chosen if link not in LINKS]
            if unknown:
                raise ConfigError(
                    f"plugin '{plugin}': unknown call_chain link(s): {', '.join(unknown)}",
                    plugin=plugin,
                    hint=f"the links are {', '.join(LINKS)} (default: {', '.join(DEFAULT_CHAIN)})",
                )
            twice = sorted({link for link in chosen if chosen.count(link) > 1})
            if twice:
                raise ConfigError(
                    f"plugin '{plugin}': call_chain lists {', '.join(twice)} more than once",
                    plugin=plugin,
                    hint="list each link once, outermost first",
                )
        tracing = "tracing" in chosen and tracing_configured()
        return cls(chosen, timeout or None, tracing, policy or ErrorPolicy())

    @property
    def is_default(self) -> bool:
        return self.links == DEFAULT_CHAIN and not self.tracing

    def has(self, link: str) -> bool:
        if link == "tracing":
            return self.tracing
        if link == "timeout":
            return "timeout" in self.links and self.timeout is not None
        return link in self.links

    def shape(self, *, is_async: bool) -> tuple[str, ...]:
        """The links that generate code for a sync or an async call (the cache key)."""
        live = tuple(link for link in self.links if self.has(link))
        if not is_async:
            live = tuple(link for link in live if link != "timeout")
        return live


NO_CHAIN = CallChain(links=(), timeout=None)
"""No links at all: the door and nothing else (host-side observers, tests of the gate)."""


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True, slots=True)
class CallMetrics:
    """The calls into a plugin from one source (``hook:pre_request``, ``call:execute``...)."""

    source: str
    calls: int
    errors: int
    total_duration: timedelta
    by_version: dict[str, int]

    @property
    def average_duration(self) -> timedelta:
        return self.total_duration / self.calls if self.calls else timedelta(0)

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "calls": self.calls,
            "errors": self.errors,
            "total_duration_seconds": self.total_duration.total_seconds(),
            "average_duration_seconds": self.average_duration.total_seconds(),
            "by_version": dict(self.by_version),
        }


@dataclass(frozen=True, slots=True)
class CallRow:
    """One version's calls from one source."""

    version: str
    source: str
    calls: int
    errors: int
    seconds: float


class CallStats:
    """``[calls, nanoseconds, errors]`` per (plugin, version, source).

    The seam and the hook chains add to these lists in place (no lock: an update can
    be lost now and then under threads, which metrics allow). They outlive versions and
    plugins, so a plugin's history survives a reload or an unload and load.
    """

    __slots__ = ("__weakref__", "_drainers", "_lists", "_lock")

    def __init__(self) -> None:
        self._lists: dict[tuple[str, str, str], list[int]] = {}
        self._lock = threading.Lock()
        self._drainers: list[weakref.WeakMethod[Callable[[], None]]] = []

    def add_drainer(self, drain: Callable[[], None]) -> None:
        """``drain()`` (a bound method) adds deferred counts (the hook chains' clock logs)
        to these lists; it runs before every read, so a read is never behind."""
        with self._lock:
            if not any(ref() == drain for ref in self._drainers):
                self._drainers.append(weakref.WeakMethod(drain))

    def _drain(self) -> None:
        for ref in list(self._drainers):
            drain = ref()
            if drain is not None:
                drain()

    def list_for(self, plugin: str, version: str, source: str) -> list[int]:
        key = (plugin, version, source)
        found = self._lists.get(key)
        if found is None:
            with self._lock:
                found = self._lists.setdefault(key, [0, 0, 0])
        return found

    def of(self, plugin: str, *, prefix: str = "") -> dict[str, CallMetrics]:
        """Per source (those starting with ``prefix``): every version of ``plugin`` together."""
        self._drain()
        totals: dict[str, list[int]] = {}
        versions: dict[str, dict[str, int]] = {}
        for (owner, version, source), stats in list(self._lists.items()):
            if owner != plugin or not source.startswith(prefix):
                continue
            total = totals.setdefault(source, [0, 0, 0])
            for k in range(3):
                total[k] += stats[k]
            served = versions.setdefault(source, {})
            served[version] = served.get(version, 0) + stats[0]
        return {
            source: CallMetrics(
                source, calls, errors, timedelta(microseconds=nanos / 1000), versions[source]
            )
            for source, (calls, nanos, errors) in sorted(totals.items())
        }

    def rows(self, plugin: str) -> list[CallRow]:
        """Every (version, source) of ``plugin`` with its counts, for exporters."""
        self._drain()
        return [
            CallRow(version, source, stats[0], stats[2], stats[1] / 1e9)
            for (owner, version, source), stats in sorted(self._lists.items())
            if owner == plugin
        ]

    def forget(self, plugin: str) -> None:
        with self._lock:
            for key in [k for k in self._lists if k[0] == plugin]:
                del self._lists[key]


# --------------------------------------------------------------------------- tracing


def tracing_configured() -> bool:
    """True when an OpenTelemetry SDK (a real tracer provider) is installed globally."""
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - opentelemetry-api is a dependency
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


@functools.cache
def _tracer() -> object:
    from opentelemetry import trace

    from tether import __version__

    return trace.get_tracer("tether", __version__)


def _trace_enter(entry: Entry) -> tuple[object, object]:
    from opentelemetry import context, trace

    tracer = cast("trace.Tracer", _tracer())
    span = tracer.start_span(
        f"{entry.plugin} {entry.source}",
        attributes={
            "tether.plugin": entry.plugin,
            "tether.version": entry.door.version,
            "tether.source": entry.source,
        },
    )
    token = context.attach(trace.set_span_in_context(span))
    return span, token


def _trace_exit(span: object, token: object, error: BaseException | None) -> None:
    from opentelemetry import context, trace

    real = cast("trace.Span", span)
    if error is not None:
        real.record_exception(error)
        real.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
    real.end()
    context.detach(cast("Token[Context]", token))


def trace_context() -> dict[str, str]:
    """The current trace context as W3C headers (empty when tracing is off).

    Carried with events (and later with messages to worker processes and other
    hosts), so the receiving side continues the same trace.
    """
    if not tracing_configured():
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def attach_trace(carrier: Mapping[str, str]) -> object:
    """Make the trace context of ``carrier`` current (a delivered event); returns a token."""
    from opentelemetry import context, propagate

    return context.attach(propagate.extract(carrier))


def detach_trace(token: object) -> None:
    from opentelemetry import context

    context.detach(cast("Token[Context]", token))


# --------------------------------------------------------------------------- the watchdog


def _expire(door: Door, key: int, task: asyncio.Task[object]) -> None:
    """On the call's loop: cancel the task the call runs in, if the call is still there."""
    if key in door.tasks and not task.done():
        door.expired.add(key)
        task.cancel("tether: call timeout")


def _running_in(task: asyncio.Task[object], door: Door, key: int) -> bool:
    """Whether ``task``'s await chain holds the seam frame of call ``key`` into ``door``."""
    awaited: object = task.get_coro()
    depth = 0
    while awaited is not None and depth < 256:  # noqa: PLR2004 - a bound on a chain, not data
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None and frame.f_code.co_filename.startswith("<tether seam async"):
            local = frame.f_locals
            if local.get("_t_k") == key and local.get("_t_d") is door:
                return True
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        depth += 1
    return False


def _find_task(door: Door, key: int) -> asyncio.Task[object] | None:
    """The task running async call ``key`` into ``door`` (looked for only once it is late)."""
    for _ in range(3):  # the set of tasks may change while it is copied
        try:
            tasks = list(asyncio.tasks._all_tasks)  # type: ignore[attr-defined]  # noqa: SLF001
        except RuntimeError:
            continue
        break
    else:  # pragma: no cover - three changes in a row
        return None
    for task in tasks:
        if not task.done() and _running_in(task, door, key):
            return cast("asyncio.Task[object]", task)
    return None


class _Watchdog:
    """One daemon thread that cancels async calls past their deadline, on their loop.

    A call costs the seam one dict entry (its key and deadline); only a call that is
    late is looked for among the process's tasks, by its frame.
    """

    def __init__(self) -> None:
        self._doors: weakref.WeakSet[Door] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.tick = 0.05

    def watch(self, door: Door, timeout: float) -> None:
        """Scan ``door`` from now on; scan often enough for ``timeout``."""
        with self._lock:
            self._doors.add(door)
            self.tick = min(self.tick, max(timeout / 4, 0.005))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="tether-call-watchdog", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            with self._lock:
                doors = list(self._doors)
            now = perf_counter_ns()
            for door in doors:
                if door.tasks:
                    self._scan(door, now)

    @staticmethod
    def _scan(door: Door, now: int) -> None:
        for key, deadline in list(door.tasks.items()):
            if now < deadline or key in door.expired or key in door.searched:
                continue
            door.searched.add(key)
            task = _find_task(door, key)
            if task is None:
                continue  # not in a task this process knows: it cannot be cancelled
            try:
                task.get_loop().call_soon_threadsafe(_expire, door, key, task)
            except RuntimeError:  # its loop has closed: nothing left to cancel
                door.tasks.pop(key, None)


watchdog = _Watchdog()
_next_key = itertools.count().__next__


# --------------------------------------------------------------------------- entries


class Redirect(Protocol):
    """Given the live version's door, the entry that stands for this one there (or None)."""

    def __call__(self, live: Door, /) -> Entry | None: ...


def _raise_site(error: BaseException) -> object:
    """The innermost traceback entry of ``error``: where it was first raised."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


_SEAM_FILES = ("<tether seam", "<tether hook chain", "<tether async hook chain")
_SEAM_CODES: set[CodeType] = set()


def counts_as_seam(fn: Callable[..., object]) -> None:
    """Declare a hand-written dispatcher that counts its callees' errors itself (the hook
    registry's loop) a seam, like the generated ones."""
    _SEAM_CODES.add(fn.__code__)


def _encloses_seam(frame: FrameType | None) -> bool:
    """Whether a seam's frame is further up the stack than ``frame`` (on this thread, or
    up this coroutine's await chain while it runs)."""
    frame = frame.f_back if frame is not None else None
    while frame is not None:
        code = frame.f_code
        if code in _SEAM_CODES or code.co_filename.startswith(_SEAM_FILES):
            return True
        frame = frame.f_back
    return False


def note_error(entry: Entry, error: BaseException, frame: FrameType | None = None) -> bool:
    """An exception is leaving ``entry``'s plugin: True if it is that plugin's failure.

    An exception is its failure when this is the first seam it leaves (the innermost
    plugin: a service's error passing up through its caller's hook is the service's),
    it is not a refusal at a gate (``PluginUnavailableError``: the unavailable plugin
    is to blame, and nobody failed), and the host's error policy does not call it an
    answer. ``tether.blame(exc)`` names the plugin afterwards.

    How "first" is known: the first seam marks the exception with where it was raised;
    seams further up see the mark and pass it on; the outermost seam (no seam above it
    on the stack) clears the mark as the exception leaves the seams, so the same
    exception object raised again later (a prepared exception) counts again.
    """
    frame = frame if frame is not None else sys._getframe(1)  # noqa: SLF001 - the seam's own frame
    site = _raise_site(error)
    first = site is None or getattr(error, "_tether_seen_at", None) is not site
    with contextlib.suppress(AttributeError, TypeError):  # exceptions with __slots__
        if first:
            unavailable = isinstance(error, PluginUnavailableError)
            error._tether_plugin = error.plugin if unavailable else entry.plugin  # type: ignore[attr-defined]  # noqa: SLF001
        if _encloses_seam(frame):
            error._tether_seen_at = site  # type: ignore[attr-defined]  # noqa: SLF001
        elif hasattr(error, "_tether_seen_at"):
            del error._tether_seen_at  # noqa: SLF001 - the seam's own mark
    return (
        first
        and not isinstance(error, PluginUnavailableError | CallInputError)
        and entry.chain.policy.is_failure(error)
    )


def pass_through(error: BaseException) -> None:
    """Mark an error raised by host code between seams (a host's endpoint under plugin
    middleware) so the seams it passes up through do not count it."""
    with contextlib.suppress(AttributeError, TypeError):
        error._tether_seen_at = _raise_site(error)  # type: ignore[attr-defined]  # noqa: SLF001


def is_seam(fn: Callable[..., object]) -> bool:
    """Whether ``fn`` is a seam's generated entry function."""
    code = getattr(fn, "__code__", None)
    return code is not None and code.co_filename.startswith(_SEAM_FILES)


def blame(error: BaseException) -> str | None:
    """The plugin ``error`` was raised in (the innermost plugin it left), if any; for a
    refusal at a gate, the plugin that refused."""
    plugin = getattr(error, "_tether_plugin", None)
    if isinstance(plugin, str):
        return plugin
    if isinstance(error, PluginUnavailableError):
        return error.plugin
    return None


def record_failure(entry: Entry, error: BaseException) -> None:
    """Count a failure against the entry's plugin (the recovery link)."""
    try:
        entry.door.gate.record_error(error, source=entry.source)
    except Exception:
        _log.exception("plugin '%s': an error listener failed on a %s error", entry.plugin,
                       entry.source)  # fmt: skip


def fail(entry: Entry, error: BaseException, frame: FrameType | None = None) -> bool:
    """What every seam does with an error leaving a plugin: note it, and count it if it is
    the plugin's failure (the recovery link). True if it was counted."""
    if note_error(entry, error, frame if frame is not None else sys._getframe(1)):  # noqa: SLF001
        record_failure(entry, error)
        return True
    return False


def _log_call(entry: Entry, started: int, error: BaseException | None) -> None:
    if not _log.isEnabledFor(logging.DEBUG):
        return
    micros = (perf_counter_ns() - started) / 1000
    outcome = "ok" if error is None else f"{type(error).__name__}: {error}"
    _log.debug("plugin '%s' %s %s: %.1fus %s", entry.plugin, entry.door.version, entry.source,
               micros, outcome)  # fmt: skip


def _validate(entry: Entry, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    signature = entry.signature
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise CallInputError(entry.plugin, entry.source, str(exc)) from None


def _forget(door: Door, key: int) -> None:
    """A call that was late has ended: the watchdog's notes of it go."""
    door.expired.discard(key)
    door.searched.discard(key)


def _uncancel() -> None:
    """The watchdog's cancellation was for this call: it ends here, as a timeout."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _timeout_error(entry: Entry) -> CallTimeoutError:
    limit = format_duration(timedelta(seconds=entry.chain.timeout or 0))
    return entry.timeout_error(limit)


def _unavailable(entry: Entry, live: Door) -> PluginUnavailableError:
    return PluginUnavailableError(
        entry.plugin,
        f"its version {entry.door.version} was replaced by {live.version}, which has no "
        f"{entry.source}",
    )


def _slow(entry: Entry, /, *args: object, **kwargs: object) -> object:
    """The door was shut: wait at a held gate, refuse at a closed one, redirect if replaced.

    Called with the call's own arguments, so that the entry needs no closure over them.
    """
    door = entry.door
    live = door.gate.wait(door)
    if live is door:
        return entry.call(*args, **kwargs)
    target = entry.redirect(live) if entry.redirect is not None else None
    if target is None:
        raise _unavailable(entry, live)
    return target.call(*args, **kwargs)


async def _aslow(entry: Entry, /, *args: object, **kwargs: object) -> object:
    door = entry.door
    live = await door.gate.wait_async(door)
    if live is door:
        return await entry.acall(*args, **kwargs)
    target = entry.redirect(live) if entry.redirect is not None else None
    if target is None:
        raise _unavailable(entry, live)
    return await target.acall(*args, **kwargs)


def _not_sync(entry: Entry) -> Callable[..., object]:
    def refuse(*_args: object, **_kwargs: object) -> object:
        raise CallError(
            f"plugin '{entry.plugin}': {entry.source} is async; await it (acall) instead "
            "of calling it synchronously",
            plugin=entry.plugin,
            hint="use `await handle.acall(...)`, or make the plugin's method a plain function",
        )

    return refuse


_EntryTimeout = Callable[[str], CallTimeoutError]
_AsyncSlow = Callable[..., Awaitable[object]]
"""An async entry's slow path: ``await aslow(entry, *the call's arguments)`` (the default
waits at a held gate, refuses at a closed one, and redirects to the live version)."""


class Entry:
    """One way into one version of a plugin: ``call`` (sync) and ``acall`` (async).

    ``fn`` is the version's callable; ``source`` labels the call in metrics, logs and
    errors; ``redirect`` finds this entry's counterpart in the live version when this
    one's version has been replaced. ``signature`` (``"a, b=d0"``-style text from
    :func:`parameters_of`) gives the generated functions the callable's exact
    signature instead of ``*args, **kwargs``.
    """

    __slots__ = (
        "__weakref__",
        "acall",
        "call",
        "chain",
        "door",
        "fn",
        "is_async",
        "plugin",
        "redirect",
        "signature",
        "source",
        "stats",
        "timeout_error",
    )

    def __init__(
        self,
        door: Door,
        fn: Callable[..., object],
        source: str,
        *,
        chain: CallChain | None = None,
        redirect: Redirect | None = None,
        params: Parameters | None = None,
        timeout_error: _EntryTimeout | None = None,
        aslow: _AsyncSlow | None = None,
    ) -> None:
        self.door = door
        self.plugin = door.plugin
        self.fn = fn
        self.source = source
        self.chain = chain if chain is not None else door.chain
        self.redirect = redirect
        self.stats = door.stats_for(source)
        self.is_async = is_async_callable(fn)
        self.timeout_error: _EntryTimeout = timeout_error or functools.partial(
            CallTimeoutError, self.plugin, source
        )
        self.signature: inspect.Signature | None = None
        if "validation" in self.chain.links and params is None:
            try:
                self.signature = inspect.signature(fn)
            except (TypeError, ValueError):
                self.signature = None
        if self.chain.has("timeout") and self.chain.timeout is not None:
            watchdog.watch(door, self.chain.timeout)
        shape = params or _ANY
        self.call = _not_sync(self) if self.is_async else self._build(shape, is_async=False)
        self.acall: Callable[..., Awaitable[object]] = cast(
            "Callable[..., Awaitable[object]]",
            self._build(shape, is_async=True, aslow=aslow or _aslow),
        )

    def _build(
        self, params: Parameters, *, is_async: bool, aslow: _AsyncSlow = _aslow
    ) -> Callable[..., object]:
        links = self.chain.shape(is_async=is_async)
        if params is not _ANY:  # an exact signature: Python binds (and refuses) the arguments
            links = tuple(link for link in links if link != "validation")
        code = _entry_code(params.params, params.call, links, is_async, self.is_async)
        namespace: dict[str, object] = {
            **_ENTRY_GLOBALS,
            **params.globals,
            "_t_E": self,
            "_t_D": self.door,
            "_t_F": self.fn,
            "_t_S": self.stats,
            "_t_TMO": int((self.chain.timeout or 0) * 1e9),
            "_t_ASLOW": aslow,
        }
        name = _safe_name(self.source)
        function = FunctionType(
            code.replace(co_name=name, co_qualname=name), namespace, name, params.argdefs or None
        )
        if params.kwdefaults:
            function.__kwdefaults__ = dict(params.kwdefaults)
        function.__doc__ = getattr(self.fn, "__doc__", None)
        return function

    def __repr__(self) -> str:
        return f"<Entry {self.plugin} {self.door.version} {self.source}>"


def is_async_callable(fn: object) -> bool:
    """``async def`` functions and methods, partials of them, objects with an async ``__call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    dunder_call = getattr(fn, "__call__", None)  # noqa: B004 - looking for an async __call__
    return inspect.iscoroutinefunction(dunder_call)


def _safe_name(source: str) -> str:
    tail = source.rpartition(":")[2].rpartition(".")[2]
    return tail if tail.isidentifier() else "plugin_call"


# --------------------------------------------------------------------------- signatures


@dataclass(frozen=True, slots=True)
class Parameters:
    """A parameter list as source text, the matching call, the defaults of the
    parameters (``argdefs`` for positional ones, ``kwdefaults`` for keyword-only ones,
    as a function object holds them), and names the call uses (``globals``)."""

    params: str
    call: str
    globals: dict[str, object] = field(default_factory=dict)
    argdefs: tuple[object, ...] = ()
    kwdefaults: dict[str, object] = field(default_factory=dict)


_ANY = Parameters("*args, **kwargs", "*args, **kwargs")
ONE_ARGUMENT = Parameters("arg", "arg")
"""The shape of hook handlers and event handlers: one positional argument."""


def parameters_of(fn: Callable[..., object]) -> Parameters | None:  # noqa: C901, PLR0912 - one case per kind
    """``fn``'s signature as source text (for exact-signature entries), or None when unknown.

    Parameters keep their names (so keyword calls work) unless they are positional-only;
    the seam's own names all start with ``_t_``, so a parameter named so falls back to
    ``*args, **kwargs``.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params: list[str] = []
    args: list[str] = []
    argdefs: list[object] = []
    kwdefaults: dict[str, object] = {}
    saw_positional_only = saw_star = False
    for index, p in enumerate(signature.parameters.values()):
        if p.name.startswith("_t_"):
            return None
        has_default = p.default is not inspect.Parameter.empty
        kind = p.kind
        if kind is p.POSITIONAL_ONLY:
            name = f"_t_p{index}"
            params.append(name)
            args.append(name)
            saw_positional_only = True
            if has_default:
                argdefs.append(p.default)
            continue
        if saw_positional_only:
            params.append("/")
            saw_positional_only = False
        name = p.name
        if kind is p.POSITIONAL_OR_KEYWORD:
            params.append(name)
            args.append(name)
            if has_default:
                argdefs.append(p.default)
        elif kind is p.VAR_POSITIONAL:
            params.append(f"*{name}")
            args.append(f"*{name}")
            saw_star = True
        elif kind is p.KEYWORD_ONLY:
            if not saw_star:
                params.append("*")
                saw_star = True
            params.append(name)
            args.append(f"{name}={name}")
            if has_default:
                kwdefaults[name] = p.default
        else:
            params.append(f"**{name}")
            args.append(f"**{name}")
    if saw_positional_only:
        params.append("/")
    return Parameters(", ".join(params), ", ".join(args), {}, tuple(argdefs), kwdefaults)


# --------------------------------------------------------------------------- templates
#
# An entry function, for the links of one chain (outermost first). ``_t_d`` is the door,
# ``_t_t0`` the clock when the call began, ``_t_first`` whether a failure is this
# plugin's own (the innermost plugin it left; not an answer, not a refusal). Each link
# adds code on the way in, on success and on failure; failure and success code runs
# innermost first. Every name of the seam's starts with ``_t_``, so none can shadow a
# parameter of the plugin's method.

_IN: dict[str, str] = {
    "tracing": "_t_span, _t_token = _t_TRACE_ENTER(_t_E)",
    "validation": "_t_VALIDATE(_t_E, args, kwargs)",
}
_OK: dict[str, str] = {
    "tracing": "_t_TRACE_EXIT(_t_span, _t_token, None)",
    "logging": "_t_LOG(_t_E, _t_t0, None)",
    "metrics": "_t_S[0] += 1\n_t_S[1] += _t_CLOCK() - _t_t0",
}
_ERR: dict[str, str] = {
    "tracing": "_t_TRACE_EXIT(_t_span, _t_token, _t_exc)",
    "logging": "_t_LOG(_t_E, _t_t0, _t_exc)",
    "recovery": "if _t_first:\n    _t_RECORD(_t_E, _t_exc)",
    "metrics": "_t_S[0] += 1\n_t_S[1] += _t_CLOCK() - _t_t0\nif _t_first:\n    _t_S[2] += 1",
}

_SYNC = """\
def entry({params}):
    _t_d = _t_D
    if _t_d.is_open:
        _t_d.calls.append(None)
    else:
        return _t_SLOW(_t_E, {call})
{clock}    try:
{enter}        _t_result = _t_F({call})
    except Exception as _t_exc:
        _t_first = _t_NOTE(_t_E, _t_exc)
{failed}        raise
    finally:
        _t_d.calls.pop()
{succeeded}    return _t_result
"""

_ASYNC = """\
async def entry({params}):
    _t_d = _t_D
{clock}    if _t_d.is_open:
{join}
    else:
        return await _t_ASLOW(_t_E, {call})
    try:
{enter}        _t_result = {awaited}
{cancelled}    except Exception as _t_exc:
        _t_first = _t_NOTE(_t_E, _t_exc)
{failed}        raise
    finally:
{leave}
{succeeded}    return _t_result
"""

_JOIN = "        _t_d.calls.append(None)"
_LEAVE = "        _t_d.calls.pop()"
# An async call with a deadline is kept in ``d.tasks`` under a key of its own, with its
# deadline; the watchdog finds a late one's task by its frame (``_t_k`` and ``_t_d``).
_JOIN_DEADLINE = """\
        _t_k = _t_NEXT_KEY()
        _t_d.tasks[_t_k] = _t_t0 + _t_TMO"""
_LEAVE_DEADLINE = """\
        del _t_d.tasks[_t_k]
        if _t_d.expired or _t_d.searched:
            _t_FORGET(_t_d, _t_k)"""
_CANCELLED = """\
    except _t_CANCELLED:
        if _t_k not in _t_d.expired:
            raise
        _t_UNCANCEL()
        _t_exc = _t_TIMEOUT(_t_E)
        _t_first = _t_NOTE(_t_E, _t_exc)
{failed}        raise _t_exc from None
"""
_AWAIT_SYNC = """_t_F({call})
        if _t_result is not None and _t_ISAWAITABLE(_t_result):
            _t_result = await _t_result"""


def _indent(lines: str, depth: int) -> str:
    pad = "    " * depth
    return "".join(f"{pad}{line}\n" for line in lines.splitlines() if line)


def _section(table: dict[str, str], links: Sequence[str], depth: int) -> str:
    return "".join(_indent(table[link], depth) for link in links if link in table)


@functools.cache
def _entry_code(
    params: str, call: str, links: tuple[str, ...], is_async: bool, fn_is_async: bool
) -> CodeType:
    """Compile (once per shape) an entry function for ``links``."""
    inner_first = tuple(reversed(links))
    needs_clock = bool({"metrics", "logging", "timeout"} & set(links))
    clock = "    _t_t0 = _t_CLOCK()\n" if needs_clock else ""
    enter = _section(_IN, links, 2)
    failed = _section(_ERR, inner_first, 2)
    succeeded = _section(_OK, inner_first, 1)
    if not is_async:
        source = _SYNC.format(
            params=params, call=call, clock=clock, enter=enter, failed=failed, succeeded=succeeded
        )
    else:
        deadline = "timeout" in links
        awaited = f"await _t_F({call})" if fn_is_async else _AWAIT_SYNC.format(call=call)
        source = _ASYNC.format(
            params=params,
            call=call,
            clock=clock,
            join=_JOIN_DEADLINE if deadline else _JOIN,
            leave=_LEAVE_DEADLINE if deadline else _LEAVE,
            enter=enter,
            awaited=awaited,
            cancelled=_CANCELLED.format(failed=failed) if deadline else "",
            failed=failed,
            succeeded=succeeded,
        )
    filename = f"<tether seam {'async' if is_async else 'sync'} {'+'.join(links) or 'bare'}>"
    return _compile(source, filename)


def _compile(source: str, filename: str) -> CodeType:
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = compile(source, filename, "exec")
    return next(c for c in module.co_consts if isinstance(c, CodeType))


_ENTRY_GLOBALS: dict[str, object] = {
    "__builtins__": builtins,
    "_t_CLOCK": perf_counter_ns,
    "_t_SLOW": _slow,
    "_t_ASLOW": _aslow,
    "_t_RECORD": record_failure,
    "_t_NOTE": note_error,
    "_t_LOG": _log_call,
    "_t_VALIDATE": _validate,
    "_t_TRACE_ENTER": _trace_enter,
    "_t_TRACE_EXIT": _trace_exit,
    "_t_TIMEOUT": _timeout_error,
    "_t_NEXT_KEY": _next_key,
    "_t_FORGET": _forget,
    "_t_UNCANCEL": _uncancel,
    "_t_CANCELLED": asyncio.CancelledError,
    "_t_ISAWAITABLE": inspect.isawaitable,
}


# --------------------------------------------------------------------------- hook chains
#
# The hook registry calls a whole chain of sync handlers in one generated function (see
# tether._hooks). Each handler's block is the fast path above, unrolled: ``d{i}`` is its
# door, ``h{i}`` its callable, ``e{i}`` its entry; ``t{i}`` is the clock before handler
# i and ``t{j}`` after it, so n handlers read the clock n + 1 times. A failure is
# recorded (recovery) and timed right away; a shut door goes to ``slow``, which refuses
# (closed or held: a synchronous hook call never waits) or redirects.

HOOK_BLOCK = """\
    if d{i}.is_open:
        d{i}.calls.append(None)
        try:
            v{i} = h{i}(arg)
        except Exception as exc:
            v{i} = FAILED
            if failures is NO_FAILURES:
                failures = []
            failures.append(fail(e{i}, exc, t{i}))
        finally:
            d{i}.calls.pop()
        t{j} = clock()
    else:
        if failures is NO_FAILURES:
            failures = []
        v{i} = slow(e{i}, arg, failures)
        t{j} = clock()
"""

ASYNC_HOOK_BLOCK = HOOK_BLOCK.replace("= slow(", "= await slow(").replace(
    "            v{i} = h{i}(arg)\n",
    "            v{i} = h{i}(arg)\n"
    "            if v{i} is not None and ISAWAITABLE(v{i}):\n"
    "                v{i} = await v{i}\n",
)
"""The same block for ``await registry.run(...)`` over plain handlers: a shut door waits,
and an awaitable a plain handler returns is awaited."""


def compile_chain(source: str, filename: str) -> CodeType:
    """Compile generated chain code (hooks), registering its text for tracebacks."""
    return _compile(source, filename)
