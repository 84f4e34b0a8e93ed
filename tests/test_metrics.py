"""Plugin metrics: counters that only go up, gauges, cumulative histograms, labels, kinds
that cannot change, and a plugin's series removed with it."""

from __future__ import annotations

import math
import threading

import pytest

from tether._metrics import DEFAULT_BUCKETS, MetricSample, MetricsCollector, MetricsStore
from tether.testing import make_scope


@pytest.fixture
def store():
    return MetricsStore()


@pytest.fixture
def auth(store):
    return MetricsCollector(store, "auth-plugin")


def series(collector: MetricsCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in collector.samples()}


# --------------------------------------------------------------------------- counters


def test_counters_add_up_per_label_set(auth):
    auth.increment_counter("logins")
    auth.increment_counter("logins", 2)
    auth.increment_counter("logins", method="password", ok=True)
    auth.increment_counter("logins", ok=True, method="password")  # label order does not matter
    assert series(auth) == {
        ("logins", ()): 3.0,
        ("logins", (("method", "password"), ("ok", "True"))): 2.0,
    }
    (sample, *_) = auth.samples()
    assert isinstance(sample, MetricSample)
    assert (sample.plugin, sample.kind) == ("auth-plugin", "counter")


@pytest.mark.parametrize("amount", [-1, -0.5], ids=["minus-one", "minus-half"])
def test_counters_only_go_up(auth, amount):
    auth.increment_counter("logins", 5)
    with pytest.raises(ValueError, match="counter 'logins' can only go up"):
        auth.increment_counter("logins", amount)
    assert series(auth) == {("logins", ()): 5.0}


def test_increment_by_zero_is_allowed(auth):
    auth.increment_counter("logins", 0)
    assert series(auth) == {("logins", ()): 0.0}


# --------------------------------------------------------------------------- gauges


def test_gauges_are_set_and_may_go_down(auth):
    auth.record_gauge("sessions", 10)
    auth.record_gauge("sessions", 3)
    auth.record_gauge("sessions", -2, region="eu")
    assert series(auth) == {("sessions", ()): 3.0, ("sessions", (("region", "eu"),)): -2.0}
    assert {s.kind for s in auth.samples()} == {"gauge"}


# --------------------------------------------------------------------------- kinds and names


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        pytest.param("counter", "gauge", "is a counter, not a gauge", id="counter-then-gauge"),
        pytest.param("gauge", "counter", "is a gauge, not a counter", id="gauge-then-counter"),
        pytest.param(
            "counter", "histogram", "is a counter, not a histogram", id="counter-then-histogram"
        ),
        pytest.param(
            "histogram", "gauge", "is a histogram, not a gauge", id="histogram-then-gauge"
        ),
    ],
)
def test_a_metric_keeps_its_kind(auth, first, second, message):
    record = {
        "counter": lambda: auth.increment_counter("m"),
        "gauge": lambda: auth.record_gauge("m", 1),
        "histogram": lambda: auth.record_histogram("m", 1),
    }
    record[first]()
    with pytest.raises(ValueError, match=f"metric 'm' of plugin 'auth-plugin' {message}"):
        record[second]()


def test_the_same_name_in_two_plugins_is_two_metrics(store, auth):
    cache = MetricsCollector(store, "cache-plugin")
    auth.increment_counter("hits")
    cache.record_gauge("hits", 7)
    assert series(auth) == {("hits", ()): 1.0}
    assert series(cache) == {("hits", ()): 7.0}
    assert {(s.plugin, s.kind) for s in store.samples()} == {
        ("auth-plugin", "counter"),
        ("cache-plugin", "gauge"),
    }


@pytest.mark.parametrize("name", ["", "1st", "has space", "dash-ed", "per%cent"])
def test_invalid_names_are_refused(auth, name):
    with pytest.raises(ValueError, match="invalid metric name"):
        auth.increment_counter(name)
    assert auth.samples() == []


@pytest.mark.parametrize("name", ["requests", "http.requests", "ns:requests_total", "_private"])
def test_valid_names(auth, name):
    auth.increment_counter(name)
    assert [s.name for s in auth.samples()] == [name]


# --------------------------------------------------------------------------- histograms


def test_histogram_buckets_are_cumulative_and_inclusive(auth):
    for value in (0.5, 1.0, 1.5, 3.0, 100.0):
        auth.record_histogram("latency", value, buckets=(2.0, 1.0))
    (sample,) = auth.samples()
    assert sample.kind == "histogram"
    assert sample.buckets == ((1.0, 2), (2.0, 3), (math.inf, 5))  # sorted, +Inf added
    assert sample.count == 5
    assert sample.value == pytest.approx(106.0)  # the sum


def test_histograms_use_the_default_buckets(auth):
    auth.record_histogram("latency", 0.003, route="/")
    (sample,) = auth.samples()
    assert tuple(bound for bound, _ in sample.buckets) == DEFAULT_BUCKETS
    assert all(count == 1 for _, count in sample.buckets)
    assert sample.labels == {"route": "/"}


def test_an_explicit_inf_bucket_is_not_doubled(auth):
    auth.record_histogram("size", 5, buckets=(10.0, math.inf))
    (sample,) = auth.samples()
    assert sample.buckets == ((10.0, 1), (math.inf, 1))


def test_histogram_label_sets_are_separate_series(auth):
    auth.record_histogram("latency", 0.1, route="/a")
    auth.record_histogram("latency", 0.2, route="/a")
    auth.record_histogram("latency", 0.3, route="/b")
    counts = {s.labels["route"]: s.count for s in auth.samples()}
    assert counts == {"/a": 2, "/b": 1}


# --------------------------------------------------------------------------- plugins


def test_remove_plugin_forgets_its_series_and_kinds(store, auth):
    cache = MetricsCollector(store, "cache-plugin")
    auth.increment_counter("logins")
    auth.record_histogram("latency", 1)
    cache.increment_counter("hits")
    store.remove_plugin("auth-plugin")
    assert auth.samples() == []
    assert [s.plugin for s in store.samples()] == ["cache-plugin"]
    auth.record_gauge("logins", 1)  # the name is free again, for any kind
    assert series(auth) == {("logins", ()): 1.0}


def test_the_context_metrics_are_labelled_with_the_plugin(tmp_path):
    scope = make_scope("auth-plugin", state_directory=tmp_path)
    metrics = scope.context.metrics
    metrics.increment_counter("logins", user_type="admin")
    metrics.record_gauge("sessions", 2)
    metrics.record_histogram("latency", 0.2, buckets=(0.1, 1.0))
    samples = {s.name: s for s in scope.runtime.metrics.samples()}
    assert {(s.plugin, s.kind) for s in samples.values()} == {
        ("auth-plugin", "counter"),
        ("auth-plugin", "gauge"),
        ("auth-plugin", "histogram"),
    }
    logins = samples["logins"]
    assert (logins.labels, logins.value) == ({"user_type": "admin"}, 1.0)
    assert samples["latency"].buckets == ((0.1, 0), (1.0, 1), (math.inf, 1))


def test_the_context_metrics_offer_recording_only(tmp_path):
    metrics = make_scope("auth-plugin", state_directory=tmp_path).context.metrics
    for host_side in ("samples", "_store", "_plugin"):  # a sealed view of the collector
        assert not hasattr(metrics, host_side)
    with pytest.raises(AttributeError, match="read-only"):
        metrics.increment_counter = print


def test_context_histograms_take_the_protocols_default_buckets(tmp_path):
    scope = make_scope("auth-plugin", state_directory=tmp_path)
    scope.context.metrics.record_histogram("latency", 0.003, buckets=None)  # tether.types.Metrics
    (sample,) = scope.runtime.metrics.samples()
    assert tuple(bound for bound, _ in sample.buckets) == DEFAULT_BUCKETS


def test_concurrent_increments_are_not_lost(auth):
    threads, rounds = 8, 500

    def work() -> None:
        for _ in range(rounds):
            auth.increment_counter("hits")
            auth.record_histogram("latency", 0.01)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    by_kind = {s.kind: s for s in auth.samples()}
    assert by_kind["counter"].value == threads * rounds
    assert by_kind["histogram"].count == threads * rounds


# --------------------------------------------------------------------------- known bugs


def test_a_refused_call_leaves_no_trace(auth):
    with pytest.raises(ValueError, match="can only go up"):
        auth.increment_counter("level", -1)
    auth.record_gauge("level", 1)
    assert series(auth) == {("level", ()): 1.0}


def test_empty_buckets_are_refused_with_a_clear_error(auth):
    with pytest.raises(ValueError, match="bucket"):
        auth.record_histogram("latency", 1, buckets=())
