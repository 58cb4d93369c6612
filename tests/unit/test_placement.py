"""Placement across hosts, as pure policy: no host is asked anything here."""

from __future__ import annotations

from pathlib import Path

import pytest

from dograh_systemd import placement
from dograh_systemd.config import Settings, parse
from dograh_systemd.errors import DograhError

ARI, ORCHESTRATOR = "ari-manager", "campaign-orchestrator"


def settings(**keys: str) -> Settings:
    raw = {"DOGRAH_HOSTS": "w1=10.0.0.11 w2=10.0.0.12 w3=10.0.0.13", **keys}
    return parse(Path("/etc/dograh/dograh.env"), raw, cpus=2)


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


def test_singletons_go_where_the_config_places_them() -> None:
    found = placement.singletons(settings(DOGRAH_SINGLETON_HOSTS=f"{ORCHESTRATOR}=w2"),
                                 {"w1": [], "w2": [], "w3": []}, [])
    assert found.placed == {"w1": {ARI}, "w2": {ORCHESTRATOR}, "w3": set()}
    assert found.held == [] and found.refused == []


def test_a_switched_off_singleton_runs_nowhere() -> None:
    found = placement.singletons(settings(ENABLE_ARI_MANAGER="false"),
                                 {"w1": [ARI], "w2": [], "w3": []}, [])
    assert found.placed == {"w1": {ORCHESTRATOR}, "w2": set(), "w3": set()}


def test_a_singleton_whose_host_is_left_out_runs_nowhere_until_it_answers() -> None:
    found = placement.singletons(settings(DOGRAH_SINGLETON_HOSTS=f"{ARI}=w3"),
                                 {"w1": [ORCHESTRATOR], "w2": []}, ["w3"])
    assert found.placed == {"w1": {ORCHESTRATOR}, "w2": set(), "w3": set()}
    assert found.held == [f"{ARI} belongs on w3, which is left out: it runs nowhere until "
                          "that host answers again"]
    assert found.refused == []


def test_no_start_while_a_host_that_may_run_it_does_not_answer() -> None:
    found = placement.singletons(settings(), {"w1": [], "w2": []}, ["w3"])
    assert found.placed == {"w1": set(), "w2": set(), "w3": set()}
    assert found.refused == found.held
    assert found.refused[0] == (f"{ARI} would start on w1, but w3 does not answer and may "
                                "still run it (two must never run); bring it back, or if it is "
                                "dead for good: --host-is-gone w3")
    assert len(found.refused) == 2


def test_one_that_runs_already_stays_while_another_host_is_away() -> None:
    found = placement.singletons(settings(), {"w1": [ARI], "w2": []}, ["w3"])
    assert found.placed["w1"] == {ARI}
    assert [line.split()[0] for line in found.refused] == [ORCHESTRATOR]


def test_what_a_host_still_runs_that_it_must_not() -> None:
    placed = {"w1": {ARI}, "w2": set()}
    assert placement.still_running({"w1": [ARI, ORCHESTRATOR], "w2": [ARI]}, placed) == \
        {"w1": [ORCHESTRATOR], "w2": [ARI]}
    assert placement.still_running({"w1": [ARI], "w2": []}, placed) == {}


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
