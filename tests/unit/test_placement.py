"""Placement across hosts and singletons by lease, as pure policy: no host is asked
anything here."""

from __future__ import annotations

import pytest

from dograh_systemd import placement
from dograh_systemd.cluster import election
from dograh_systemd.cluster.election import Move
from dograh_systemd.errors import DograhError


def test_workers_spread_by_cpus_with_the_largest_remainders_first() -> None:
    assert placement.spread(12, {}, {"w1": 2, "w2": 4, "w3": 6}) == {"w1": 2, "w2": 4, "w3": 6}
    # 7 over 1:1:1 is 2.33 each: the remainders tie, and the first host met takes the 7th.
    assert placement.spread(7, {}, {"w1": 1, "w2": 1, "w3": 1}) == {"w1": 3, "w2": 2, "w3": 2}
    # Shares 1.5 and 4.5: a tie again, the first host takes the 6th.
    assert placement.spread(6, {}, {"w1": 1, "w2": 3}) == {"w1": 2, "w2": 4}
    # Shares 0.8, 1.6, 2.4 (4.8 of 5): the larger remainders first, 0.8 then 0.6.
    assert placement.spread(5, {}, {"w1": 1, "w2": 2, "w3": 3}) == {"w1": 1, "w2": 2, "w3": 2}
    assert placement.spread(5, {}, {"w1": 1, "w2": 4}) == {"w1": 1, "w2": 4}
    assert placement.spread(3, {}, {"w1": 2, "w2": 2, "w3": 2}) == {"w1": 1, "w2": 1, "w3": 1}


def test_a_host_given_its_count_keeps_it_and_the_others_share_the_rest() -> None:
    assert placement.spread(10, {"w1": 4}, {"w1": 8, "w2": 1, "w3": 2}) == \
        {"w1": 4, "w2": 2, "w3": 4}
    # More given than asked for: the others run none.
    assert placement.spread(3, {"w1": 5}, {"w1": 2, "w2": 2}) == {"w1": 5, "w2": 0}
    # Every host given: the total is what they add up to.
    assert placement.spread(99, {"w1": 1, "w2": 2}, {"w1": 2, "w2": 2}) == {"w1": 1, "w2": 2}


def test_a_count_for_a_host_that_did_not_answer_is_refused() -> None:
    with pytest.raises(DograhError, match="no answering host named w3"):
        placement.spread(4, {"w3": 1}, {"w1": 2, "w2": 2})
    with pytest.raises(DograhError) as refused:
        placement.spread(4, {"w4": 1, "w3": 1}, {"w1": 2})
    assert str(refused.value) == "no answering host named w3, w4"


def test_a_host_of_one_cpu_alone_takes_every_worker_left() -> None:
    assert placement.spread(4, {}, {"w1": 1}) == {"w1": 4}
    assert placement.spread(3, {"w1": 1}, {"w1": 4, "w2": 1}) == {"w1": 1, "w2": 2}


# -- singletons by lease ------------------------------------------------------------------

HOSTS = ["w1", "w2", "w3"]


def test_the_first_registered_host_campaigns_for_a_free_key() -> None:
    assert election.move("w1", HOSTS, {"w1", "w2", "w3"}, None) is Move.CAMPAIGN
    assert election.move("w2", HOSTS, {"w1", "w2", "w3"}, None) is Move.STAY_DOWN
    # w1 is not registered (its lease ended): w2 is next.
    assert election.move("w2", HOSTS, {"w2", "w3"}, None) is Move.CAMPAIGN
    assert election.move("w3", HOSTS, {"w2", "w3"}, None) is Move.STAY_DOWN


def test_nobody_campaigns_while_the_key_is_held_or_on_its_way_out() -> None:
    for holder in ("w1", ""):
        assert election.move("w2", HOSTS, {"w2"}, holder) is Move.STAY_DOWN


def test_a_holder_holds_and_takes_nothing_back_on_a_return() -> None:
    assert election.move("w2", HOSTS, {"w2"}, "w2") is Move.HOLD
    # w1, preferred, is back: w2 keeps it unless the edges placed it anew.
    assert election.move("w2", HOSTS, {"w1", "w2"}, "w2") is Move.HOLD
    assert election.move("w2", HOSTS, {"w1", "w2"}, "w2", placed_anew=True) is Move.STEP_DOWN
    assert election.move("w1", HOSTS, {"w1", "w2"}, "w1", placed_anew=True) is Move.HOLD


def test_a_host_that_may_not_run_it_steps_down_or_stays_down() -> None:
    assert election.move("w3", ["w1", "w2"], {"w1", "w2", "w3"}, "w3") is Move.STEP_DOWN
    assert election.move("w3", ["w1", "w2"], {"w3"}, None) is Move.STAY_DOWN
    assert election.move("w1", [], {"w1"}, None) is Move.STAY_DOWN


def test_what_each_host_lacks_for_a_release() -> None:
    releases = {"w1": {"r1": "ready", "r2": "ready"}, "w2": {"r1": "ready", "r2": "failed"}}
    assert placement.lacking("r1", releases, {}) == []
    assert placement.lacking("r2", releases, {"w3": "does not answer"}) == \
        ["w3 (does not answer)", "w2 (it is failed)"]
    assert placement.lacking("r3", releases, {}) == ["w1 (it is missing)", "w2 (it is missing)"]


def test_the_newest_release_every_host_has_ready() -> None:
    assert placement.newest_everywhere({"w1": {"r1": "ready", "r2": "ready"},
                                        "w2": {"r1": "ready", "r2": "building"}}) == "r1"
    assert placement.newest_everywhere({"w1": {"r1": "ready"}, "w2": {}}) is None
    assert placement.newest_everywhere({}) is None
