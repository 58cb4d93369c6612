from __future__ import annotations

from pathlib import Path

import pytest

from dograh_systemd import config
from dograh_systemd.errors import DograhError
from dograh_systemd.plan import Request, operation
from dograh_systemd.record import Fleet, Operation
from dograh_systemd.upstream import Member

SINGLETONS = ("dograh-ari-manager.service", "dograh-campaign-orchestrator.service")
DEFINITIONS = {"api": "a1", "arq": "b1", "ari-manager": "c1", "campaign-orchestrator": "d1"}


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    path = tmp_path / "dograh.env"
    path.write_text("FASTAPI_WORKERS=4\nARQ_WORKERS=2\n")
    return config.load(path)


def fleet(ports: range, arq: range = range(0), weights: dict[int, int] | None = None) -> Fleet:
    return Fleet(units={"api": tuple(f"dograh-api@{p}.service" for p in ports),
                        "arq": tuple(f"dograh-arq@{i}.service" for i in arq),
                        "ari-manager": SINGLETONS[:1], "campaign-orchestrator": SINGLETONS[1:]},
                 upstream=tuple(Member("127.0.0.1", p, (weights or {}).get(p, 1)) for p in ports),
                 definitions=DEFINITIONS)


def plan(settings: config.Settings, current: Fleet, request: Request,
         definitions: dict[str, str] = DEFINITIONS,
         live: dict[int, int] | None = None) -> Operation:
    return operation(settings, current, request, {}, {}, definitions, live or {}, 0.0)


def started(op: Operation) -> list[str]:
    return sorted(set(op.target.all_units()) - set(op.previous.all_units()))


def stopped(op: Operation) -> list[str]:
    return sorted(set(op.previous.all_units()) - set(op.target.all_units()))


def test_scale_up_starts_only_new_instances(settings: config.Settings) -> None:
    op = plan(settings, fleet(range(8000, 8002), range(1, 2)), Request("scale", 6))
    assert started(op) == [f"dograh-api@{p}.service" for p in range(8002, 8006)]
    assert stopped(op) == []
    assert op.target.of("arq") == ("dograh-arq@1.service",)  # ARQ count kept as it is
    assert op.roll == ()


def test_scale_down_stops_the_highest_ports(settings: config.Settings) -> None:
    op = plan(settings, fleet(range(8000, 8006), range(1, 4)),
              Request("scale", 2, {"arq": 1}))
    assert stopped(op) == sorted([f"dograh-api@{p}.service" for p in range(8002, 8006)]
                                 + ["dograh-arq@2.service", "dograh-arq@3.service"])
    assert started(op) == []


def test_bare_scale_applies_the_config(settings: config.Settings) -> None:
    op = plan(settings, fleet(range(8000, 8002), range(1, 6)), Request("scale"))
    assert [m.port for m in op.target.upstream] == [8000, 8001, 8002, 8003]
    assert op.target.of("arq") == ("dograh-arq@1.service", "dograh-arq@2.service")


def test_first_scale_takes_arq_workers_from_config(settings: config.Settings) -> None:
    op = plan(settings, Fleet(), Request("scale", 3))
    assert op.target.of("arq") == ("dograh-arq@1.service", "dograh-arq@2.service")
    assert op.target.of("ari-manager") == SINGLETONS[:1]
    assert op.roll == ()


def test_arq_workers_scaled_to_zero_stay_at_zero(settings: config.Settings) -> None:
    current = fleet(range(8000, 8002))
    assert plan(settings, current, Request("scale", 3)).target.of("arq") == ()


def test_disabled_singleton_is_stopped(tmp_path: Path) -> None:
    path = tmp_path / "dograh.env"
    path.write_text("ENABLE_ARI_MANAGER=false\n")
    op = plan(config.load(path), fleet(range(8000, 8001)), Request("scale", 1))
    assert stopped(op) == ["dograh-ari-manager.service"]


@pytest.mark.parametrize(("api", "arq", "message"), [
    (65, None, "API worker count must be 1..64"),
    (2, 33, "ARQ worker count must be 0..32"),
    (2, -1, "ARQ worker count must be 0..32"),
])
def test_counts_out_of_range(settings: config.Settings, api: int, arq: int | None,
                             message: str) -> None:
    with pytest.raises(DograhError, match=message):
        plan(settings, Fleet(), Request("scale", api, {} if arq is None else {"arq": arq}))


def test_deploy_moves_to_the_other_band_and_back(settings: config.Settings) -> None:
    lower = fleet(range(8000, 8004), range(1, 2))
    op = plan(settings, lower, Request("restart", 4))
    assert [m.port for m in op.target.upstream] == list(range(8100, 8104))
    assert stopped(op) == [f"dograh-api@{p}.service" for p in range(8000, 8004)]
    assert op.roll == ("api", "arq", "ari-manager", "campaign-orchestrator")
    back = plan(settings, op.target, Request("restart", 4))
    assert [m.port for m in back.target.upstream] == list(range(8000, 8004))


def test_scaling_stays_in_the_current_band(settings: config.Settings) -> None:
    op = plan(settings, fleet(range(8100, 8102)), Request("scale", 3))
    assert [m.port for m in op.target.upstream] == [8100, 8101, 8102]


def test_changed_definitions_roll_only_their_roles(settings: config.Settings) -> None:
    changed = {**DEFINITIONS, "arq": "b2"}
    op = plan(settings, fleet(range(8000, 8002), range(1, 2)), Request("scale", 2), changed)
    assert op.roll == ("arq",)
    assert [m.port for m in op.target.upstream] == [8000, 8001]  # the API band stays
    op = plan(settings, fleet(range(8000, 8002), range(1, 2)), Request("scale", 3),
              {**DEFINITIONS, "api": "a2"})
    assert op.roll == ("api",)
    assert [m.port for m in op.target.upstream] == [8100, 8101, 8102]


def test_a_moved_base_port_starts_a_band_there(tmp_path: Path) -> None:
    path = tmp_path / "dograh.env"
    path.write_text("UVICORN_BASE_PORT=9000\n")
    op = plan(config.load(path), fleet(range(8000, 8002)), Request("scale", 2))
    assert [m.port for m in op.target.upstream] == [9000, 9001]
    assert stopped(op) == ["dograh-api@8000.service", "dograh-api@8001.service"]


def test_new_members_are_weighed_and_kept_members_keep_weights(
        settings: config.Settings) -> None:
    op = plan(settings, fleet(range(8000, 8002)), Request("scale", 4),
              live={8000: 20, 8001: 20})
    assert {m.port: m.weight for m in op.target.upstream} == {8000: 1, 8001: 1, 8002: 10,
                                                              8003: 10}
    same = plan(settings, fleet(range(8000, 8002), weights={8001: 7}), Request("scale", 2),
                live={8000: 0, 8001: 30})
    assert {m.port: m.weight for m in same.target.upstream} == {8000: 1, 8001: 7}
