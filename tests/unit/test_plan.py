from __future__ import annotations

from pathlib import Path

import pytest

from dograh_systemd import config
from dograh_systemd.errors import DograhError
from dograh_systemd.plan import Fleet, Plan, desired_fleet

BOTH = frozenset({"dograh-ari-manager.service", "dograh-campaign-orchestrator.service"})


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    path = tmp_path / "dograh.env"
    path.write_text("FASTAPI_WORKERS=4\nARQ_WORKERS=2\n")
    return config.load(path)


def fleet(ports: range, arq: range = range(0), singletons: frozenset[str] = BOTH) -> Fleet:
    return Fleet(frozenset(ports), frozenset(arq), singletons)


def test_scale_up_starts_only_new_instances(settings: config.Settings) -> None:
    current = fleet(range(8000, 8002), range(1, 2))
    plan = Plan(current, desired_fleet(settings, current, 6, None))
    assert plan.api_to_start == [f"dograh-api@{p}.service" for p in range(8002, 8006)]
    assert plan.to_stop == []
    assert plan.arq_to_start == []  # ARQ count kept as it is


def test_scale_down_stops_the_highest_ports(settings: config.Settings) -> None:
    current = fleet(range(8000, 8006), range(1, 4))
    plan = Plan(current, desired_fleet(settings, current, 2, 1))
    assert plan.api_to_stop == [f"dograh-api@{p}.service" for p in range(8002, 8006)]
    assert plan.arq_to_stop == ["dograh-arq@2.service", "dograh-arq@3.service"]
    assert plan.to_start == []


def test_bare_scale_applies_the_config(settings: config.Settings) -> None:
    current = fleet(range(8000, 8002), range(1, 6))
    desired = desired_fleet(settings, current, None, None)
    assert desired.api_ports == frozenset(range(8000, 8004))
    assert desired.arq_indices == frozenset({1, 2})


def test_first_scale_takes_arq_workers_from_config(settings: config.Settings) -> None:
    empty = fleet(range(0), range(0), frozenset())
    desired = desired_fleet(settings, empty, 3, None)
    assert desired.arq_indices == frozenset({1, 2})
    assert desired.singletons == BOTH
    assert Plan(empty, desired).singletons_to_start == sorted(BOTH)


def test_disabled_singleton_is_stopped(tmp_path: Path) -> None:
    path = tmp_path / "dograh.env"
    path.write_text("ENABLE_ARI_MANAGER=false\n")
    settings = config.load(path)
    current = fleet(range(8000, 8001))
    plan = Plan(current, desired_fleet(settings, current, 1, None))
    assert plan.singletons_to_stop == ["dograh-ari-manager.service"]


@pytest.mark.parametrize(("api", "arq", "message"), [
    (0, None, "API worker count must be 1..64"),
    (65, None, "API worker count must be 1..64"),
    (2, 33, "ARQ worker count must be 0..32"),
    (2, -1, "ARQ worker count must be 0..32"),
])
def test_counts_out_of_range(settings: config.Settings, api: int, arq: int | None,
                             message: str) -> None:
    with pytest.raises(DograhError, match=message):
        desired_fleet(settings, fleet(range(0)), api, arq)


def test_deploy_moves_to_the_other_band_and_back(settings: config.Settings) -> None:
    lower = fleet(range(8000, 8004), range(1, 2))
    upper = desired_fleet(settings, lower, 4, None, switch_band=True)
    assert upper.api_ports == frozenset(range(8100, 8104))
    plan = Plan(lower, upper)
    assert plan.api_to_start == [f"dograh-api@{p}.service" for p in range(8100, 8104)]
    assert plan.api_to_stop == [f"dograh-api@{p}.service" for p in range(8000, 8004)]
    assert desired_fleet(settings, upper, 4, None, switch_band=True).api_ports == frozenset(
        range(8000, 8004))


def test_scaling_stays_in_the_current_band(settings: config.Settings) -> None:
    upper = fleet(range(8100, 8102))
    assert desired_fleet(settings, upper, 3, None).api_ports == frozenset({8100, 8101, 8102})
