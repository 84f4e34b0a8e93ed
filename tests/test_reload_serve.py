"""Hot reload in `tether serve`, under load: a real uvicorn server on loopback (in a
thread, ``LiveServer``), client threads calling a plugin route without pause, and the
plugin's directory rewritten on disk before each ``manager.reload_plugin``.

What a client must see: no failed request over many reloads; a broken new version
(however it breaks) rolled back with the old version answering; ``reject`` answered
with 503 and ``Retry-After``; the queue's time and size limits. What follows the live
version, state hand-off, storage and leftovers are tests/test_reload_serve_follow.py's;
`tether serve` as a process, its admin API and the config's ``reload:`` section are
tests/test_reload_serve_process.py's.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from reload_serve_plugins import (
    FAILED_STEP,
    FAILURES,
    Load,
    release,
    reload,
    reload_later,
    versions_in_order,
    wait_for,
    wait_until_holding,
)

pytest_plugins = ["reload_serve_fixtures"]

GRACE = 0.2  # seconds: short, so a test's last version leaves its grace period soon
STAGED = ("syntax", "import", "manifest")  # they fail while the old version still runs


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# --------------------------------------------------------------------------- no failures


@pytest.mark.slow
def test_ten_reloads_under_load_fail_no_request(greeter, serve):
    server = serve(front=True)
    with Load(server.url, ("/hello", "/front"), threads=4) as load:
        for minor in range(1, 11):
            greeter.write(f"1.0.{minor}")
            result = reload(server, grace_period=GRACE)
            assert (result.outcome, result.from_version, result.to_version) == (
                "reloaded",
                f"1.0.{minor - 1}",
                f"1.0.{minor}",
            ), result
            assert (result.step, result.error, result.rejected) == (None, None, 0)
            load.wait_for_answers(8, "answers from the new version")
        answers = load.stop()
    assert load.failures() == []
    assert len(answers) > 80
    assert all(a.stamp is not None for a in answers)  # the middleware never went missing
    for worker, seen in versions_in_order(answers):
        assert seen == sorted(seen, key=version_key), f"client {worker} went back: {seen}"
        assert seen[-1] == "1.0.10", worker
    assert httpx.get(server.url + "/front").json() == {"version": "1.0.10"}


# --------------------------------------------------------------------------- rollback


@pytest.mark.slow
@pytest.mark.parametrize("kind", FAILURES)
def test_a_broken_version_rolls_back_and_the_old_one_answers(greeter, serve, kind, caplog):
    caplog.set_level(logging.INFO, logger="tether")
    server = serve()
    with Load(server.url, threads=3) as load:
        greeter.write("1.0.1", fail=kind)
        result = reload(server, grace_period=GRACE)
        load.wait_for_answers(6, "answers after the rollback")
        load.stop()
    assert (result.outcome, result.step, result.from_version) == (
        "rolled_back",
        FAILED_STEP[kind],
        "1.0.0",
    ), result
    assert result.to_version == (None if kind == "manifest" else "1.0.1")
    assert result.error
    assert load.failures() == []
    assert {a.version for a in load.all()} == {"1.0.0"}
    assert httpx.get(server.url + "/hello").json()["version"] == "1.0.0"
    assert server.manager.get_info("greeter").version == "1.0.0"
    logged = [r.getMessage() for r in caplog.records if r.name == "tether"]
    if kind in STAGED:  # failed before anything stopped: one line, the old version ran on
        to = "?" if kind == "manifest" else "1.0.1"
        [line] = [m for m in logged if m.startswith(f"plugin greeter: reload to {to} failed at")]
        assert line.endswith("; 1.0.0 keeps running")
    else:  # the reference's rollback log
        assert any(
            m.startswith(f"Plugin reload failed: greeter v1.0.1: {kind} error: ") for m in logged
        )
        assert "Rolling back to previous version: greeter v1.0.0" in logged
        assert "Previous version restored successfully" in logged

    greeter.write("1.0.2")  # the next good version reloads as usual
    fixed = reload(server, grace_period=GRACE)
    assert (fixed.outcome, fixed.from_version, fixed.to_version) == ("reloaded", "1.0.0", "1.0.2")
    assert httpx.get(server.url + "/hello").json()["version"] == "1.0.2"


def test_a_syntax_error_is_reported_with_its_file_and_line(greeter, serve):
    server = serve()
    greeter.write("1.0.1", fail="syntax")
    line = next(
        number
        for number, text in enumerate(
            (greeter.directory / "plugin.py").read_text().splitlines(), start=1
        )
        if text.startswith("def broken(")
    )
    result = reload(server, grace_period=GRACE)
    assert result.outcome == "rolled_back"
    assert "plugin.py" in str(result.error)
    assert str(line) in str(result.error)


@pytest.mark.slow
def test_a_route_failing_within_the_grace_period_trips_the_threshold_and_rolls_back(greeter, serve):
    server = serve(greeter_entry={"error_threshold": {"max_errors": 3, "time_window": "1m"}})
    greeter.write("1.0.1", fail="route")
    result = reload(server, grace_period=60)
    assert result.outcome == "reloaded"
    statuses = []
    with httpx.Client(base_url=server.url, timeout=30) as http:

        def old_version_answers() -> bool:
            response = http.get("/hello")
            statuses.append(response.status_code)
            return response.status_code == 200 and response.json()["version"] == "1.0.0"

        wait_for(old_version_answers, "the rollback to 1.0.0")
    assert 500 in statuses  # the broken version did serve, and fail, first
    history = server.manager.reload_history("greeter")
    assert (history[0].outcome, history[0].step, history[0].to_version) == (
        "rolled_back",
        "grace",
        "1.0.1",
    )
    assert server.manager.get_info("greeter").version == "1.0.0"
    assert server.manager.get_status("greeter").value == "running"


@pytest.mark.slow
def test_a_failing_health_check_within_the_grace_period_rolls_back(greeter, serve):
    server = serve()  # the grace period checks health itself, whatever health_check_interval says
    with Load(server.url, threads=2) as load:
        greeter.write("1.0.1", fail="health")
        result = reload(server, grace_period=60)
        assert result.outcome == "reloaded"
        wait_for(
            lambda: server.manager.get_info("greeter").version == "1.0.0",
            "the rollback to 1.0.0",
        )
        load.wait_for_answers(6, "answers after the rollback")
        load.stop()
    assert load.failures() == []  # the unhealthy version served; nobody saw the swap back
    assert load.all()[-1].version == "1.0.0"
    history = server.manager.reload_history("greeter")
    assert (history[0].outcome, history[0].step) == ("rolled_back", "grace")


# --------------------------------------------------------------------------- strategies


def test_reject_answers_503_with_retry_after_while_the_new_version_starts(
    greeter, serve, pool, tmp_path
):
    server = serve()
    hold = tmp_path / "release"
    greeter.write("1.0.1", hold=hold)
    pending = reload_later(pool, server, strategy="reject", grace_period=GRACE)
    wait_until_holding(hold)
    refused = httpx.get(server.url + "/hello", timeout=30)
    assert not pending.done()
    release(hold)
    result = pending.result(60)
    assert refused.status_code == 503
    assert refused.headers["retry-after"].isdigit()
    assert (refused.json()["error"], refused.json()["plugin"]) == (
        "PluginUnavailableError",
        "greeter",
    )
    assert (result.outcome, result.held) == ("reloaded", 0)
    assert result.rejected >= 1
    assert httpx.get(server.url + "/hello").json()["version"] == "1.0.1"


def test_block_holds_calls_until_the_new_version_has_started(greeter, serve, pool, tmp_path):
    server = serve()
    hold = tmp_path / "release"
    greeter.write("1.0.1", hold=hold)
    pending = reload_later(pool, server, strategy="block", grace_period=GRACE)
    wait_until_holding(hold)
    held = [pool.submit(httpx.get, server.url + "/hello", timeout=60) for _ in range(3)]
    wait_for(lambda: server.manager._slot("greeter").gate.waiting >= 3, "3 held calls")
    assert not any(call.done() for call in held)
    release(hold)
    result = pending.result(60)
    answers = [call.result(60) for call in held]
    assert [(a.status_code, a.json()["version"]) for a in answers] == [(200, "1.0.1")] * 3
    assert (result.outcome, result.held, result.rejected) == ("reloaded", 3, 0)


def test_a_call_held_past_the_queue_timeout_gets_503(greeter, serve, pool, tmp_path):
    server = serve()
    hold = tmp_path / "release"
    greeter.write("1.0.1", hold=hold)
    pending = reload_later(pool, server, queue_timeout=0.2, grace_period=GRACE)
    wait_until_holding(hold)
    late = httpx.get(server.url + "/hello", timeout=30)  # answered while start() still waits
    assert not pending.done()
    release(hold)
    result = pending.result(60)
    assert late.status_code == 503
    assert "retry-after" in late.headers
    assert late.json()["plugin"] == "greeter"
    assert result.outcome == "reloaded"
    assert result.rejected >= 1
    assert httpx.get(server.url + "/hello").json()["version"] == "1.0.1"


def test_callers_beyond_max_queue_size_get_503_and_the_held_ones_are_served(
    greeter, serve, pool, tmp_path
):
    server = serve()
    hold = tmp_path / "release"
    greeter.write("1.0.1", hold=hold)
    pending = reload_later(pool, server, max_queue_size=2, queue_timeout=60, grace_period=GRACE)
    wait_until_holding(hold)
    calls = [pool.submit(httpx.get, server.url + "/hello", timeout=60) for _ in range(5)]
    wait_for(lambda: sum(call.done() for call in calls) >= 3, "3 callers refused")
    refused = [call.result() for call in calls if call.done()]
    assert [r.status_code for r in refused] == [503, 503, 503]
    assert all("retry-after" in r.headers for r in refused)
    assert not pending.done()
    release(hold)
    result = pending.result(60)
    served = [call.result(60) for call in calls if call.result(60).status_code == 200]
    assert [r.json()["version"] for r in served] == ["1.0.1", "1.0.1"]
    assert (result.held, result.rejected) == (2, 3)


def test_the_configs_reload_section_gives_the_defaults(greeter, serve, pool, tmp_path):
    server = serve(reload={"strategy": "reject", "grace_period": "200ms"})
    hold = tmp_path / "release"
    greeter.write("1.0.1", hold=hold)
    pending = reload_later(pool, server)  # no ReloadConfig fields: the config's section
    wait_until_holding(hold)
    refused = httpx.get(server.url + "/hello", timeout=30)
    release(hold)
    result = pending.result(60)
    assert refused.status_code == 503
    assert result.rejected >= 1
    wait_for(lambda: len(server.manager._slot("greeter").versions) == 1, "the grace period's end")


def test_reject_never_serves_a_request_without_the_reloading_plugins_middleware(
    greeter, serve, pool, tmp_path
):
    server = serve(front=True)
    hold = tmp_path / "release"
    greeter.write("1.0.1", hold=hold)
    pending = reload_later(pool, server, strategy="reject", grace_period=GRACE)
    wait_until_holding(hold)
    during = httpx.post(server.url + "/front/ping", timeout=30)  # front's route, greeter's stamp
    release(hold)
    assert pending.result(60).outcome == "reloaded"
    assert during.status_code == 503, (during.status_code, dict(during.headers))
    assert "retry-after" in during.headers
