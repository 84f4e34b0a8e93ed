"""Review 8 reproducers: deadlines (``timeouts.call``) that are not kept.

Each test asserts the documented behaviour, so it fails while the bug exists.
"""

from __future__ import annotations

import asyncio
import collections
import math
from pathlib import Path

import pytest

from helpers import PluginWriter
from tether.errors import CallTimeoutError, HookError, HookTimeoutError
from tether.testing import PluginHarness, make_scope

SLEEPER = """
import asyncio

class Plugin:
    def initialize(self, ctx): pass
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass

    async def execute(self, seconds):
        await asyncio.sleep(seconds)
        return "ok"
"""


def _sleeper(tmp_path: Path) -> Path:
    write = PluginWriter(tmp_path / "plugins")
    return write("sleeper", SLEEPER, provides=["executor"], timeouts={"call": "200ms"})


def test_timeouts_hold_without_asyncio_private_all_tasks(tmp_path, monkeypatch):
    """Python 3.12+ has no ``asyncio.tasks._all_tasks`` (requires-python is >=3.11).

    The watchdog reads it, so on 3.12/3.13 its thread dies with AttributeError on the
    first late call and no timeout is ever enforced. Emulated here by showing the
    watchdog an ``asyncio`` whose ``tasks`` module is 3.12's (no ``_all_tasks``).
    """
    import types

    import tether._watchdog as watchdog_module

    tasks_312 = types.SimpleNamespace(
        **{k: v for k, v in vars(asyncio.tasks).items() if k != "_all_tasks"}
    )
    asyncio_312 = types.SimpleNamespace(**{**vars(asyncio), "tasks": tasks_312})
    # from 3.12 the seam records each call's task (on 3.11 the watchdog finds it)
    monkeypatch.setattr(watchdog_module, "RECORDS_TASKS", True)
    scope = make_scope("slow", state_directory=tmp_path / "a", call_timeout=0.2)

    async def slow(x: int) -> int:
        await asyncio.sleep(3)
        return x

    scope.context.export_service("S", slow)
    caller = make_scope("caller", state_directory=tmp_path / "b", runtime=scope.runtime)
    proxy = caller.context.import_service("slow", "S")
    monkeypatch.setattr(watchdog_module, "asyncio", asyncio_312)

    async def main() -> None:
        # the watchdog cut it (CallTimeoutError) before wait_for gave up (TimeoutError)
        with pytest.raises(CallTimeoutError):
            await asyncio.wait_for(proxy(1), 2.5)

    asyncio.run(main())


def test_timeouts_hold_under_two_thousand_concurrent_calls(tmp_path):
    """2,000 concurrent ``handle.acall`` into an execute that sleeps 3 s, limit 200 ms:
    every call must time out, within a bounded delay (docs: late by one tick at most).
    Observed: ~93% ran the full 3 s and returned "ok" (the watchdog's per-late-call
    search walks every task: quadratic); at 1,000 calls the last timeout came at 2.3 s."""
    with PluginHarness(_sleeper(tmp_path)) as harness:
        handle = harness.manager.get_handle("sleeper")

        async def flood() -> collections.Counter[str]:
            async def one() -> str:
                try:
                    await handle.acall("execute", 3)
                except CallTimeoutError:
                    return "timeout"
                return "ok"

            results = await asyncio.wait_for(asyncio.gather(*[one() for _ in range(2000)]), 20)
            return collections.Counter(results)

        # A call the watchdog reaches late enough runs its whole 3 s and returns "ok":
        # every call timing out is the bound, without asserting a time on a noisy machine.
        counts = harness.run(flood())
    assert counts == {"timeout": 2000}


SWALLOWER = """
import asyncio

class Plugin:
    def initialize(self, ctx): pass
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass

    async def execute(self, data):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            pass  # a plugin (or a library it uses) that swallows the cancellation
        await asyncio.sleep(1)
        return "late"
"""


def test_a_call_that_swallows_the_cancellation_still_times_out(tmp_path):
    """Observed: the watchdog cancels once; the plugin swallows it and its late result
    is returned as a success (not counted as an error) after 1.2 s with a 200 ms limit.
    Docs: a call that runs past timeouts.call raises CallTimeoutError."""
    write = PluginWriter(tmp_path / "plugins")
    path = write("swallower", SWALLOWER, provides=["executor"], timeouts={"call": "200ms"})
    with PluginHarness(path) as harness:
        handle = harness.manager.get_handle("swallower")
        with pytest.raises(CallTimeoutError):
            harness.run(asyncio.wait_for(handle.acall("execute", None), 10))
        assert handle.error_count == 1


PLAIN_HOOK = """
import asyncio

class Plugin:
    def initialize(self, ctx):
        ctx.register_hook("error", 100, self.handler)
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass

    def handler(self, arg):  # a plain function handing back a coroutine: a common shape
        return self._forever()

    async def _forever(self):
        await asyncio.sleep(3600)
"""


def test_a_plain_hook_handlers_awaitable_has_the_plugins_time_limit(tmp_path):
    """A plain hook handler returning a never-finishing coroutine hangs
    ``await registry.run(...)`` forever (under ``tether serve``: every request, since
    pre_request hooks run on every request). Events bound such awaitables with
    timeouts.call; hooks should too."""
    write = PluginWriter(tmp_path / "plugins")
    path = write("plainhook", PLAIN_HOOK, timeouts={"call": "300ms"})
    with PluginHarness(path) as harness:
        hooks = harness.manager.runtime.hooks
        outcome = harness.run(asyncio.wait_for(hooks.run("error", {"x": 1}), 3))
        assert not outcome.ok
        assert isinstance(outcome.failures[0].error, HookTimeoutError)


@pytest.mark.parametrize("timeout", [math.nan, math.inf, 1e300])
def test_register_hook_refuses_non_finite_timeouts_with_a_hook_error(tmp_path, timeout):
    """Observed: ValueError 'cannot convert float NaN to integer' / OverflowError from
    the seam, naming neither the plugin nor the hook."""
    scope = make_scope("p", state_directory=tmp_path)

    async def handler(arg: object) -> None:
        return None

    with pytest.raises(HookError, match="timeout"):
        scope.context.register_hook("error", 100, handler, timeout=timeout)


def test_a_huge_call_chain_is_refused_with_a_short_message():
    """A call chain of 40,000 links (it once took seconds: every link was counted with
    list.count) is refused, naming the repeat once and the first unknown links only."""
    from tether._chain import CallChain
    from tether.errors import ConfigError

    with pytest.raises(ConfigError) as repeated:
        CallChain.parse(["metrics"] * 40000, plugin="p", timeout=1.0)
    assert "metrics" in str(repeated.value)
    assert len(str(repeated.value)) < 500

    with pytest.raises(ConfigError) as unknown:
        CallChain.parse([f"bogus{i}" for i in range(20000)], plugin="p", timeout=1.0)
    message = str(unknown.value)
    assert "'bogus0'" in message
    assert "19990 more" in message
    assert len(message) < 1000
