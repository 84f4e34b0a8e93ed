"""HookRegistry: order, sync and async calls, failure isolation, gates, timeouts, metrics,
and versions (staged registrations, commits, the redirect to the live version)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Coroutine
from datetime import timedelta

import pytest

from tether import blame
from tether._callstats import CallStats
from tether._chain import CallChain, ErrorPolicy
from tether._gate import Door, Gate
from tether._hook_chains import UNROLL_LIMIT
from tether._hooks import HookFailure, HookOutcome, HookRegistry
from tether._manifest import HOOK_TYPES
from tether._seam import Entry
from tether.errors import HookError, HookTimeoutError, PluginUnavailableError
from tether.types import HookPoint


def open_door(
    plugin: str,
    version: str = "1.0.0",
    *,
    gate: Gate | None = None,
    chain: CallChain | None = None,
) -> Door:
    """A committed, open door: the running version of ``plugin`` (of a fresh gate by default)."""
    gate = gate or Gate(plugin)
    door = gate.add_door(version, chain=chain)
    door.committed = True
    gate.open(door)
    return door


def closed_door(plugin: str, reason: str = "it is not running") -> Door:
    """A committed door of a closed gate: a version that is loaded but stopped."""
    door = open_door(plugin)
    door.gate.close(reason)
    return door


async def wait_until_async(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.001)


def returns(value: object):
    def handler(arg: object) -> object:
        return value

    return handler


def boom(message: str = "boom"):
    def handler(arg: object) -> object:
        raise RuntimeError(message)

    return handler


@pytest.fixture
def registry() -> HookRegistry:
    return HookRegistry()


# --------------------------------------------------------------------------- order


def test_handlers_run_in_descending_priority_ties_in_registration_order(registry):
    calls: list[str] = []
    for plugin, priority in [("low", 10), ("tie-a", 100), ("high", 300), ("tie-b", 100)]:
        registry.register(
            open_door(plugin),
            "pre_request",
            priority,
            lambda arg, p=plugin: calls.append(p),
        )

    outcome = registry.call("pre_request")

    assert calls == ["high", "tie-a", "tie-b", "low"]
    assert registry.handlers("pre_request") == [
        ("high", 300),
        ("tie-a", 100),
        ("tie-b", 100),
        ("low", 10),
    ]
    assert outcome.results == [None, None, None, None]
    assert outcome.ok
    assert outcome.failures == []


def test_each_handler_receives_the_hook_argument_and_results_keep_call_order(registry):
    registry.register(open_door("a"), "post_request", 2, lambda arg: ("a", arg))
    registry.register(open_door("b"), "post_request", 1, lambda arg: ("b", arg))

    assert registry.call("post_request", "ctx").results == [("a", "ctx"), ("b", "ctx")]
    assert registry.call("post_request").results == [("a", None), ("b", None)]


def test_a_hook_without_handlers_returns_an_empty_outcome(registry):
    outcome = registry.call("shutdown", 1)
    assert outcome == HookOutcome([], [])
    assert asyncio.run(registry.run("shutdown")).results == []
    assert registry.call_first("shutdown").results == []


def test_the_seven_reference_hook_types_are_always_known(registry):
    assert registry.hook_types == HOOK_TYPES
    assert all(registry.is_known(t) for t in HOOK_TYPES)
    assert not registry.is_known("workload.before_operation")


# --------------------------------------------------------------------------- sync and async


def test_run_awaits_async_handlers_and_calls_sync_ones_inline(registry):
    order: list[str] = []

    async def slow(arg: object) -> str:
        await asyncio.sleep(0.01)
        order.append("async")
        return f"async:{arg}"

    def quick(arg: object) -> str:
        order.append("sync")
        return f"sync:{arg}"

    registry.register(open_door("a"), "startup", 200, slow)
    registry.register(open_door("b"), "startup", 100, quick)

    outcome = asyncio.run(registry.run("startup", "x"))

    assert order == ["async", "sync"]
    assert outcome.results == ["async:x", "sync:x"]


def test_run_awaits_an_awaitable_returned_by_a_plain_function(registry):
    made: list[Coroutine[object, object, str]] = []

    async def later() -> str:
        return "later"

    def handler(arg: object) -> object:
        made.append(later())
        return made[-1]

    registry.register(open_door("a"), "startup", 1, handler)
    try:
        assert asyncio.run(registry.run("startup")).results == ["later"]
    finally:
        for coroutine in made:  # never awaited if the registry failed to: no stray warning
            coroutine.close()


def test_async_callable_objects_count_as_async(registry):
    class Handler:
        async def __call__(self, arg: object) -> str:
            return "object"

    registry.register(open_door("a"), "startup", 1, Handler())
    with pytest.raises(HookError, match="async handlers"):
        registry.call("startup")
    assert asyncio.run(registry.run("startup")).results == ["object"]


def test_call_refuses_a_chain_with_async_handlers_and_says_to_use_run(registry):
    async def handler(arg: object) -> None:
        return None

    registry.register(open_door("sync-one"), "pre_request", 2, returns(1))
    registry.register(open_door("auth"), "pre_request", 1, handler)

    with pytest.raises(HookError) as caught:
        registry.call("pre_request")
    message = str(caught.value)
    assert "'auth'" in message
    assert "sync-one" not in message
    assert "await registry.run('pre_request', ...)" in message
    with pytest.raises(HookError, match="async handlers"):
        registry.call_first("pre_request")


def test_call_becomes_available_again_when_the_async_handler_is_removed(registry):
    async def handler(arg: object) -> None:
        return None

    registry.register(open_door("a"), "pre_request", 2, returns(1))
    registration = registry.register(open_door("b"), "pre_request", 1, handler)
    registration.remove()
    assert registry.call("pre_request").results == [1]


# --------------------------------------------------------------------------- failures


def test_a_raising_handler_does_not_stop_the_others_and_is_returned(registry, caplog):
    door = open_door("broken")
    gate = door.gate
    seen: list[tuple[str, BaseException]] = []
    gate.error_listeners.append(lambda source, error: seen.append((source, error)))
    registry.register(open_door("first"), "pre_request", 300, returns("one"))
    registry.register(door, "pre_request", 200, boom("bad token"))
    registry.register(open_door("last"), "pre_request", 100, returns("three"))

    with caplog.at_level(logging.ERROR, logger="tether.hooks"):
        outcome = registry.call("pre_request")

    assert outcome.results == ["one", "three"]
    assert not outcome.ok
    [failure] = outcome.failures
    assert failure.plugin == "broken"
    assert failure.hook_type == "pre_request"
    assert isinstance(failure.error, RuntimeError)
    assert str(failure.error) == "bad token"
    assert gate.error_count == 1
    assert gate.last_error is failure.error
    assert seen == [("hook:pre_request", failure.error)]
    assert registry.metrics("broken")["pre_request"].error_count == 1
    assert registry.metrics("broken")["pre_request"].execution_count == 1
    assert registry.metrics("first")["pre_request"].execution_count == 1
    assert registry.metrics("last")["pre_request"].execution_count == 1
    assert registry.metrics("last")["pre_request"].error_count == 0
    [record] = caplog.records
    assert record.name == "tether.hooks"
    assert "broken" in record.getMessage()
    assert "pre_request" in record.getMessage()
    assert "bad token" in record.getMessage()
    assert gate.in_flight == 0


def test_failures_are_isolated_in_run_too(registry):
    door = open_door("broken")
    gate = door.gate

    async def failing(arg: object) -> None:
        await asyncio.sleep(0)
        raise ValueError("async failure")

    registry.register(door, "error", 2, failing)
    registry.register(open_door("fine"), "error", 1, returns("ok"))

    outcome = asyncio.run(registry.run("error"))

    assert outcome.results == ["ok"]
    assert [(f.plugin, type(f.error)) for f in outcome.failures] == [("broken", ValueError)]
    assert gate.error_count == 1
    assert registry.metrics("broken")["error"].error_count == 1


def test_an_outcome_without_failures_has_a_read_only_empty_failures_list(registry):
    registry.register(open_door("a"), "pre_request", 1, returns(1))
    for outcome in (
        registry.call("pre_request"),
        registry.call_first("pre_request"),
        asyncio.run(registry.run("pre_request")),
        registry.call("startup"),
    ):
        assert outcome.failures == []
        assert outcome.ok
        with pytest.raises(TypeError, match=r"list\(outcome\.failures\)"):
            outcome.failures.append(HookFailure("x", "pre_request", RuntimeError()))
    copied = list(registry.call("pre_request").failures)
    copied.append(HookFailure("x", "pre_request", RuntimeError()))
    assert registry.call("pre_request").failures == []


def test_raise_first_reraises_the_first_failure(registry):
    registry.register(open_door("a"), "pre_request", 2, boom("first"))
    registry.register(open_door("b"), "pre_request", 1, boom("second"))

    outcome = registry.call("pre_request")

    assert [str(f.error) for f in outcome.failures] == ["first", "second"]
    with pytest.raises(RuntimeError, match="first"):
        outcome.raise_first()
    HookOutcome(["fine"], []).raise_first()  # nothing to raise


def test_an_error_listener_that_raises_does_not_break_the_call(registry, caplog):
    door = open_door("a")
    gate = door.gate

    def bad_listener(source: str, error: BaseException) -> None:
        raise LookupError("listener bug")

    gate.error_listeners.append(bad_listener)
    registry.register(door, "pre_request", 2, boom())
    registry.register(open_door("b"), "pre_request", 1, returns(2))

    with caplog.at_level(logging.ERROR, logger="tether.hooks"):
        outcome = registry.call("pre_request")

    assert outcome.results == [2]
    assert any("error listener failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit], ids=lambda e: e.__name__)
def test_base_exceptions_propagate_from_call_and_leave_the_gate_balanced(registry, error):
    door = open_door("a")
    gate = door.gate
    after: list[int] = []

    def handler(arg: object) -> None:
        raise error

    registry.register(door, "pre_request", 2, handler)
    registry.register(open_door("b"), "pre_request", 1, lambda arg: after.append(1))

    with pytest.raises(error):
        registry.call("pre_request")
    with pytest.raises(error):
        registry.call_first("pre_request")
    assert after == []
    assert gate.in_flight == 0
    assert gate.error_count == 0


def test_cancellation_propagates_from_run(registry):
    door = open_door("a")
    gate = door.gate

    async def handler(arg: object) -> None:
        raise asyncio.CancelledError

    registry.register(door, "shutdown", 1, handler)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(registry.run("shutdown"))
    assert gate.in_flight == 0
    assert gate.error_count == 0


# --------------------------------------------------------------------------- timeouts


def test_an_async_handler_past_its_timeout_fails_with_the_reference_message(registry):
    door = open_door("slow")
    gate = door.gate

    async def slow(arg: object) -> str:
        await asyncio.sleep(5)
        return "too late"

    registry.register(door, "pre_request", 2, slow, timeout=0.05)
    registry.register(open_door("fast"), "pre_request", 1, returns("fast"))

    outcome = asyncio.run(registry.run("pre_request"))

    assert outcome.results == ["fast"]
    [failure] = outcome.failures
    assert isinstance(failure.error, HookTimeoutError)
    assert str(failure.error) == "hook execution timeout: pre_request hook exceeded 50ms timeout"
    assert failure.error.plugin == "slow"
    assert gate.error_count == 1
    assert registry.metrics("slow")["pre_request"].error_count == 1


def test_the_timeout_text_is_written_like_the_reference(registry):
    error = HookTimeoutError("auth", "pre_request", "5s")
    assert str(error) == "hook execution timeout: pre_request hook exceeded 5s timeout"


def test_a_handler_finishing_within_its_timeout_succeeds(registry):
    async def quick(arg: object) -> str:
        await asyncio.sleep(0)
        return "in time"

    registry.register(open_door("a"), "pre_request", 1, quick, timeout=5)
    assert asyncio.run(registry.run("pre_request")).results == ["in time"]


def test_a_handlers_own_timeout_error_is_not_reported_as_a_hook_timeout(registry):
    async def handler(arg: object) -> None:
        raise TimeoutError("upstream timed out")

    registry.register(open_door("a"), "pre_request", 1, handler, timeout=5)
    [failure] = asyncio.run(registry.run("pre_request")).failures
    assert type(failure.error) is TimeoutError
    assert str(failure.error) == "upstream timed out"


@pytest.mark.parametrize(
    ("timeout", "match"),
    [(0, "positive number"), (-1.0, "positive number"), (True, "positive number")],
    ids=["zero", "negative", "bool"],
)
def test_a_bad_timeout_is_refused(registry, timeout, match):
    async def handler(arg: object) -> None:
        return None

    with pytest.raises(HookError, match=match):
        registry.register(open_door("a"), "pre_request", 1, handler, timeout=timeout)


def test_a_timeout_on_a_plain_function_is_refused(registry):
    with pytest.raises(HookError, match="plain function, which cannot be interrupted"):
        registry.register(open_door("a"), "pre_request", 1, returns(1), timeout=1)


def test_an_async_handler_without_a_timeout_of_its_own_gets_its_plugins_call_timeout(registry):
    door = open_door("slow", chain=CallChain(timeout=0.05))  # the plugin's timeouts.call

    async def slow(arg: object) -> str:
        await asyncio.sleep(1)
        return "too late"

    registry.register(door, "pre_request", 1, slow)

    [failure] = asyncio.run(registry.run("pre_request")).failures
    assert type(failure.error) is HookTimeoutError
    assert str(failure.error) == "hook execution timeout: pre_request hook exceeded 50ms timeout"
    assert door.gate.error_count == 1


# --------------------------------------------------------------------------- call chains


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_error_the_runtimes_policy_calls_an_answer_is_not_counted_against_the_plugin(
    registry, kind
):
    policy = ErrorPolicy()  # a host's: e.g. an HTTPException below 500 is an answer
    policy.add_answer(lambda error: isinstance(error, LookupError))
    door = open_door("web", chain=CallChain(policy=policy))

    def not_found(arg: object) -> None:
        raise LookupError("no such user")

    async def async_not_found(arg: object) -> None:
        raise LookupError("no such user")

    registry.register(door, "pre_request", 2, not_found if kind == "sync" else async_not_found)
    registry.register(door, "pre_request", 1, boom("a real failure"))
    outcome = asyncio.run(registry.run("pre_request"))

    assert [str(f.error) for f in outcome.failures] == ["no such user", "a real failure"]
    assert (door.gate.error_count, door.gate.errors_by_type) == (1, {"RuntimeError": 1})


# --------------------------------------------------------------------------- first result


def test_call_first_stops_at_the_first_value_that_is_not_none(registry):
    called: list[str] = []

    def make(name: str, value: object):
        def handler(arg: object) -> object:
            called.append(name)
            return value

        return handler

    registry.register(open_door("a"), "pre_response", 4, make("a", None))
    registry.register(open_door("b"), "pre_response", 3, boom())
    registry.register(open_door("c"), "pre_response", 2, make("c", 0))
    registry.register(open_door("d"), "pre_response", 1, make("d", "never"))

    outcome = registry.call_first("pre_response")

    assert outcome.results == [0]
    assert called == ["a", "c"]
    assert [f.plugin for f in outcome.failures] == ["b"]
    assert registry.metrics("d")["pre_response"].execution_count == 0


def test_run_first_result_stops_at_the_first_value_that_is_not_none(registry):
    called: list[str] = []

    async def none(arg: object) -> None:
        called.append("none")

    async def value(arg: object) -> str:
        called.append("value")
        return "found"

    registry.register(open_door("a"), "pre_response", 3, none)
    registry.register(open_door("b"), "pre_response", 2, value)
    registry.register(open_door("c"), "pre_response", 1, returns("later"))

    outcome = asyncio.run(registry.run("pre_response", first_result=True))

    assert outcome.results == ["found"]
    assert called == ["none", "value"]
    assert outcome.ok


def test_first_result_with_only_none_results_returns_no_results(registry):
    registry.register(open_door("a"), "pre_response", 1, returns(None))
    assert registry.call_first("pre_response").results == []
    assert asyncio.run(registry.run("pre_response", first_result=True)).results == []


# --------------------------------------------------------------------------- hook types


def test_an_unknown_hook_type_is_refused_with_a_suggestion(registry):
    with pytest.raises(HookError) as caught:
        registry.register(open_door("auth"), "pre_reqest", 1, returns(1))
    message = str(caught.value)
    assert "plugin 'auth'" in message
    assert "unknown hook type 'pre_reqest'" in message
    assert "(did you mean 'pre_request'?)" in message
    assert "startup, shutdown, pre_request" in message
    assert caught.value.plugin == "auth"
    assert "declare" in (caught.value.hint or "")


def test_calling_an_unknown_hook_type_is_an_error(registry):
    with pytest.raises(HookError, match=r"unknown hook type 'startp' \(did you mean 'startup'\?\)"):
        registry.call("startp")
    with pytest.raises(HookError, match="unknown hook type"):
        asyncio.run(registry.run("nothing-like-it"))
    with pytest.raises(HookError, match="unknown hook type"):
        registry.handlers("nope")


def test_a_host_declares_its_own_hook_points(registry):
    registry.declare("workload.before_operation")
    registry.declare("workload.before_operation")  # declaring again is harmless

    registry.register(open_door("tpcb"), "workload.before_operation", 1, returns("go"))

    assert registry.is_known("workload.before_operation")
    assert registry.hook_types[-1] == "workload.before_operation"
    assert registry.call("workload.before_operation").results == ["go"]
    with pytest.raises(HookError, match=r"did you mean 'workload\.before_operation'"):
        registry.register(open_door("x"), "workload.before_operatoin", 1, returns(1))


@pytest.mark.parametrize("name", ["", "1st", "has space", "a/b"], ids=repr)
def test_declaring_an_invalid_hook_type_is_refused(registry, name):
    with pytest.raises(HookError, match="invalid hook type"):
        registry.declare(name)


def test_a_priority_must_be_an_integer(registry):
    with pytest.raises(HookError, match="a priority is an integer"):
        registry.register(open_door("a"), "startup", "high", returns(1))  # type: ignore[arg-type]


def test_a_handler_must_be_callable(registry):
    with pytest.raises(HookError, match="not callable"):
        registry.register(open_door("a"), "startup", 1, "nope")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- removal


def test_remove_unregisters_one_handler_and_is_idempotent(registry):
    first = registry.register(open_door("a"), "startup", 2, returns("a"))
    registry.register(open_door("b"), "startup", 1, returns("b"))
    assert first.is_active
    assert (first.plugin, first.hook_type, first.priority) == ("a", "startup", 2)
    assert "startup" in repr(first)

    first.remove()
    first.remove()

    assert not first.is_active
    assert registry.call("startup").results == ["b"]
    assert registry.handlers("startup") == [("b", 1)]


def test_remove_plugin_unregisters_all_its_handlers(registry):
    door = open_door("a")
    registry.register(door, "startup", 1, returns("a1"))
    registry.register(door, "startup", 1, returns("a2"))
    registry.register(door, "shutdown", 1, returns("a3"))
    registry.register(open_door("b"), "startup", 1, returns("b"))

    assert registry.remove_plugin("a") == 3
    assert registry.remove_plugin("a") == 0

    assert registry.call("startup").results == ["b"]
    assert registry.call("shutdown").results == []
    assert registry.handlers("startup") == [("b", 1)]


def test_metrics_survive_removal(registry):
    door = open_door("a")  # the plugin's gate (its slot) outlives the registration
    registry.register(door, "startup", 1, returns(1))
    registry.call("startup")
    registry.remove_plugin("a")
    assert registry.metrics("a")["startup"].execution_count == 1


def test_metrics_sum_every_version_and_survive_an_unload_and_a_new_load(registry):
    stats = CallStats()  # what a manager keeps for all its plugins' gates
    first = open_door("a", "1.0.0", gate=Gate("a", stats=stats))
    registry.register(first, "startup", 1, returns(1))
    registry.call("startup")
    registry.call("startup")
    registry.remove_plugin("a")  # unloaded: the gate and its door are gone
    gone = weakref.ref(first)
    del first
    gc.collect()
    assert gone() is None

    again = open_door("a", "2.0.0", gate=Gate("a", stats=stats))
    registry.register(again, "startup", 1, returns(2))
    registry.call("startup")

    assert registry.metrics("a")["startup"].execution_count == 3
    assert stats.of("a")["hook:startup"].by_version == {"1.0.0": 2, "2.0.0": 1}


# --------------------------------------------------------------------------- metrics


def sleeper(seconds: float):
    def handler(arg: object) -> None:
        time.sleep(seconds)

    return handler


def test_metrics_count_executions_durations_and_errors(registry):
    door = open_door("a")
    registry.register(door, "pre_request", 2, sleeper(0.001))
    registry.register(door, "post_request", 1, boom())
    registry.register(open_door("b"), "pre_request", 1, returns(1))

    for _ in range(3):
        registry.call("pre_request")
        registry.call("post_request")

    metrics = registry.metrics("a")
    assert set(metrics) == {"pre_request", "post_request"}
    pre = metrics["pre_request"]
    assert pre.execution_count == 3
    assert pre.error_count == 0
    assert pre.total_duration >= timedelta(milliseconds=3)
    assert pre.average_duration == pre.total_duration / 3
    post = metrics["post_request"]
    assert post.execution_count == 3
    assert post.error_count == 3
    assert registry.metrics("b")["pre_request"].execution_count == 3
    assert registry.metrics("nobody") == {}


def test_metrics_are_kept_per_plugin_and_hook_across_all_call_paths(registry):
    door = open_door("a")

    async def slow(arg: object) -> None:
        await asyncio.sleep(0.001)

    registry.register(door, "startup", 1, sleeper(0.001))
    registry.register(door, "shutdown", 1, slow)
    registry.call("startup")
    registry.call_first("startup")
    asyncio.run(registry.run("startup"))
    asyncio.run(registry.run("shutdown"))
    asyncio.run(registry.run("shutdown", first_result=True))

    metrics = registry.metrics("a")
    assert metrics["startup"].execution_count == 3
    assert metrics["shutdown"].execution_count == 2
    for m in metrics.values():
        assert m.total_duration > timedelta(0)
        assert m.average_duration == m.total_duration / m.execution_count


def test_execution_counts_stay_right_when_the_chain_changes_between_calls(registry):
    registry.register(open_door("a"), "startup", 1, returns(1))
    registry.call("startup")
    registry.call("startup")
    later = registry.register(open_door("b"), "startup", 2, returns(2))
    registry.call("startup")
    later.remove()
    registry.call("startup")

    assert registry.metrics("a")["startup"].execution_count == 4
    assert registry.metrics("b")["startup"].execution_count == 1


def test_a_plugin_with_two_handlers_on_one_hook_counts_both(registry):
    door = open_door("a")
    registry.register(door, "startup", 2, returns(1))
    registry.register(door, "startup", 1, returns(2))
    registry.call("startup")
    assert registry.metrics("a")["startup"].execution_count == 2


def test_metrics_stay_exact_over_many_calls_with_and_without_failures(registry):
    door = open_door("a")
    flaky_calls = 0

    def flaky(arg: object) -> None:
        nonlocal flaky_calls
        flaky_calls += 1
        if flaky_calls % 10 == 0:
            raise RuntimeError("every tenth call")

    registry.register(door, "pre_request", 2, sleeper(0))
    registry.register(open_door("b"), "pre_request", 1, flaky)

    for _ in range(2500):  # enough calls to fill and drain the readings log several times
        registry.call("pre_request")

    a, b = registry.metrics("a")["pre_request"], registry.metrics("b")["pre_request"]
    assert (a.execution_count, a.error_count) == (2500, 0)
    assert (b.execution_count, b.error_count) == (2500, 250)
    assert a.total_duration > timedelta(0)
    assert b.total_duration > timedelta(0)


def test_metrics_of_an_unused_hook_are_zero(registry):
    registry.register(open_door("a"), "startup", 1, returns(1))
    assert registry.metrics("a")["startup"].execution_count == 0
    assert registry.metrics("a")["startup"].average_duration == timedelta(0)


# --------------------------------------------------------------------------- gates


def test_the_gate_counts_the_call_in_flight_while_the_handler_runs(registry):
    door = open_door("a")
    gate = door.gate
    seen: list[tuple[int, int]] = []
    registry.register(door, "startup", 1, lambda arg: seen.append((door.in_flight, gate.in_flight)))

    registry.call("startup")
    registry.call_first("startup")
    asyncio.run(registry.run("startup"))

    assert seen == [(1, 1), (1, 1), (1, 1)]
    assert door.in_flight == gate.in_flight == 0


def test_call_skips_a_closed_gate_without_counting_an_error(registry):
    closed = closed_door("stopped", "it is stopped")
    called: list[str] = []
    registry.register(closed, "pre_request", 2, lambda arg: called.append("stopped"))
    registry.register(open_door("running"), "pre_request", 1, returns("ok"))

    outcome = registry.call("pre_request")

    assert called == []
    assert outcome.results == ["ok"]
    [failure] = outcome.failures
    assert failure == HookFailure("stopped", "pre_request", failure.error)
    assert isinstance(failure.error, PluginUnavailableError)
    assert str(failure.error) == "plugin 'stopped' is unavailable: it is stopped"
    assert closed.gate.error_count == 0
    assert closed.in_flight == 0
    metrics = registry.metrics("stopped")["pre_request"]
    assert (metrics.execution_count, metrics.error_count) == (0, 0)
    assert registry.call_first("pre_request").failures[0].plugin == "stopped"


def test_call_does_not_wait_at_a_held_gate(registry):
    door = open_door("reloading")
    gate = door.gate
    gate.hold()
    registry.register(door, "pre_request", 1, returns("never"))

    outcome = registry.call("pre_request")

    assert outcome.results == []
    [failure] = outcome.failures
    assert isinstance(failure.error, PluginUnavailableError)
    assert "reloading" in str(failure.error)
    assert "await registry.run" in str(failure.error)


def test_run_skips_a_closed_gate_without_counting_an_error(registry):
    closed = closed_door("stopped")
    registry.register(closed, "startup", 2, returns("never"))
    registry.register(open_door("running"), "startup", 1, returns("ok"))

    outcome = asyncio.run(registry.run("startup"))

    assert outcome.results == ["ok"]
    [failure] = outcome.failures
    assert isinstance(failure.error, PluginUnavailableError)
    assert failure.plugin == "stopped"
    assert str(failure.error) == "plugin 'stopped' is unavailable: it is not running"
    assert closed.gate.error_count == 0
    assert registry.metrics("stopped")["startup"].execution_count == 0


def test_run_waits_at_a_held_gate_and_proceeds_when_it_opens(registry):
    door = open_door("reloading")
    gate = door.gate
    gate.hold()
    registry.register(door, "pre_request", 1, returns("after reload"))

    async def scenario() -> tuple[HookOutcome, bool]:
        task = asyncio.create_task(registry.run("pre_request"))
        await wait_until_async(lambda: gate.waiting == 1)
        waited = not task.done()
        gate.open()
        return await task, waited

    outcome, waited = asyncio.run(scenario())

    assert waited
    assert outcome.results == ["after reload"]
    assert outcome.ok
    assert gate.in_flight == 0


# --------------------------------------------------------------------------- concurrency


def test_registering_while_another_thread_calls_is_safe(registry):
    registry.register(open_door("base"), "pre_request", 1000, returns("base"))
    errors: list[BaseException] = []
    lengths: set[int] = set()
    stop = threading.Event()

    def caller() -> None:
        try:
            while not stop.is_set():
                outcome = registry.call("pre_request", None)
                assert outcome.ok
                assert outcome.results[0] == "base"
                lengths.add(len(outcome.results))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        for round_ in range(200):
            door = open_door(f"p{round_}")
            registration = registry.register(door, "pre_request", round_, returns(1))
            if round_ % 2:
                registration.remove()
            if round_ % 50 == 49:
                registry.remove_plugin(f"p{round_ - 1}")
    finally:
        stop.set()
        thread.join()

    assert errors == []
    assert lengths  # the caller ran
    assert registry.call("pre_request").results[0] == "base"


def test_calls_from_several_threads_are_all_counted(registry):
    registry.register(open_door("a"), "pre_request", 2, returns(1))
    registry.register(open_door("b"), "pre_request", 1, returns(2))

    def caller() -> None:
        for _ in range(3000):
            registry.call("pre_request")

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert registry.metrics("a")["pre_request"].execution_count == 9000
    assert registry.metrics("b")["pre_request"].execution_count == 9000


# --------------------------------------------------------------------------- long chains


def test_chains_longer_than_the_unrolled_limit_behave_the_same(registry):
    size = UNROLL_LIMIT + 6
    closed = closed_door("closed")
    for n in range(size):
        handler = boom(f"h{n}") if n == 3 else returns(n)
        registry.register(open_door(f"p{n}"), "startup", size - n, handler)
    registry.register(closed, "startup", -1, returns("never"))

    outcome = registry.call("startup")

    assert outcome.results == [n for n in range(size) if n != 3]
    assert [f.plugin for f in outcome.failures] == ["p3", "closed"]
    assert registry.metrics("p0")["startup"].execution_count == 1
    assert registry.metrics("p3")["startup"].error_count == 1
    assert registry.metrics("closed")["startup"].execution_count == 0


def test_hook_types_with_chains_of_one_length_keep_their_own_handlers(registry):
    for hook_type in ("startup", "shutdown"):
        for n in range(2):
            plugin = f"{hook_type}-{n}"
            registry.register(open_door(plugin), hook_type, -n, returns(plugin))

    for _ in range(3):
        assert registry.call("startup").results == ["startup-0", "startup-1"]
        assert registry.call("shutdown").results == ["shutdown-0", "shutdown-1"]
    assert registry.metrics("shutdown-1")["shutdown"].execution_count == 3


def test_a_traceback_through_the_generated_caller_shows_its_source(registry):
    def interrupt(arg: object) -> None:
        raise KeyboardInterrupt

    registry.register(open_door("a"), "startup", 1, interrupt)
    with pytest.raises(KeyboardInterrupt) as caught:
        registry.call("startup")
    text = "".join(traceback.format_exception(caught.value))
    assert "hook_chain_startup" in text
    assert "v0 = h0(arg)" in text


@pytest.mark.parametrize("size", [1, 2, 7, UNROLL_LIMIT], ids=lambda n: f"{n} handlers")
def test_unrolled_chains_of_any_length_keep_order_and_isolate_failures(registry, size):
    for n in range(size):
        handler = boom() if n == size - 1 else returns(n)
        registry.register(open_door(f"p{n}"), "startup", size - n, handler)

    outcome = registry.call("startup")

    assert outcome.results == list(range(size - 1))
    assert [f.plugin for f in outcome.failures] == [f"p{size - 1}"]


# --------------------------------------------------------------------------- versions


def commit(registry: HookRegistry, old: Door | None, new: Door) -> None:
    """What a plugin slot does when ``new`` replaces ``old``: swap commits, refresh, open."""
    if old is not None:
        old.committed = False
    new.committed = True
    registry.refresh()
    new.gate.open(new)


def test_a_handler_of_an_uncommitted_version_is_staged_until_commit_and_refresh(registry):
    gate = Gate("late")
    door = gate.add_door("1.0.0")
    gate.open(door)  # the gate lets calls in; the version is not committed yet
    called: list[object] = []

    def late(arg: object) -> str:
        called.append(arg)
        return "late"

    registration = registry.register(door, "pre_request", 1, late)
    registry.register(door, "error", 1, late)
    registry.register(open_door("early"), "pre_request", 2, returns("early"))

    assert registration.is_active  # staged, not dropped
    assert registry.call("pre_request", "a").results == ["early"]
    assert asyncio.run(registry.run("pre_request", "b")).results == ["early"]
    assert registry.handlers("pre_request") == [("early", 2)]
    assert not registry.has_handlers("error")
    door.committed = True
    assert registry.call("pre_request", "c").results == ["early"]  # live after refresh()
    assert called == []

    registry.refresh()

    assert registry.call("pre_request", "d").results == ["early", "late"]
    assert registry.handlers("pre_request") == [("early", 2), ("late", 1)]
    assert registry.has_handlers("error")
    assert called == ["d"]
    assert registry.metrics("late")["pre_request"].execution_count == 1


def test_after_a_new_version_is_committed_calls_reach_only_its_handlers(registry):
    old = open_door("auth", "1.0.0")
    registry.register(old, "pre_request", 1, returns("v1"))
    registry.register(old, "post_request", 1, returns("v1 post"))
    registry.register(open_door("other"), "pre_request", 0, returns("other"))
    assert registry.call("pre_request").results == ["v1", "other"]

    new = old.gate.add_door("2.0.0")
    registry.register(new, "pre_request", 1, returns("v2"))  # staged beside the live version
    assert registry.call("pre_request").results == ["v1", "other"]

    commit(registry, old, new)

    assert registry.call("pre_request").results == ["v2", "other"]
    assert registry.call_first("pre_request").results == ["v2"]
    assert asyncio.run(registry.run("pre_request")).results == ["v2", "other"]
    assert registry.call("post_request").results == []  # only v1 registered there
    assert registry.handlers("pre_request") == [("auth", 1), ("other", 0)]
    assert registry.metrics("auth")["pre_request"].execution_count == 5  # both versions
    assert old.gate.stats.of("auth")["hook:pre_request"].by_version == {"1.0.0": 2, "2.0.0": 3}


def sync_returns(value: str):
    return returns(value)


def async_returns(value: str):
    async def handler(arg: object) -> str:
        await asyncio.sleep(0)
        return value

    return handler


@pytest.mark.parametrize("make", [sync_returns, async_returns], ids=["sync", "async"])
def test_a_run_held_at_the_gate_during_a_swap_reaches_the_new_versions_handlers(registry, make):
    old = open_door("auth", "1.0.0")
    gate = old.gate
    registry.register(old, "pre_request", 1, make("v1"))
    registry.register(open_door("other"), "pre_request", 0, make("other"))

    async def swap_while_held() -> tuple[HookOutcome[object], Door]:
        gate.hold()
        held = asyncio.create_task(registry.run("pre_request"))
        await wait_until_async(lambda: gate.waiting == 1)
        new = gate.add_door("2.0.0")
        registry.register(new, "pre_request", 2, make("v2 first"))
        registry.register(new, "pre_request", 1, make("v2 second"))
        commit(registry, old, new)
        return await asyncio.wait_for(held, 5), new

    outcome, new = asyncio.run(swap_while_held())

    assert outcome.results == ["v2 first", "v2 second", "other"]
    assert outcome.ok
    assert gate.waiting == 0
    assert old.in_flight == new.in_flight == 0
    assert registry.metrics("auth")["pre_request"].execution_count == 2


def test_remove_door_drops_one_versions_handlers_only(registry):
    old = open_door("auth", "1.0.0")
    new = old.gate.add_door("2.0.0")
    registry.register(old, "pre_request", 1, returns("v1"))
    registry.register(old, "shutdown", 1, returns("v1"))
    registry.register(new, "pre_request", 1, returns("v2"))
    commit(registry, old, new)

    assert registry.remove_door(old) == 2
    assert registry.remove_door(old) == 0
    assert registry.call("pre_request").results == ["v2"]
    assert registry.call("shutdown").results == []


def test_hook_points_may_be_given_as_objects(registry):
    point: HookPoint[str, str] = HookPoint("workload.before_operation")
    registry.declare(point)
    registry.register(open_door("tpcb"), point, 1, lambda arg: f"go {arg}")

    assert registry.call(point, "now").results == ["go now"]
    assert registry.call("workload.before_operation", "too").results == ["go too"]
    assert registry.handlers(point) == [("tpcb", 1)]


# --------------------------------------------------------------------------- blame


def failing_service(door: Door) -> Entry:
    """A service method of ``door``'s plugin that raises, as the seam calls it."""

    def fetch(key: object) -> object:
        raise KeyError(key)

    return Entry(door, fetch, "service:Store.fetch")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_error_a_service_raises_through_a_hook_counts_against_the_service_only(registry, kind):
    storage = open_door("storage")
    web = open_door("web")
    fetch = failing_service(storage)

    def handler(arg: object) -> object:  # web's handler calls storage's service
        return fetch.call(arg)

    async def async_handler(arg: object) -> object:
        return await fetch.acall(arg)

    if kind == "sync":
        registry.register(web, "pre_request", 1, handler)
        outcome = registry.call("pre_request", "user:1")
    else:
        registry.register(web, "pre_request", 1, async_handler)
        outcome = asyncio.run(registry.run("pre_request", "user:1"))

    [failure] = outcome.failures
    assert failure.plugin == "web"  # the handler that failed, for the caller
    assert type(failure.error) is KeyError
    assert failure.error.args == ("user:1",)
    assert blame(failure.error) == "storage"  # where it was raised
    assert (storage.gate.error_count, storage.gate.errors_by_type) == (1, {"KeyError": 1})
    assert (web.gate.error_count, web.gate.errors_by_type) == (0, {})
