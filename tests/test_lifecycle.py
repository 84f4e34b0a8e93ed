"""The plugin status table: every allowed transition passes, every other one is refused."""

from __future__ import annotations

import itertools

import pytest

from tether._lifecycle import TRANSITIONS, PluginStatus, check_transition
from tether.errors import InvalidTransitionError, LifecycleError

S = PluginStatus

# Written out by hand from the lifecycle diagram, so a change to the table in
# src/ has to be made here too, on purpose.
ALLOWED = {
    (S.UNLOADED, S.LOADING),
    (S.LOADING, S.INITIALIZED),
    (S.LOADING, S.ERROR),
    (S.LOADING, S.UNLOADED),  # a load abandoned before initialize, or unloaded uninitialized
    (S.INITIALIZED, S.RUNNING),
    (S.INITIALIZED, S.STOPPED),
    (S.INITIALIZED, S.ERROR),
    (S.INITIALIZED, S.UNLOADED),
    (S.RUNNING, S.STOPPED),
    (S.RUNNING, S.ERROR),
    (S.STOPPED, S.RUNNING),
    (S.STOPPED, S.UNLOADED),
    (S.STOPPED, S.ERROR),
    (S.ERROR, S.LOADING),
    (S.ERROR, S.UNLOADED),
}
ALL_PAIRS = list(itertools.product(PluginStatus, repeat=2))
REFUSED = [pair for pair in ALL_PAIRS if pair not in ALLOWED]


def _id(pair: tuple[PluginStatus, PluginStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_statuses_are_the_reference_ones():
    assert [s.value for s in PluginStatus] == [
        "unloaded",
        "loading",
        "initialized",
        "running",
        "stopped",
        "error",
    ]


def test_table_covers_every_status_and_matches_the_written_one():
    assert set(TRANSITIONS) == set(PluginStatus)
    table = {(current, target) for current, targets in TRANSITIONS.items() for target in targets}
    assert table == ALLOWED


@pytest.mark.parametrize("pair", sorted(ALLOWED), ids=_id)
def test_allowed_transition_passes(pair):
    current, target = pair
    check_transition("demo", current, target)


@pytest.mark.parametrize("pair", REFUSED, ids=_id)
def test_other_transition_is_refused_naming_both_states(pair):
    current, target = pair
    with pytest.raises(InvalidTransitionError) as caught:
        check_transition("demo", current, target)
    error = caught.value
    assert isinstance(error, LifecycleError)
    assert str(error) == f"invalid transition for plugin 'demo': {current.value} -> {target.value}"
    assert (error.current, error.target, error.plugin) == (current.value, target.value, "demo")
    assert current.value in error.hint
    assert target.value in error.hint


def test_no_status_transitions_to_itself():
    assert all(status not in TRANSITIONS[status] for status in PluginStatus)
