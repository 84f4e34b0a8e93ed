"""HookRegistry: order, sync and async calls, failure isolation, gates, timeouts, metrics."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from datetime import timedelta

import pytest

from tether._gate import Gate
from tether._hooks import _UNROLL_LIMIT, HookFailure, HookOutcome, HookRegistry
from tether._manifest import HOOK_TYPES
from tether.errors import HookError, HookTimeoutError, PluginUnavailableError


def open_gate(plugin: str) -> Gate:
    gate = Gate(plugin)
    gate.open()
    return gate


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
            plugin,
            open_gate(plugin),
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
    registry.register("a", open_gate("a"), "post_request", 2, lambda arg: ("a", arg))
    registry.register("b", open_gate("b"), "post_request", 1, lambda arg: ("b", arg))

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

    registry.register("a", open_gate("a"), "startup", 200, slow)
    registry.register("b", open_gate("b"), "startup", 100, quick)

    outcome = asyncio.run(registry.run("startup", "x"))

    assert order == ["async", "sync"]
    assert outcome.results == ["async:x", "sync:x"]


def test_run_awaits_an_awaitable_returned_by_a_plain_function(registry):
    async def later() -> str:
        return "later"

    registry.register("a", open_gate("a"), "startup", 1, lambda arg: later())
    assert asyncio.run(registry.run("startup")).results == ["later"]


def test_async_callable_objects_count_as_async(registry):
    class Handler:
        async def __call__(self, arg: object) -> str:
            return "object"

    registry.register("a", open_gate("a"), "startup", 1, Handler())
    with pytest.raises(HookError, match="async handlers"):
        registry.call("startup")
    assert asyncio.run(registry.run("startup")).results == ["object"]


def test_call_refuses_a_chain_with_async_handlers_and_says_to_use_run(registry):
    async def handler(arg: object) -> None:
        return None

    registry.register("sync-one", open_gate("sync-one"), "pre_request", 2, returns(1))
    registry.register("auth", open_gate("auth"), "pre_request", 1, handler)

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

    registry.register("a", open_gate("a"), "pre_request", 2, returns(1))
    registration = registry.register("b", open_gate("b"), "pre_request", 1, handler)
    registration.remove()
    assert registry.call("pre_request").results == [1]


# --------------------------------------------------------------------------- failures


def test_a_raising_handler_does_not_stop_the_others_and_is_returned(registry, caplog):
    gate = open_gate("broken")
    seen: list[tuple[str, BaseException]] = []
    gate.error_listeners.append(lambda source, error: seen.append((source, error)))
    registry.register("first", open_gate("first"), "pre_request", 300, returns("one"))
    registry.register("broken", gate, "pre_request", 200, boom("bad token"))
    registry.register("last", open_gate("last"), "pre_request", 100, returns("three"))

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
    gate = open_gate("broken")

    async def failing(arg: object) -> None:
        await asyncio.sleep(0)
        raise ValueError("async failure")

    registry.register("broken", gate, "error", 2, failing)
    registry.register("fine", open_gate("fine"), "error", 1, returns("ok"))

    outcome = asyncio.run(registry.run("error"))

    assert outcome.results == ["ok"]
    assert [(f.plugin, type(f.error)) for f in outcome.failures] == [("broken", ValueError)]
    assert gate.error_count == 1
    assert registry.metrics("broken")["error"].error_count == 1


def test_an_outcome_without_failures_has_a_read_only_empty_failures_list(registry):
    registry.register("a", open_gate("a"), "pre_request", 1, returns(1))
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
    registry.register("a", open_gate("a"), "pre_request", 2, boom("first"))
    registry.register("b", open_gate("b"), "pre_request", 1, boom("second"))

    outcome = registry.call("pre_request")

    assert [str(f.error) for f in outcome.failures] == ["first", "second"]
    with pytest.raises(RuntimeError, match="first"):
        outcome.raise_first()
    HookOutcome(["fine"], []).raise_first()  # nothing to raise


def test_an_error_listener_that_raises_does_not_break_the_call(registry, caplog):
    gate = open_gate("a")

    def bad_listener(source: str, error: BaseException) -> None:
        raise LookupError("listener bug")

    gate.error_listeners.append(bad_listener)
    registry.register("a", gate, "pre_request", 2, boom())
    registry.register("b", open_gate("b"), "pre_request", 1, returns(2))

    with caplog.at_level(logging.ERROR, logger="tether.hooks"):
        outcome = registry.call("pre_request")

    assert outcome.results == [2]
    assert any("error listener failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit], ids=lambda e: e.__name__)
def test_base_exceptions_propagate_from_call_and_leave_the_gate_balanced(registry, error):
    gate = open_gate("a")
    after: list[int] = []

    def handler(arg: object) -> None:
        raise error

    registry.register("a", gate, "pre_request", 2, handler)
    registry.register("b", open_gate("b"), "pre_request", 1, lambda arg: after.append(1))

    with pytest.raises(error):
        registry.call("pre_request")
    with pytest.raises(error):
        registry.call_first("pre_request")
    assert after == []
    assert gate.in_flight == 0
    assert gate.error_count == 0


def test_cancellation_propagates_from_run(registry):
    gate = open_gate("a")

    async def handler(arg: object) -> None:
        raise asyncio.CancelledError

    registry.register("a", gate, "shutdown", 1, handler)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(registry.run("shutdown"))
    assert gate.in_flight == 0
    assert gate.error_count == 0


# --------------------------------------------------------------------------- timeouts


def test_an_async_handler_past_its_timeout_fails_with_the_reference_message(registry):
    gate = open_gate("slow")

    async def slow(arg: object) -> str:
        await asyncio.sleep(5)
        return "too late"

    registry.register("slow", gate, "pre_request", 2, slow, timeout=0.05)
    registry.register("fast", open_gate("fast"), "pre_request", 1, returns("fast"))

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

    registry.register("a", open_gate("a"), "pre_request", 1, quick, timeout=5)
    assert asyncio.run(registry.run("pre_request")).results == ["in time"]


def test_a_handlers_own_timeout_error_is_not_reported_as_a_hook_timeout(registry):
    async def handler(arg: object) -> None:
        raise TimeoutError("upstream timed out")

    registry.register("a", open_gate("a"), "pre_request", 1, handler, timeout=5)
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
        registry.register("a", open_gate("a"), "pre_request", 1, handler, timeout=timeout)


def test_a_timeout_on_a_plain_function_is_refused(registry):
    with pytest.raises(HookError, match="plain function, which cannot be interrupted"):
        registry.register("a", open_gate("a"), "pre_request", 1, returns(1), timeout=1)


# --------------------------------------------------------------------------- first result


def test_call_first_stops_at_the_first_value_that_is_not_none(registry):
    called: list[str] = []

    def make(name: str, value: object):
        def handler(arg: object) -> object:
            called.append(name)
            return value

        return handler

    registry.register("a", open_gate("a"), "pre_response", 4, make("a", None))
    registry.register("b", open_gate("b"), "pre_response", 3, boom())
    registry.register("c", open_gate("c"), "pre_response", 2, make("c", 0))
    registry.register("d", open_gate("d"), "pre_response", 1, make("d", "never"))

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

    registry.register("a", open_gate("a"), "pre_response", 3, none)
    registry.register("b", open_gate("b"), "pre_response", 2, value)
    registry.register("c", open_gate("c"), "pre_response", 1, returns("later"))

    outcome = asyncio.run(registry.run("pre_response", first_result=True))

    assert outcome.results == ["found"]
    assert called == ["none", "value"]
    assert outcome.ok


def test_first_result_with_only_none_results_returns_no_results(registry):
    registry.register("a", open_gate("a"), "pre_response", 1, returns(None))
    assert registry.call_first("pre_response").results == []
    assert asyncio.run(registry.run("pre_response", first_result=True)).results == []


# --------------------------------------------------------------------------- hook types


def test_an_unknown_hook_type_is_refused_with_a_suggestion(registry):
    with pytest.raises(HookError) as caught:
        registry.register("auth", open_gate("auth"), "pre_reqest", 1, returns(1))
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

    registry.register("tpcb", open_gate("tpcb"), "workload.before_operation", 1, returns("go"))

    assert registry.is_known("workload.before_operation")
    assert registry.hook_types[-1] == "workload.before_operation"
    assert registry.call("workload.before_operation").results == ["go"]
    with pytest.raises(HookError, match=r"did you mean 'workload\.before_operation'"):
        registry.register("x", open_gate("x"), "workload.before_operatoin", 1, returns(1))


@pytest.mark.parametrize("name", ["", "1st", "has space", "a/b"], ids=repr)
def test_declaring_an_invalid_hook_type_is_refused(registry, name):
    with pytest.raises(HookError, match="invalid hook type"):
        registry.declare(name)


def test_a_priority_must_be_an_integer(registry):
    with pytest.raises(HookError, match="a priority is an integer"):
        registry.register("a", open_gate("a"), "startup", "high", returns(1))  # type: ignore[arg-type]


def test_a_handler_must_be_callable(registry):
    with pytest.raises(HookError, match="not callable"):
        registry.register("a", open_gate("a"), "startup", 1, "nope")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- removal


def test_remove_unregisters_one_handler_and_is_idempotent(registry):
    first = registry.register("a", open_gate("a"), "startup", 2, returns("a"))
    registry.register("b", open_gate("b"), "startup", 1, returns("b"))
    assert first.is_active
    assert (first.plugin, first.hook_type, first.priority) == ("a", "startup", 2)
    assert "startup" in repr(first)

    first.remove()
    first.remove()

    assert not first.is_active
    assert registry.call("startup").results == ["b"]
    assert registry.handlers("startup") == [("b", 1)]


def test_remove_plugin_unregisters_all_its_handlers(registry):
    gate = open_gate("a")
    registry.register("a", gate, "startup", 1, returns("a1"))
    registry.register("a", gate, "startup", 1, returns("a2"))
    registry.register("a", gate, "shutdown", 1, returns("a3"))
    registry.register("b", open_gate("b"), "startup", 1, returns("b"))

    assert registry.remove_plugin("a") == 3
    assert registry.remove_plugin("a") == 0

    assert registry.call("startup").results == ["b"]
    assert registry.call("shutdown").results == []
    assert registry.handlers("startup") == [("b", 1)]


def test_metrics_survive_removal(registry):
    registry.register("a", open_gate("a"), "startup", 1, returns(1))
    registry.call("startup")
    registry.remove_plugin("a")
    assert registry.metrics("a")["startup"].execution_count == 1


# --------------------------------------------------------------------------- metrics


def sleeper(seconds: float):
    def handler(arg: object) -> None:
        time.sleep(seconds)

    return handler


def test_metrics_count_executions_durations_and_errors(registry):
    gate = open_gate("a")
    registry.register("a", gate, "pre_request", 2, sleeper(0.001))
    registry.register("a", gate, "post_request", 1, boom())
    registry.register("b", open_gate("b"), "pre_request", 1, returns(1))

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
    gate = open_gate("a")

    async def slow(arg: object) -> None:
        await asyncio.sleep(0.001)

    registry.register("a", gate, "startup", 1, sleeper(0.001))
    registry.register("a", gate, "shutdown", 1, slow)
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
    registry.register("a", open_gate("a"), "startup", 1, returns(1))
    registry.call("startup")
    registry.call("startup")
    later = registry.register("b", open_gate("b"), "startup", 2, returns(2))
    registry.call("startup")
    later.remove()
    registry.call("startup")

    assert registry.metrics("a")["startup"].execution_count == 4
    assert registry.metrics("b")["startup"].execution_count == 1


def test_a_plugin_with_two_handlers_on_one_hook_counts_both(registry):
    gate = open_gate("a")
    registry.register("a", gate, "startup", 2, returns(1))
    registry.register("a", gate, "startup", 1, returns(2))
    registry.call("startup")
    assert registry.metrics("a")["startup"].execution_count == 2


def test_metrics_stay_exact_over_many_calls_with_and_without_failures(registry):
    gate = open_gate("a")
    flaky_calls = 0

    def flaky(arg: object) -> None:
        nonlocal flaky_calls
        flaky_calls += 1
        if flaky_calls % 10 == 0:
            raise RuntimeError("every tenth call")

    registry.register("a", gate, "pre_request", 2, sleeper(0))
    registry.register("b", open_gate("b"), "pre_request", 1, flaky)

    for _ in range(2500):  # enough calls to fill and drain the readings log several times
        registry.call("pre_request")

    a, b = registry.metrics("a")["pre_request"], registry.metrics("b")["pre_request"]
    assert (a.execution_count, a.error_count) == (2500, 0)
    assert (b.execution_count, b.error_count) == (2500, 250)
    assert a.total_duration > timedelta(0)
    assert b.total_duration > timedelta(0)


def test_metrics_of_an_unused_hook_are_zero(registry):
    registry.register("a", open_gate("a"), "startup", 1, returns(1))
    assert registry.metrics("a")["startup"].execution_count == 0
    assert registry.metrics("a")["startup"].average_duration == timedelta(0)


# --------------------------------------------------------------------------- gates


def test_the_gate_counts_the_call_in_flight_while_the_handler_runs(registry):
    gate = open_gate("a")
    seen: list[int] = []
    registry.register("a", gate, "startup", 1, lambda arg: seen.append(gate.in_flight))

    registry.call("startup")
    registry.call_first("startup")
    asyncio.run(registry.run("startup"))

    assert seen == [1, 1, 1]
    assert gate.in_flight == 0


def test_call_skips_a_closed_gate_without_counting_an_error(registry):
    closed = Gate("stopped")
    closed.close("it is stopped")
    called: list[str] = []
    registry.register("stopped", closed, "pre_request", 2, lambda arg: called.append("stopped"))
    registry.register("running", open_gate("running"), "pre_request", 1, returns("ok"))

    outcome = registry.call("pre_request")

    assert called == []
    assert outcome.results == ["ok"]
    [failure] = outcome.failures
    assert failure == HookFailure("stopped", "pre_request", failure.error)
    assert isinstance(failure.error, PluginUnavailableError)
    assert str(failure.error) == "plugin 'stopped' is unavailable: it is stopped"
    assert closed.error_count == 0
    assert closed.in_flight == 0
    metrics = registry.metrics("stopped")["pre_request"]
    assert (metrics.execution_count, metrics.error_count) == (0, 0)
    assert registry.call_first("pre_request").failures[0].plugin == "stopped"


def test_call_does_not_wait_at_a_held_gate(registry):
    gate = open_gate("reloading")
    gate.hold()
    registry.register("reloading", gate, "pre_request", 1, returns("never"))

    outcome = registry.call("pre_request")

    assert outcome.results == []
    [failure] = outcome.failures
    assert isinstance(failure.error, PluginUnavailableError)
    assert "reloading" in str(failure.error)
    assert "await registry.run" in str(failure.error)


def test_run_skips_a_closed_gate_without_counting_an_error(registry):
    closed = Gate("stopped")  # a new gate is closed
    registry.register("stopped", closed, "startup", 2, returns("never"))
    registry.register("running", open_gate("running"), "startup", 1, returns("ok"))

    outcome = asyncio.run(registry.run("startup"))

    assert outcome.results == ["ok"]
    [failure] = outcome.failures
    assert isinstance(failure.error, PluginUnavailableError)
    assert failure.plugin == "stopped"
    assert closed.error_count == 0
    assert registry.metrics("stopped")["startup"].execution_count == 0


def test_run_waits_at_a_held_gate_and_proceeds_when_it_opens(registry):
    gate = open_gate("reloading")
    gate.hold()
    registry.register("reloading", gate, "pre_request", 1, returns("after reload"))

    async def scenario() -> tuple[HookOutcome, bool]:
        task = asyncio.create_task(registry.run("pre_request"))
        await asyncio.sleep(0.05)
        waited = not task.done() and gate.waiting == 1
        gate.open()
        return await task, waited

    outcome, waited = asyncio.run(scenario())

    assert waited
    assert outcome.results == ["after reload"]
    assert outcome.ok
    assert gate.in_flight == 0


# --------------------------------------------------------------------------- concurrency


def test_registering_while_another_thread_calls_is_safe(registry):
    registry.register("base", open_gate("base"), "pre_request", 1000, returns("base"))
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
            gate = open_gate(f"p{round_}")
            registration = registry.register(f"p{round_}", gate, "pre_request", round_, returns(1))
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
    registry.register("a", open_gate("a"), "pre_request", 2, returns(1))
    registry.register("b", open_gate("b"), "pre_request", 1, returns(2))

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
    size = _UNROLL_LIMIT + 6
    closed = Gate("closed")
    for n in range(size):
        handler = boom(f"h{n}") if n == 3 else returns(n)
        registry.register(f"p{n}", open_gate(f"p{n}"), "startup", size - n, handler)
    registry.register("closed", closed, "startup", -1, returns("never"))

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
            registry.register(plugin, open_gate(plugin), hook_type, -n, returns(plugin))

    for _ in range(3):
        assert registry.call("startup").results == ["startup-0", "startup-1"]
        assert registry.call("shutdown").results == ["shutdown-0", "shutdown-1"]
    assert registry.metrics("shutdown-1")["shutdown"].execution_count == 3


def test_a_traceback_through_the_generated_caller_shows_its_source(registry):
    def interrupt(arg: object) -> None:
        raise KeyboardInterrupt

    registry.register("a", open_gate("a"), "startup", 1, interrupt)
    with pytest.raises(KeyboardInterrupt) as caught:
        registry.call("startup")
    text = "".join(traceback.format_exception(caught.value))
    assert "hook_chain_startup" in text
    assert "v0 = h0(arg)" in text


@pytest.mark.parametrize("size", [1, 2, 7, _UNROLL_LIMIT], ids=lambda n: f"{n} handlers")
def test_unrolled_chains_of_any_length_keep_order_and_isolate_failures(registry, size):
    for n in range(size):
        handler = boom() if n == size - 1 else returns(n)
        registry.register(f"p{n}", open_gate(f"p{n}"), "startup", size - n, handler)

    outcome = registry.call("startup")

    assert outcome.results == list(range(size - 1))
    assert [f.plugin for f in outcome.failures] == [f"p{size - 1}"]
