"""Hooks: plugins register handlers at named points; the host calls every handler there.

A hook point has a type: one of the seven the reference defines (``startup``,
``shutdown``, ``pre_request``, ``post_request``, ``pre_response``, ``post_response``,
``error``) or one a host declares for itself (``myhost.before_job``). A point
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

How ``call`` stays fast is ``tether._hook_chains``'s business.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
import threading
import weakref
from collections.abc import Awaitable, Callable
from datetime import timedelta
from itertools import count
from typing import TYPE_CHECKING, TypeVar, cast, overload

from tether._callstats import CallStats
from tether._chain import CallChain
from tether._gate import GateState
from tether._hook_chains import (
    EMPTY_CHAIN,
    FAILED,
    NO_FAILURES,
    Caller,
    Chain,
    ChainEntry,
    HookFailure,
    HookMetrics,
    HookOutcome,
    Many,
    call_loop,
    held_error,
    log_failure,
    refusal,
)
from tether._manifest import HOOK_TYPES
from tether._seam import (
    ONE_ARGUMENT,
    Entry,
    is_async_callable,
)
from tether.errors import HookError, HookTimeoutError, PluginUnavailableError
from tether.types import HookPoint, HookRegistration

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


class Registration:
    """The handle ``HookRegistry.register`` returns; ``remove()`` unregisters the handler."""

    __slots__ = ("_entry", "_registry")

    def __init__(self, registry: HookRegistry, entry: ChainEntry) -> None:
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
        self._all: dict[str, list[ChainEntry]] = {t: [] for t in HOOK_TYPES}
        self._chains: dict[str, Chain] = dict.fromkeys(HOOK_TYPES, EMPTY_CHAIN)
        # hook type -> the chain's caller, for the chains without async handlers only:
        # being here is the precomputed "all sync" flag ``call`` checks.
        self._callers: dict[str, Caller] = dict.fromkeys(HOOK_TYPES, EMPTY_CHAIN.call)
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
                "'myhost.before_job'",
                hint="a hook type starts with a letter or '_' and contains letters, digits, "
                "'_', '.', ':' and '-'",
            )
        with self._lock:
            if hook_type not in self._chains:
                self._all[hook_type] = []
                self._chains[hook_type] = EMPTY_CHAIN
                self._callers[hook_type] = EMPTY_CHAIN.call

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
    ) -> HookRegistration:
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
            chain = chain.with_timeout(timeout)
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
            item = ChainEntry(entry, hook_type, priority, next(self._sequence),
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
            (e for e in self._all[hook_type] if e.door.committed), key=ChainEntry.call_order
        )
        self._chains[hook_type].drain()
        chain = Chain(self, tuple(live)) if live else EMPTY_CHAIN
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

    def _holds(self, entry: ChainEntry) -> bool:
        return any(e is entry for e in self._all.get(entry.hook_type, ()))

    def _remove(self, entry: ChainEntry) -> bool:
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

    def _remove_where(self, doomed: Callable[[ChainEntry], bool]) -> int:
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

    def _stand_ins(self, entry: ChainEntry, live: Door) -> tuple[ChainEntry, ...]:
        """The live version's handlers of ``entry``'s hook type, in call order."""
        return tuple(e for e in self._chains[entry.hook_type].entries if e.door is live)

    def slow_call(self, entry: ChainEntry, arg: object, failures: list[HookFailure]) -> object:
        """A sync call found the door shut: refuse (closed, held) or call the stand-ins."""
        gate = entry.door.gate
        live = gate.live
        if gate.state is not GateState.OPEN or live is None:
            error = (
                PluginUnavailableError(entry.plugin, gate.closed_reason)
                if gate.state is GateState.CLOSED
                else held_error(entry)
            )
            failures.append(refusal(entry, error))
            return FAILED
        if live is entry.door:  # it opened just now
            return self.call_entries((entry,), arg, failures)
        return self.call_entries(self._stand_ins(entry, live), arg, failures)

    def call_entries(
        self, entries: tuple[ChainEntry, ...], arg: object, failures: list[HookFailure]
    ) -> tuple[object, ...]:
        """Call ``entries`` one by one (a slow path's stand-ins): their values, a ``Many``."""
        values: list[object] = []
        for item in entries:
            try:
                values.append(item.entry.call(arg))
            except PluginUnavailableError as exc:  # its gate closed meanwhile
                failures.append(refusal(item, exc))
            except Exception as exc:
                failures.append(log_failure(item, exc))
        return Many(values)

    async def aslow_call(
        self, entry: ChainEntry, arg: object, failures: list[HookFailure]
    ) -> object:
        """``run`` found the door shut: wait at a held gate; refuse, or call the stand-ins."""
        gate = entry.door.gate
        try:
            live = await gate.wait_async(entry.door)
        except PluginUnavailableError as exc:
            failures.append(refusal(entry, exc))
            return FAILED
        stand_ins = (entry,) if live is entry.door else self._stand_ins(entry, live)
        return await self._run_entries(stand_ins, arg, failures)

    async def _run_entries(
        self, entries: tuple[ChainEntry, ...], arg: object, failures: list[HookFailure]
    ) -> Many:
        values: list[object] = []
        for item in entries:
            try:
                values.append(await item.entry.acall(arg))
            except PluginUnavailableError as exc:
                failures.append(refusal(item, exc))
            except Exception as exc:
                failures.append(log_failure(item, exc))
        return Many(values)

    # ------------------------------------------------------------------ calling

    def _chain(self, hook_type: str) -> Chain:
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
        return call_loop(self, chain.entries, arg, first=True)

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
        self, entries: tuple[ChainEntry, ...], arg: object, *, first_result: bool = False
    ) -> HookOutcome[object]:
        """Call ``entries`` through their seams in order (chains with async handlers)."""
        results: list[object] = []
        failures: list[HookFailure] = []
        for entry in entries:
            if entry.door.is_open:
                try:
                    values: tuple[object, ...] = (await entry.entry.acall(arg),)
                except PluginUnavailableError as exc:
                    failures.append(refusal(entry, exc))
                    continue
                except Exception as exc:
                    failures.append(log_failure(entry, exc))
                    continue
            else:
                found = await self.aslow_call(entry, arg, failures)
                if not isinstance(found, Many):
                    continue
                values = found
            for value in values:
                if not first_result:
                    results.append(value)
                elif value is not None:
                    return HookOutcome([value], failures or NO_FAILURES)
        return HookOutcome(results, failures or NO_FAILURES)

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
                if chain.pending:
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
                total = totals.setdefault(source.removeprefix("hook:"), [0, 0, 0, 0])
                total[0] += found.calls
                total[1] += round(found.timed_duration.total_seconds() * 1e9)
                total[2] += found.errors
                total[3] += found.timed
        out: dict[str, HookMetrics] = {}
        for hook_type, (executions, nanos, errors, timed) in totals.items():
            measured = timedelta(microseconds=nanos / 1000)
            average = measured / timed if timed else timedelta(0)
            out[hook_type] = HookMetrics(
                executions, average * executions, average, errors, timed, measured
            )
        return out


_LONGEST_TIMEOUT = 365 * 24 * 3600.0


def _check_timeout(plugin: str, hook_type: str, handler: object, timeout: float) -> None:
    if not is_async_callable(handler):
        raise HookError(
            f"plugin '{plugin}' gave its {hook_type} hook a timeout, but the handler is a "
            "plain function, which cannot be interrupted",
            plugin=plugin,
            hint="make the handler `async def` to give it a timeout, or register it without one",
        )
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= _LONGEST_TIMEOUT  # NaN fails both comparisons
    ):
        raise HookError(
            f"plugin '{plugin}' gave its {hook_type} hook the timeout {timeout!r}: a timeout "
            f"is a positive number of seconds, at most {_LONGEST_TIMEOUT:g} (a year)",
            plugin=plugin,
        )


def _async_chain_error(hook_type: str, chain: Chain) -> HookError:
    plugins = ", ".join(sorted({f"'{e.plugin}'" for e in chain.entries if e.is_async}))
    return HookError(
        f"hook '{hook_type}' has async handlers (from {plugins}), which a synchronous call "
        f"cannot await; use `await registry.run('{hook_type}', ...)`",
        hint="call the hook from async code with run(), or register plain functions",
    )
