from __future__ import annotations

from dograh_systemd import balance


def test_even_fleet_is_plain_least_conn() -> None:
    assert balance.weights({8000: 20, 8001: 19, 8002: 21}) == {8000: 1, 8001: 1, 8002: 1}
    assert balance.weights({8000: 0, 8001: 0}) == {8000: 1, 8001: 1}
    assert balance.is_even(balance.weights({8000: 100, 8001: 95}))


def test_new_workers_get_the_most_weight() -> None:
    # 2 -> 4 workers while 40 calls are live on the first two.
    assert balance.weights({8000: 20, 8001: 20, 8002: 0, 8003: 0}) == {
        8000: 1, 8001: 1, 8002: 10, 8003: 10}


def test_weight_follows_spare_room() -> None:
    weights = balance.weights({8000: 30, 8001: 15, 8002: 0})
    assert weights[8000] < weights[8001] < weights[8002]
    assert not balance.is_even(weights)


def test_no_workers() -> None:
    assert balance.weights({}) == {}


def test_a_spread_of_exactly_the_even_margin_is_even() -> None:
    assert balance.weights({8000: 2, 8001: 0}) == {8000: 1, 8001: 1}
    assert balance.weights({8000: 3, 8001: 0}) == {8000: 1, 8001: 10}
    assert balance.weights({8000: 40, 8001: 36}) == {8000: 1, 8001: 1}  # 10 % of the busiest
    assert balance.weights({8000: 40, 8001: 35}) == {8000: 1, 8001: 2}
    assert balance.weights({}) == {}
