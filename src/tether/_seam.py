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
    calls, errors and time per (version, source), in ``Door.stats``. Every call is
    counted; one in 16 is timed (the first always), which keeps two clock reads off
    most calls: durations are averages over the timed calls.
``validation``
    arguments that do not fit the operation's signature are refused with a
    :class:`~tether.errors.CallInputError` before the plugin is entered (and are not
    the plugin's error).
``timeout``
    an async call that runs past the plugin's ``timeouts.call`` is cancelled and
    raises :class:`~tether.errors.CallTimeoutError`. A sync call in-process cannot be
    interrupted; it runs to the end (process isolation kills instead).

Deadlines cost one dict entry per call, neither a timer nor a clock read: a watchdog
thread scans the doors with async calls in flight, times each call from when it first
sees it, and cancels the overdue ones on their loop.

The hook registry unrolls whole chains of handlers into one generated function; its
per-handler block (``HOOK_BLOCK``) is written here beside the entry templates and
uses the same fast path. Everything generated is compiled from these templates and
numbers only (never from user text); compiled code is cached by shape.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import inspect
import linecache
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from time import perf_counter_ns
from types import CodeType, FunctionType
from typing import TYPE_CHECKING, Protocol, cast

from tether import _watchdog
from tether._attribution import note_error, record_failure
from tether._chain import CallChain
from tether._durations import format_duration
from tether._tracing import trace_enter, trace_exit
from tether._watchdog import Deadlines, next_key, uncancel, watchdog
from tether.errors import CallError, CallInputError, CallTimeoutError, PluginUnavailableError

if TYPE_CHECKING:
    from tether._gate import Door

__all__ = [
    "ASYNC_HOOK_BLOCK",
    "HOOK_BLOCK",
    "ONE_ARGUMENT",
    "Entry",
    "Parameters",
    "Redirect",
    "compile_chain",
    "is_async_callable",
    "parameters_of",
]

_log = logging.getLogger("tether.calls")


# --------------------------------------------------------------------------- entries


class Redirect(Protocol):
    """Given the live version's door, the entry that stands for this one there (or None)."""

    def __call__(self, live: Door, /) -> Entry | None: ...


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
        "deadlines",
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
        self.deadlines: Deadlines | None = None
        if self.chain.has("timeout") and self.chain.timeout is not None:
            self.deadlines = Deadlines(self, self.chain.timeout)
            door.deadlines.add(self.deadlines)
            watchdog.watch(self.deadlines)
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
        code = _entry_code(
            params.params, params.call, links, is_async, self.is_async, _watchdog.RECORDS_TASKS
        )
        namespace: dict[str, object] = {
            **_ENTRY_GLOBALS,
            **params.globals,
            "_t_E": self,
            "_t_D": self.door,
            "_t_C": self.door.calls,
            "_t_F": self.fn,
            "_t_S": self.stats,
            **(
                {"_t_T": self.deadlines.tasks, "_t_X": self.deadlines.expired}
                if self.deadlines is not None
                else {}
            ),
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

    @property
    def version(self) -> str:
        return self.door.version

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
# An entry function, for the links of one chain (outermost first). ``_t_D`` is the door
# (``_t_C`` its in-flight deque, ``_t_T`` its calls with a deadline),
# ``_t_S`` the ``[calls, nanoseconds, errors, timed calls]`` list of the entry's
# (version, source), ``_t_first`` whether a failure is this plugin's own (the innermost
# plugin it left; not an answer, not a refusal). Each link adds code before the call,
# on the way in, on success and on failure; failure and success code runs innermost
# first. Every name of the seam's starts with ``_t_``, so none can shadow a
# parameter of the plugin's method.

# Before the ``try``: the metrics link counts the call and reads the clock for one call
# in 16 (``_t_m``, 0 when the call is not timed; the first call is always timed).
_BEFORE: dict[str, str] = {
    "logging": "_t_t0 = _t_CLOCK()",
    "validation": "_t_valid = 0",
    "metrics": "_t_n = _t_S[0] = _t_S[0] + 1\n_t_m = _t_CLOCK() if _t_n & 15 == 1 else 0",
}
_IN: dict[str, str] = {
    "tracing": "_t_span, _t_token = _t_TRACE_ENTER(_t_E)",
    "validation": "_t_VALIDATE(_t_E, args, kwargs)\n_t_valid = 1",
}
_OK: dict[str, str] = {
    "tracing": "_t_TRACE_EXIT(_t_span, _t_token, None)",
    "logging": "_t_LOG(_t_E, _t_t0, None)",
    "metrics": "if _t_m:\n    _t_S[1] += _t_CLOCK() - _t_m\n    _t_S[3] += 1",
}
_ERR: dict[str, str] = {
    "tracing": "_t_TRACE_EXIT(_t_span, _t_token, _t_exc)",
    "logging": "_t_LOG(_t_E, _t_t0, _t_exc)",
    "recovery": "if _t_first:\n    _t_RECORD(_t_E, _t_exc)",
    "metrics": "if _t_m:\n    _t_S[1] += _t_CLOCK() - _t_m\n    _t_S[3] += 1\n"
    "if _t_first:\n    _t_S[2] += 1",
}

_SYNC = """\
def entry({params}):
    if _t_D.is_open:
        _t_C.append(None)
    else:
        return _t_SLOW(_t_E, {call})
{before}    try:
{enter}        _t_result = _t_F({call})
    except Exception as _t_exc:
        _t_first = _t_NOTE(_t_E, _t_exc)
{failed}        raise
    finally:
        _t_C.pop()
{succeeded}    return _t_result
"""

_ASYNC = """\
async def entry({params}):
    if _t_D.is_open:
{join}
    else:
        return await _t_ASLOW(_t_E, {call})
{before}    try:
{enter}        _t_result = {awaited}
{cancelled}    except Exception as _t_exc:
        _t_first = _t_NOTE(_t_E, _t_exc)
{failed}        raise
    finally:
{leave}
{succeeded}    return _t_result
"""

_JOIN = "        _t_C.append(None)"
_LEAVE = "        _t_C.pop()"
# An async call with a deadline is kept in its entry's ``Deadlines`` (``_t_T``) under a
# key of its own, with the task it runs in (no clock read: the watchdog times it from
# when it first sees it, and cancels the task). ``_t_X`` holds the keys of calls the
# watchdog cancelled: a call among them ends as a timeout, also when it swallowed the
# cancellation and returned.
_JOIN_DEADLINE = """\
        _t_k = _t_NEXT_KEY()
        _t_T[_t_k] = {task}"""
_LEAVE_DEADLINE = """\
        del _t_T[_t_k]
        if _t_X:
            _t_UNCANCEL(_t_E.deadlines, _t_k)"""
_LATE = """\
        if _t_X and _t_UNCANCEL(_t_E.deadlines, _t_k):
            raise _t_TIMEOUT(_t_E)
"""
# A cancellation the watchdog made ends the call as a timeout, raised here so that it
# has a raise site (the seams further out must see it as this plugin's, not theirs).
_CANCELLED = """\
    except _t_CANCELLED:
        if not _t_UNCANCEL(_t_E.deadlines, _t_k):
            raise
        try:
            raise _t_TIMEOUT(_t_E) from None
        except Exception as _t_exc:
            _t_first = _t_NOTE(_t_E, _t_exc)
{failed}            raise
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
    params: str,
    call: str,
    links: tuple[str, ...],
    is_async: bool,
    fn_is_async: bool,
    records_tasks: bool,
) -> CodeType:
    """Compile (once per shape) an entry function for ``links``; ``records_tasks``: a
    deadline's entry holds the call's task (else the watchdog finds it)."""
    inner_first = tuple(reversed(links))
    before = _section(_BEFORE, links, 1)
    if "tracing" in links and "validation" in links[: links.index("tracing")]:
        before += "    _t_span = _t_token = None\n"  # validation may refuse before tracing
    enter = _section(_IN, links, 2)
    errors = _ERR
    if "validation" in links:  # a call the validation link refused was not a call
        refused = "if not _t_valid:\n    _t_S[0] -= 1\nelse:\n"
        errors = {**_ERR, "metrics": refused + _indent(_ERR["metrics"], 1)}
    failed = _section(errors, inner_first, 2)
    succeeded = _section(_OK, inner_first, 1)
    if not is_async:
        source = _SYNC.format(
            params=params, call=call, before=before, enter=enter, failed=failed, succeeded=succeeded
        )
    else:
        deadline = "timeout" in links
        awaited = f"await _t_F({call})" if fn_is_async else _AWAIT_SYNC.format(call=call)
        if deadline:
            awaited += "\n" + _LATE.rstrip("\n")
        source = _ASYNC.format(
            params=params,
            call=call,
            before=before,
            join=_JOIN_DEADLINE.format(task="_t_CURRENT()" if records_tasks else "None")
            if deadline
            else _JOIN,
            leave=_LEAVE_DEADLINE if deadline else _LEAVE,
            enter=enter,
            awaited=awaited,
            cancelled=_CANCELLED.format(failed=_section(errors, inner_first, 3))
            if deadline
            else "",
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
    "_t_TRACE_ENTER": trace_enter,
    "_t_TRACE_EXIT": trace_exit,
    "_t_TIMEOUT": _timeout_error,
    "_t_NEXT_KEY": next_key,
    "_t_CURRENT": asyncio.current_task,
    "_t_UNCANCEL": uncancel,
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
    "                v{i} = await AWAIT(e{i}, v{i})\n",
)
"""The same block for ``await registry.run(...)`` over plain handlers: a shut door waits,
and an awaitable a plain handler returns is awaited within the plugin's time limit."""


def compile_chain(source: str, filename: str) -> CodeType:
    """Compile generated chain code (hooks), registering its text for tracebacks."""
    return _compile(source, filename)
