"""The order of operations behind every verb and every rollback, on a fake host.

The fake (fake_system.py) flags two rules as they happen: nginx never sends to
a worker before it is READY, and no API worker stops while nginx sends to it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dograh_systemd import config, drain, paths, status, verbs
from dograh_systemd.context import Context
from dograh_systemd.errors import DograhError
from dograh_systemd.record import Phase
from dograh_systemd.roles import ROLES, Kind, Role
from dograh_systemd.worker.contract import Load

from .fake_system import FakeSystem, Killed, context, point_paths_at

API = [f"dograh-api@{port}.service" for port in range(8000, 8010)]
UPPER = [f"dograh-api@{port}.service" for port in range(8100, 8110)]
SINGLETONS = ["dograh-ari-manager.service", "dograh-campaign-orchestrator.service"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    point_paths_at(monkeypatch, tmp_path / "root")
    path = tmp_path / "dograh.env"
    path.write_text("FASTAPI_WORKERS=2\nARQ_WORKERS=1\n")
    return path


@pytest.fixture
def system() -> FakeSystem:
    return FakeSystem()


def whole_fleet(api: list[str]) -> list[str]:
    return sorted([*api, "dograh-arq@1.service", *SINGLETONS])


def ctx_for(system: FakeSystem, env: Path, messages: list[str] | None = None) -> Context:
    sink = messages if messages is not None else []
    return context(system, config.load(env), sink.append)


def index(log: list[str], event: str) -> int:
    return log.index(event)


def test_first_scale_starts_everything_then_nginx(system: FakeSystem, env: Path) -> None:
    outcome = verbs.scale(ctx_for(system, env), 3, {}, False, 300)
    assert system.active() == whole_fleet(API[:3])
    assert system.enabled() == system.active()
    assert system.upstream == {8000, 8001, 8002}
    nginx = index(system.log, "nginx 8000 8001 8002")
    assert all(index(system.log, f"ready {unit}") < nginx for unit in API[:3])
    assert system.violations == []
    assert outcome.operation.target.of("api") == tuple(API[:3])
    record = json.loads(paths.RECORD.read_text())
    assert record["operation"] is None
    assert record["fleet"]["units"]["api"] == API[:3]


def test_scale_up_weighs_new_workers_by_live_calls(system: FakeSystem, env: Path) -> None:
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    for unit in API[:2]:
        system.running(unit, calls=20)
    messages: list[str] = []
    verbs.scale(ctx_for(system, env, messages), 4, {}, False, 300)
    upstream = paths.NGINX_UPSTREAM.read_text()
    assert "127.0.0.1:8002 weight=10" in upstream and "127.0.0.1:8000 max_fails" in upstream
    assert "nginx upstream dograh_api: ports 8000 8001 8002 (weight 10) 8003 (weight 10)" \
        in messages
    # While weights are uneven a follow-up re-weighs later.
    assert any(event.startswith("systemd-run --unit=dograh-rebalance-") for event in system.log)
    assert system.violations == []


def test_scale_down_leaves_nginx_first_then_drains_then_stops(system: FakeSystem,
                                                               env: Path) -> None:
    verbs.scale(ctx_for(system, env), 4, {}, False, 300)
    for unit in API[2:4]:
        system.running(unit, calls=3)
        system.ending[unit] = system.clock.now + 7
    messages: list[str] = []
    outcome = verbs.scale(ctx_for(system, env, messages), 2, {}, False, 300)
    nginx = index(system.log, "nginx 8000 8001")
    assert index(system.log, f"stop {API[2]}") > nginx
    assert not [e for e in system.log if e.startswith("cut ")]
    assert outcome.cut.calls == 0
    assert any(m.startswith("drained 2 worker(s) in 7s") for m in messages), messages
    assert system.violations == []


def test_a_drain_timeout_cuts_and_says_so(system: FakeSystem, env: Path) -> None:
    verbs.scale(ctx_for(system, env), 3, {}, False, 300)
    system.running(API[2], calls=4)
    outcome = verbs.scale(ctx_for(system, env), 2, {}, False, 3)
    assert outcome.cut.calls == 4
    assert f"cut 4 calls of {API[2]}" in system.log


def test_the_apps_own_count_holds_a_worker_after_its_sockets_closed(
        system: FakeSystem, env: Path) -> None:
    """A call's post-call work (a recording upload) keeps it in the app's registry."""
    verbs.scale(ctx_for(system, env), 3, {}, False, 300)
    system.units[API[2]].load = Load(websockets=0, requests=0, app_calls=1)
    system.ending[API[2]] = system.clock.now + 9
    messages: list[str] = []
    outcome = verbs.scale(ctx_for(system, env, messages), 2, {}, False, 300)
    assert any(m.startswith("draining dograh-api@8002.service: 1 calls (app), 0 websockets, "
                            "0 requests in flight") for m in messages), messages
    assert any(m.startswith("drained 1 worker(s) in 9s") for m in messages), messages
    assert outcome.cut == drain.Cut()


def test_a_failed_read_of_the_apps_count_is_never_zero(system: FakeSystem, env: Path) -> None:
    verbs.scale(ctx_for(system, env), 3, {}, False, 300)
    system.units[API[2]].load = Load(websockets=0, requests=0, app_error="HTTP 503")
    messages: list[str] = []
    outcome = verbs.scale(ctx_for(system, env, messages), 2, {}, False, 5)
    assert any(m.startswith("draining dograh-api@8002.service: app calls unknown (HTTP 503)")
               for m in messages), messages
    assert "drain timeout after 5s: stopping 1 worker(s) with 0 live call(s); the app could " \
           "not count the calls of dograh-api@8002.service (HTTP 503)" in messages
    assert outcome.cut.uncounted == ("dograh-api@8002.service (HTTP 503)",)


def test_no_drain_stops_at_once(system: FakeSystem, env: Path) -> None:
    verbs.scale(ctx_for(system, env), 3, {}, False, 300)
    system.running(API[2], calls=4)
    verbs.scale(ctx_for(system, env), 2, {}, False, None)
    assert f"cut 4 calls of {API[2]}" in system.log
    assert system.violations == []


def test_restart_switches_bands_then_rolls_the_rest(system: FakeSystem, env: Path) -> None:
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    system.log.clear()
    verbs.restart(ctx_for(system, env), False, 300)
    log = system.log
    nginx = index(log, "nginx 8100 8101")
    assert index(log, f"ready {UPPER[0]}") < nginx < index(log, f"stop {API[0]}")
    # The others restart after the API band moved, one at a time.
    assert nginx < index(log, "restart dograh-arq@1.service")
    for unit in SINGLETONS:
        assert index(log, f"stop {API[1]}") < index(log, f"restart {unit}")
    assert system.active() == whole_fleet(UPPER[:2])
    assert system.violations == []
    verbs.restart(ctx_for(system, env), False, 300)
    assert system.upstream == {8000, 8001}


def test_a_deploy_runs_migrations_first(system: FakeSystem, env: Path) -> None:
    env.write_text("FASTAPI_WORKERS=2\nDOGRAH_MIGRATE_COMMAND=python -m alembic upgrade head\n")
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    system.log.clear()
    verbs.restart(ctx_for(system, env), False, 300)
    migrate = index(system.log, "reload-or-restart dograh-migrate.service")
    assert migrate < index(system.log, f"start {UPPER[0]}")


def test_a_worker_that_fails_rolls_back_units_too(system: FakeSystem, env: Path) -> None:
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    template = paths.UNIT_DIR / "dograh-api@.service"
    working = template.read_text()
    upstream = paths.NGINX_UPSTREAM.read_text()
    env.write_text(env.read_text() + "DOGRAH_APP=api.app:aplication\n")
    system.failing.update(UPPER)
    with pytest.raises(DograhError, match=r"dograh-api@8100.service failed to start; "
                                          r"journal: .*\(rolled back\)"):
        verbs.scale(ctx_for(system, env), 3, {}, False, 300)
    # The healthy band serves on, with the unit file it started from.
    assert template.read_text() == working
    assert paths.NGINX_UPSTREAM.read_text() == upstream
    assert system.active() == whole_fleet(API[:2])
    assert not [unit for unit in UPPER if unit in system.enabled()]
    record = json.loads(paths.RECORD.read_text())
    assert record["operation"] is None and record["fleet"]["units"]["api"] == API[:2]
    assert system.violations == []


def test_a_failed_first_scale_leaves_nothing(system: FakeSystem, env: Path) -> None:
    system.failing.add(API[1])
    with pytest.raises(DograhError, match="rolled back"):
        verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    assert system.active() == []
    assert system.enabled() == []
    assert not (paths.UNIT_DIR / "dograh-api@.service").exists()


def test_changed_definitions_roll_every_worker_on_scale(system: FakeSystem, env: Path) -> None:
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    env.write_text(env.read_text() + "DATABASE_URL=postgresql://elsewhere/dograh\n")
    messages: list[str] = []
    verbs.scale(ctx_for(system, env, messages), 3, {}, False, 300)
    assert system.upstream == {8100, 8101, 8102}
    assert system.active() == whole_fleet(UPPER[:3])
    assert "restart dograh-arq@1.service" in system.log
    assert any("moves onto them" in m for m in messages)


def test_unchanged_definitions_scale_in_place(system: FakeSystem, env: Path) -> None:
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    system.log.clear()
    verbs.scale(ctx_for(system, env), 3, {}, False, 300)
    assert system.log[:2] == [f"enable {API[2]}", f"start {API[2]}"] or \
        f"start {API[2]}" in system.log
    assert not [e for e in system.log if e.startswith(("restart", "stop"))]


def test_nginx_broken_elsewhere_changes_nothing(system: FakeSystem, env: Path) -> None:
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    system.log.clear()
    system.nginx_tests_fail = True
    with pytest.raises(DograhError, match="nginx -t failed"):
        verbs.scale(ctx_for(system, env), 4, {}, False, 300)
    assert system.log == []


def fleet_of_two(env: Path, rolling: bool) -> FakeSystem:
    """A fresh host with 2 API workers holding calls; with ``rolling``, the config
    has changed since (a new DOGRAH_APP), so a scale rolls every worker."""
    shutil.rmtree(paths.RECORD.parents[3], ignore_errors=True)
    system = FakeSystem()
    base = "FASTAPI_WORKERS=2\nARQ_WORKERS=1\n"
    env.write_text(base)
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    if rolling:
        env.write_text(base + "DOGRAH_APP=api.app:other\n")
    for unit in API[:2]:
        system.running(unit, calls=2)
        system.ending[unit] = system.clock.now + 4
    system.log.clear()
    return system


def run_verb(system: FakeSystem, env: Path, verb: str) -> None:
    if verb == "restart":
        verbs.restart(ctx_for(system, env), False, 300)
    else:
        verbs.scale(ctx_for(system, env), 3, {}, False, 300)


@pytest.mark.parametrize("verb", ["restart", "scale"])
@pytest.mark.parametrize("next_command", ["restart", "scale", "status"])
def test_killed_at_any_step_is_finished_by_the_next_command(
        env: Path, verb: str, next_command: str) -> None:
    rehearsal = fleet_of_two(env, rolling=verb == "scale")
    run_verb(rehearsal, env, verb)
    events = list(rehearsal.log)
    assert len(events) > 10
    for step, event in enumerate(events):
        system = fleet_of_two(env, rolling=verb == "scale")
        seen = iter(range(len(events)))
        system.kill_at = lambda text, step=step, seen=seen: next(seen) == step
        with pytest.raises(Killed):
            run_verb(system, env, verb)
        system.kill_at = lambda text: False
        ctx = ctx_for(system, env)
        if next_command == "status":
            verbs.resume(ctx)
        else:
            run_verb(system, env, next_command)
        ports = {int(unit.split("@")[1].split(".")[0]) for unit in system.active()
                 if unit.startswith("dograh-api@")}
        where = f"killed at step {step} ({event})"
        assert ports == system.upstream, where
        assert len({port // 100 for port in ports}) == 1, where  # one band
        assert not [e for e in system.log if e.startswith("cut ")], where
        assert system.violations == [], where
        fleet_status = status.collect(ctx)
        assert fleet_status.mismatches == [], (where, fleet_status.mismatches)
        assert fleet_status.pending == [], (where, fleet_status.pending)


def test_an_interrupted_restart_is_finished_by_a_plain_resume(system: FakeSystem,
                                                              env: Path) -> None:
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    system.kill_at = lambda text: text == f"stop {API[0]}"
    with pytest.raises(Killed):
        verbs.restart(ctx_for(system, env), False, 300)
    system.kill_at = lambda text: False
    record = json.loads(paths.RECORD.read_text())
    assert record["operation"]["phase"] == Phase.STOP.value
    ctx = ctx_for(system, env)
    assert "an interrupted restart stopped at its stop phase" in status.collect(ctx).mismatches[0]
    messages: list[str] = []
    verbs.resume(ctx_for(system, env, messages))
    assert messages[0].startswith("finishing an interrupted restart")
    assert system.active() == whole_fleet(UPPER[:2])
    assert "restart dograh-arq@1.service" in system.log


def test_status_names_an_instance_enabled_by_hand(system: FakeSystem, env: Path) -> None:
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    system.running("dograh-api@8005.service")
    fleet = status.collect(ctx_for(system, env))
    assert fleet.mismatches == [
        "dograh-api@8005.service runs but is not part of the fleet "
        f"({paths.RECORD})"]


def test_hand_made_instance_names_are_left_alone(system: FakeSystem, env: Path) -> None:
    system.running("dograh-arq@reports.service")
    verbs.scale(ctx_for(system, env), 2, {}, False, 300)
    verbs.scale(ctx_for(system, env), 2, {"arq": 0}, False, 300)
    assert "dograh-arq@reports.service" in system.active()
    assert "stop dograh-arq@1.service" in system.log


def test_a_third_singleton_is_one_table_entry(system: FakeSystem, env: Path) -> None:
    recorder = Role(name="call-recorder", kind=Kind.SINGLETON, unit="dograh-call-recorder",
                    template="dograh-singleton.service.j2", title="Dograh call recorder",
                    enable_key="ENABLE_CALL_RECORDER",
                    command_key="DOGRAH_CALL_RECORDER_COMMAND",
                    example_command="/usr/bin/sleep infinity",
                    dograh_command="python -m api.services.recorder")
    settings = config.load(env, roles=(*ROLES, recorder))
    ctx = context(system, settings, [].append)
    verbs.scale(ctx, 2, {}, False, 300)
    unit = (paths.UNIT_DIR / "dograh-call-recorder.service").read_text()
    assert "Description=Dograh call recorder" in unit
    assert "ExecStart=/usr/bin/sleep infinity" in unit
    assert "SyslogIdentifier=dograh-call-recorder" in unit
    assert "dograh-call-recorder.service" in system.active()
    env.write_text(env.read_text() + "ENABLE_CALL_RECORDER=false\n")
    verbs.scale(context(system, config.load(env, roles=(*ROLES, recorder)), [].append),
                2, {}, False, 300)
    assert "dograh-call-recorder.service" not in system.active()
