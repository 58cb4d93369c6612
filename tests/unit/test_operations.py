"""The order of operations behind every verb and every rollback, on a fake host.

The fake (fake_host.py) flags two rules as they happen: nginx never sends to a
worker before it is READY, and no API worker stops while nginx sends to it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from dograh_systemd import config, modes, paths
from dograh_systemd.context import Context
from dograh_systemd.errors import DograhError
from dograh_systemd.facts import gather
from dograh_systemd.host.commands import Completed
from dograh_systemd.modes.mode import Answer, Change
from dograh_systemd.record import Phase
from dograh_systemd.roles import ROLES, Kind, Role
from dograh_systemd.worker.contract import Load

from .conftest import context
from .fake_host import CONFIG, FakeHost, Killed

API = [f"dograh-api@{port}.service" for port in range(8000, 8010)]
UPPER = [f"dograh-api@{port}.service" for port in range(8100, 8110)]
SINGLETONS = ["dograh-ari-manager.service", "dograh-campaign-orchestrator.service"]


def whole_fleet(api: list[str]) -> list[str]:
    return sorted([*api, "dograh-arq@1.service", *SINGLETONS, paths.METRICS_TIMER])


def scale(host: FakeHost, workers: int | None, drain: float | None = 300,
          pools: dict[str, int] | None = None, messages: list[str] | None = None,
          stage: bool = False) -> Answer:
    ctx = context(host, messages)
    return modes.choose(ctx.settings).scale(ctx, Change(api_workers=workers, pools=pools or {},
                                      drain_timeout=drain, stage=stage))


def restart(host: FakeHost, drain: float | None = 300,
            messages: list[str] | None = None) -> Answer:
    ctx = context(host, messages)
    return modes.choose(ctx.settings).restart(ctx, Change(drain_timeout=drain))


def resume(host: FakeHost, messages: list[str] | None = None) -> Answer:
    ctx = context(host, messages)
    return modes.choose(ctx.settings).resume(ctx, switched=False)


def status(host: FakeHost) -> Answer:
    ctx = context(host)
    return modes.choose(ctx.settings).status(ctx)


def record(host: FakeHost) -> dict[str, Any]:
    return json.loads(host.files.read(paths.RECORD) or "{}")


def upstream_text(host: FakeHost) -> str:
    return host.files.read(paths.NGINX_UPSTREAM) or ""


def index(log: list[str], event: str) -> int:
    return log.index(event)


def test_first_scale_starts_everything_then_nginx(host: FakeHost) -> None:
    answer = scale(host, 3)
    assert host.active() == whole_fleet(API[:3])
    assert host.enabled() == host.active()
    assert host.upstream == {("127.0.0.1", p) for p in (8000, 8001, 8002)}
    nginx = index(host.log, "nginx 8000 8001 8002")
    assert all(index(host.log, f"ready {unit}") < nginx for unit in API[:3])
    assert host.violations == []
    assert answer.data["upstream"] == ["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"]
    assert answer.text.startswith("3 API workers (ports 8000-8002), 1 ARQ workers, singletons: "
                                  "dograh-ari-manager.service, dograh-campaign-orchestrator.service"
                                  " (started 6, stopped 0)")
    saved = record(host)
    assert saved["operation"] is None
    assert saved["fleet"]["units"]["api"] == API[:3]


def test_scale_up_weighs_new_workers_by_live_calls(host: FakeHost) -> None:
    scale(host, 2)
    for unit in API[:2]:
        host.running(unit, calls=20)
    messages: list[str] = []
    scale(host, 4, messages=messages)
    assert "127.0.0.1:8002 weight=10" in upstream_text(host)
    assert "127.0.0.1:8000 max_fails" in upstream_text(host)
    assert "nginx upstream dograh_api: ports 8000 8001 8002 (weight 10) 8003 (weight 10)" \
        in messages
    # While weights are uneven a follow-up re-weighs later.
    assert f"systemd-run --unit={paths.REBALANCE_UNIT}-" in " ".join(host.log)
    assert host.violations == []


def test_scale_down_leaves_nginx_first_then_drains_then_stops(host: FakeHost) -> None:
    scale(host, 4)
    for unit in API[2:4]:
        host.running(unit, calls=3)
        host.ending[unit] = host.clock.now + 7
    messages: list[str] = []
    answer = scale(host, 2, messages=messages)
    nginx = index(host.log, "nginx 8000 8001")
    assert index(host.log, f"stop {API[2]}") > nginx
    assert not [e for e in host.log if e.startswith("cut ")]
    assert answer.data["cut"] == {"calls": 0, "uncounted": []}
    assert any(m.startswith("drained 2 worker(s) in 7s") for m in messages), messages
    assert host.violations == []


def test_the_drain_waits_for_a_fresh_count_after_nginx_let_go(host: FakeHost) -> None:
    """A zero from a Status line written before nginx let go means nothing."""
    scale(host, 3)
    host.log.clear()
    scale(host, 2)
    nginx = host.clock.now
    stop = index(host.log, f"stop {API[2]}")
    assert stop > index(host.log, "nginx 8000 8001")
    assert host.clock.now - nginx >= 0  # the fake clock only moves forward
    messages: list[str] = []
    scale(host, 3)
    host.log.clear()
    before = host.clock.now
    scale(host, 2, messages=messages)
    assert host.clock.now - before >= 0.45, "stopped on a Status line older than the switch"


def test_a_drain_timeout_cuts_and_says_so(host: FakeHost) -> None:
    scale(host, 3)
    host.running(API[2], calls=4)
    answer = scale(host, 2, drain=3)
    assert answer.data["cut"]["calls"] == 4
    assert f"cut 4 calls of {API[2]}" in host.log
    assert "the drain timeout cut 4 live call(s)" in answer.text


def test_a_worker_without_a_status_line_is_never_taken_for_idle(host: FakeHost) -> None:
    scale(host, 3)
    host.units[API[2]].published = False
    messages: list[str] = []
    answer = scale(host, 2, drain=3, messages=messages)
    assert "draining dograh-api@8002.service: no Status line yet (0s of 3s)" in messages
    assert ("drain timeout after 3s: stopping 1 worker(s) with 0 live call(s); the app could "
            "not count the calls of dograh-api@8002.service (no Status line yet)") in messages
    assert answer.data["cut"] == {"calls": 0,
                                  "uncounted": ["dograh-api@8002.service (no Status line yet)"]}


def test_the_apps_own_count_holds_a_worker_after_its_sockets_closed(host: FakeHost) -> None:
    """A call's post-call work (a recording upload) keeps it in the app's registry."""
    scale(host, 3)
    host.units[API[2]].load = Load(websockets=0, requests=0, app_calls=1)
    host.ending[API[2]] = host.clock.now + 9
    messages: list[str] = []
    answer = scale(host, 2, messages=messages)
    assert any(m.startswith("draining dograh-api@8002.service: 1 calls (app), 0 websockets, "
                            "0 requests in flight") for m in messages), messages
    assert any(m.startswith("drained 1 worker(s) in 9s") for m in messages), messages
    assert answer.data["cut"] == {"calls": 0, "uncounted": []}


def test_a_failed_read_of_the_apps_count_is_never_zero(host: FakeHost) -> None:
    scale(host, 3)
    host.units[API[2]].load = Load(websockets=0, requests=0, app_error="HTTP 503")
    messages: list[str] = []
    answer = scale(host, 2, drain=5, messages=messages)
    assert any(m.startswith("draining dograh-api@8002.service: app calls unknown (HTTP 503)")
               for m in messages), messages
    assert "drain timeout after 5s: stopping 1 worker(s) with 0 live call(s); the app could " \
           "not count the calls of dograh-api@8002.service (HTTP 503)" in messages
    assert answer.data["cut"]["uncounted"] == ["dograh-api@8002.service (HTTP 503)"]


def test_no_drain_stops_at_once(host: FakeHost) -> None:
    scale(host, 3)
    host.running(API[2], calls=4)
    scale(host, 2, drain=None)
    assert f"cut 4 calls of {API[2]}" in host.log
    assert host.violations == []


def test_restart_switches_bands_then_rolls_the_rest(host: FakeHost) -> None:
    scale(host, 2)
    host.log.clear()
    restart(host)
    log = host.log
    nginx = index(log, "nginx 8100 8101")
    assert index(log, f"ready {UPPER[0]}") < nginx < index(log, f"stop {API[0]}")
    # The others restart after the API band moved, one at a time.
    assert nginx < index(log, "restart dograh-arq@1.service")
    for unit in SINGLETONS:
        assert index(log, f"stop {API[1]}") < index(log, f"restart {unit}")
    assert host.active() == whole_fleet(UPPER[:2])
    assert host.violations == []
    restart(host)
    assert host.upstream == {("127.0.0.1", 8000), ("127.0.0.1", 8001)}


def test_a_stopped_fleet_stays_stopped_on_restart(host: FakeHost) -> None:
    scale(host, 2)
    for unit in host.units.values():
        unit.active, unit.sub = "inactive", "dead"
    host.log.clear()
    answer = restart(host)
    assert answer.text == "the fleet is stopped; its units are updated"
    assert not [e for e in host.log if e.startswith(("start ", "restart "))]


def test_a_deploy_runs_migrations_first(host: FakeHost) -> None:
    host.configure("FASTAPI_WORKERS=2\nDOGRAH_MIGRATE_COMMAND=python -m alembic upgrade head\n")
    scale(host, 2)
    host.log.clear()
    restart(host)
    migrate = index(host.log, "reload-or-restart dograh-migrate.service")
    assert migrate < index(host.log, f"start {UPPER[0]}")


def test_a_worker_that_fails_rolls_back_units_too(host: FakeHost) -> None:
    scale(host, 2)
    template = paths.UNIT_DIR / "dograh-api@.service"
    working = host.files.read(template)
    upstream = upstream_text(host)
    host.configure("FASTAPI_WORKERS=2\nARQ_WORKERS=1\nDOGRAH_APP=api.app:aplication\n")
    host.failing.update(UPPER)
    with pytest.raises(DograhError, match=r"dograh-api@8100.service failed to start; "
                                          r"journal: .*\(rolled back\)"):
        scale(host, 3)
    # The healthy band serves on, with the unit file it started from.
    assert host.files.read(template) == working
    assert upstream_text(host) == upstream
    assert host.active() == whole_fleet(API[:2])
    assert not [unit for unit in UPPER if unit in host.enabled()]
    saved = record(host)
    assert saved["operation"] is None and saved["fleet"]["units"]["api"] == API[:2]
    assert host.violations == []


def test_a_failed_first_scale_leaves_nothing(host: FakeHost) -> None:
    host.failing.add(API[1])
    with pytest.raises(DograhError, match="rolled back"):
        scale(host, 2)
    assert host.active() == []
    assert host.enabled() == []
    assert not host.files.exists(paths.UNIT_DIR / "dograh-api@.service")


def test_changed_definitions_roll_every_worker_on_scale(host: FakeHost) -> None:
    scale(host, 2)
    host.configure("FASTAPI_WORKERS=2\nARQ_WORKERS=1\nDATABASE_URL=postgresql://elsewhere/x\n")
    messages: list[str] = []
    scale(host, 3, messages=messages)
    assert host.upstream == {("127.0.0.1", p) for p in (8100, 8101, 8102)}
    assert host.active() == whole_fleet(UPPER[:3])
    assert "restart dograh-arq@1.service" in host.log
    assert any("moves onto them" in m for m in messages)


def test_unchanged_definitions_scale_in_place(host: FakeHost) -> None:
    scale(host, 2)
    host.log.clear()
    scale(host, 3)
    assert f"start {API[2]}" in host.log
    assert not [e for e in host.log if e.startswith(("restart", "stop"))]


def test_nginx_broken_elsewhere_changes_nothing(host: FakeHost) -> None:
    scale(host, 2)
    host.log.clear()
    host.nginx_tests_fail = True
    with pytest.raises(DograhError, match="nginx -t failed"):
        scale(host, 4)
    assert host.log == []


def test_a_failed_nginx_test_puts_every_file_back(host: FakeHost) -> None:
    """nginx -t fails after the new upstream is written: the old one goes back, and the
    scale rolls back."""
    scale(host, 2)
    before = upstream_text(host)
    calls = iter(range(100))
    real = host.run_command

    def nginx_fails_once_written(argv: Any, timeout: float | None = None) -> Any:
        if list(argv[:2]) == ["nginx", "-t"] and next(calls) == 1:
            return Completed(1, "", "nginx: [emerg] host not found in upstream\n")
        return real(argv, timeout)

    host.run = nginx_fails_once_written  # type: ignore[method-assign]
    host.systemd.run = nginx_fails_once_written
    with pytest.raises(DograhError, match="host not found in upstream"):
        scale(host, 3)
    assert upstream_text(host) == before
    assert host.active() == whole_fleet(API[:2])


def test_a_rollback_installs_the_nginx_files_it_recorded(host: FakeHost) -> None:
    """Resuming and rolling back use the nginx text the operation recorded, never a render
    of today's settings."""
    scale(host, 2)
    host.kill_at = lambda event: event == f"ready {API[2]}"
    host.kill_at = lambda event: event.startswith("write /etc/nginx/dograh/upstream.conf")
    with pytest.raises(Killed):
        scale(host, 3)
    host.revive()
    op = record(host)["operation"]
    recorded = op["nginx"][str(paths.NGINX_UPSTREAM)]
    assert "127.0.0.1:8002" in recorded
    # The config changes meanwhile: the resumed switch still installs what was recorded.
    host.configure("FASTAPI_WORKERS=2\nARQ_WORKERS=1\nDOGRAH_NGINX_LOCATION=/elsewhere/\n")
    resume(host)
    assert upstream_text(host) == recorded
    assert "location /api/ {" in (host.files.read(paths.NGINX_SITE) or "")


def test_nginx_reloads_after_a_kill_between_its_files_and_its_reload(host: FakeHost) -> None:
    scale(host, 2)
    host.kill_at = lambda event: event == "write /etc/nginx/dograh/upstream.conf"
    with pytest.raises(Killed):
        scale(host, 3)
    host.revive()
    # The file was being replaced when the kill came: a later command reloads nginx
    # even though the files on disk are already the new ones.
    host.log.clear()
    resume(host)
    assert "nginx 8000 8001 8002" in host.log
    assert host.upstream == {("127.0.0.1", p) for p in (8000, 8001, 8002)}


def fleet_of_two(tmp: Path, rolling: bool) -> FakeHost:
    """A fresh host with 2 API workers holding calls; with ``rolling``, the config
    has changed since (a new DOGRAH_APP), so a scale rolls every worker."""
    host = FakeHost(tmp)
    base = "FASTAPI_WORKERS=2\nARQ_WORKERS=1\n"
    host.configure(base)
    scale(host, 2)
    if rolling:
        host.configure(base + "DOGRAH_APP=api.app:other\n")
    for unit in API[:2]:
        host.running(unit, calls=2)
        host.ending[unit] = host.clock.now + 4
    host.log.clear()
    return host


def run_verb(host: FakeHost, verb: str) -> None:
    if verb == "restart":
        restart(host)
    elif verb == "resume":
        resume(host)
    else:
        scale(host, 3)


@pytest.mark.parametrize("verb", ["restart", "scale"])
@pytest.mark.parametrize("next_command", ["restart", "scale", "resume"])
def test_killed_at_any_step_is_finished_by_the_next_command(
        tmp_path: Path, verb: str, next_command: str) -> None:
    rehearsal = fleet_of_two(tmp_path / "rehearsal", rolling=verb == "scale")
    run_verb(rehearsal, verb)
    events = [e for e in rehearsal.log if not e.startswith(("ready ", "failed ", "cut "))]
    assert len(events) > 20
    for step, event in enumerate(events):
        host = fleet_of_two(tmp_path / f"{step}", rolling=verb == "scale")
        seen = iter(range(len(events)))
        host.kill_at = lambda text, step=step, seen=seen: next(seen) == step
        with pytest.raises(Killed):
            run_verb(host, verb)
        host.revive()
        begun = record(host)["operation"] is not None
        run_verb(host, next_command)
        ports = {int(unit.split("@")[1].split(".")[0]) for unit in host.active()
                 if unit.startswith("dograh-api@")}
        where = f"killed at step {step} ({event})"
        assert {("127.0.0.1", p) for p in ports} == host.upstream, where
        assert len({port // 100 for port in ports}) == 1, where  # one band
        assert not [e for e in host.log if e.startswith("cut ")], where
        assert host.violations == [], where
        found = status(host)
        assert found.data["mismatches"] == [], (where, found.data["mismatches"])
        # Killed before it began, a scale onto changed definitions leaves them to the
        # next scale or restart: resume finishes what began, and nothing else.
        if begun or next_command != "resume":
            assert found.data["pending"] == [], (where, found.data["pending"])


def test_status_names_an_interrupted_operation_and_changes_nothing(host: FakeHost) -> None:
    scale(host, 2)
    host.kill_at = lambda text: text == f"stop {API[0]}"
    with pytest.raises(Killed):
        restart(host)
    host.revive()
    assert record(host)["operation"]["phase"] == Phase.STOP.value
    host.log.clear()
    before = host.files.read(paths.RECORD)
    found = status(host)
    assert found.code == 1
    assert found.data["mismatches"][0] == ("an interrupted restart stopped at its stop phase; "
                                           "finish it with: dograhctl resume (as root)")
    assert host.log == [] and host.files.read(paths.RECORD) == before
    messages: list[str] = []
    resume(host, messages)
    assert messages[0].startswith("finishing an interrupted restart")
    assert host.active() == whole_fleet(UPPER[:2])
    assert "restart dograh-arq@1.service" in host.log


def test_a_staged_scale_is_finished_by_resume(host: FakeHost) -> None:
    scale(host, 2)
    answer = scale(host, 3, stage=True)
    assert answer.text.startswith("staged: ")
    assert host.upstream == {("127.0.0.1", 8000), ("127.0.0.1", 8001)}
    assert status(host).data["mismatches"] == [
        "a staged scale waits at its switch; finish it with: dograhctl resume"]
    resume(host)
    assert host.upstream == {("127.0.0.1", p) for p in (8000, 8001, 8002)}


def test_status_names_an_instance_enabled_by_hand(host: FakeHost) -> None:
    scale(host, 2)
    host.running("dograh-api@8005.service")
    assert status(host).data["mismatches"] == [
        f"dograh-api@8005.service runs but is not part of the fleet ({paths.RECORD})"]


def test_status_names_an_upstream_file_that_is_not_the_records(host: FakeHost) -> None:
    scale(host, 2)
    path = host.files.path(paths.NGINX_UPSTREAM)
    path.write_text(path.read_text().replace("8001", "8009"))
    assert status(host).data["mismatches"] == [
        f"{paths.NGINX_UPSTREAM} differs from the fleet record; dograhctl rebalance rewrites it"]


def test_hand_made_instance_names_are_left_alone(host: FakeHost) -> None:
    host.running("dograh-arq@reports.service")
    scale(host, 2)
    scale(host, 2, pools={"arq": 0})
    assert "dograh-arq@reports.service" in host.active()
    assert "stop dograh-arq@1.service" in host.log


def test_rebalance_reloads_only_when_weights_change(host: FakeHost) -> None:
    scale(host, 2)
    ctx = context(host)
    host.log.clear()
    assert modes.choose(ctx.settings).rebalance(ctx).text == "2 API workers, weights even"
    assert not [e for e in host.log if e.startswith("nginx ")]
    host.running(API[0], calls=30)
    ctx = context(host)
    assert modes.choose(ctx.settings).rebalance(ctx).text == "2 API workers, weights uneven"
    assert "nginx 8000 8001" in host.log
    assert "127.0.0.1:8001 weight=10" in upstream_text(host)


def test_a_third_singleton_is_one_table_entry(host: FakeHost) -> None:
    recorder = Role(name="call-recorder", kind=Kind.SINGLETON, unit="dograh-call-recorder",
                    template="dograh-singleton.service.j2", title="Dograh call recorder",
                    enable_key="ENABLE_CALL_RECORDER",
                    command_key="DOGRAH_CALL_RECORDER_COMMAND",
                    example_command="/usr/bin/sleep infinity",
                    dograh_command="python -m api.services.recorder")

    def ctx_with_recorder() -> Context:
        settings = config.load(CONFIG, roles=(*ROLES, recorder), files=host.files,
                               machine=host.machine)
        return Context(settings, [].append, host, gather(host))

    ctx = ctx_with_recorder()
    modes.choose(ctx.settings).scale(ctx, Change(api_workers=2))
    unit = host.files.read(paths.UNIT_DIR / "dograh-call-recorder.service") or ""
    assert "Description=Dograh call recorder" in unit
    assert "ExecStart=/usr/bin/sleep infinity" in unit
    assert "SyslogIdentifier=dograh-call-recorder" in unit
    assert "dograh-call-recorder.service" in host.active()
    host.configure("FASTAPI_WORKERS=2\nARQ_WORKERS=1\nENABLE_CALL_RECORDER=false\n")
    ctx = ctx_with_recorder()
    modes.choose(ctx.settings).scale(ctx, Change(api_workers=2))
    assert "dograh-call-recorder.service" not in host.active()


def test_a_worker_that_never_becomes_ready_times_out_and_rolls_back(host: FakeHost) -> None:
    scale(host, 2)
    host.hanging.add(API[2])
    messages: list[str] = []
    started = host.clock.now
    with pytest.raises(DograhError, match=r"timed out after 100s waiting for READY from "
                                          r"dograh-api@8002.service \(rolled back\)"):
        scale(host, 3, messages=messages)
    assert host.clock.now - started >= 100
    assert messages.count("waiting for READY: 0/1 ready") == 1  # progress, said once
    assert host.active() == whole_fleet(API[:2])
    assert host.upstream == {("127.0.0.1", 8000), ("127.0.0.1", 8001)}


def test_a_record_of_the_release_before_reads_as_this_one(host: FakeHost) -> None:
    """0.2.0 wrote format 1: no nginx files in its operations, no base port or release."""
    scale(host, 2)
    data = record(host)
    data["format"] = 1
    for fleet in (data["fleet"],):
        for key in ("base_port", "release", "previous_release"):
            del fleet[key]
    host.files.write_atomic(paths.RECORD, json.dumps(data))
    found = status(host)
    assert found.code == 0, found.data["mismatches"]
    scale(host, 3)
    assert record(host)["format"] == 2


def test_a_long_drain_reports_every_five_seconds(host: FakeHost) -> None:
    scale(host, 3)
    host.running(API[2], calls=1)
    host.ending[API[2]] = host.clock.now + 13
    messages: list[str] = []
    scale(host, 2, messages=messages)
    draining = [m for m in messages if m.startswith("draining dograh-api@8002.service")]
    assert [m.rsplit("(", 1)[1] for m in draining] == ["0s of 300s)", "5s of 300s)",
                                                       "10s of 300s)"], draining
    assert "drained 1 worker(s) in 13s" in messages


def test_a_stopped_nginx_is_left_stopped_and_reads_the_files_when_it_starts(
        host: FakeHost) -> None:
    scale(host, 2)
    host.nginx_running = False
    host.log.clear()
    scale(host, 3)
    assert not [e for e in host.log if e.startswith("nginx ")]
    assert "127.0.0.1:8002" in upstream_text(host)
    assert not host.files.exists(paths.NGINX_RELOAD_PENDING)


def test_taking_the_stock_default_site_is_undone_when_nginx_refuses(host: FakeHost) -> None:
    files = host.files
    files.write_atomic(paths.NGINX_STOCK_DEFAULT, "server { listen 80 default_server; }\n")
    files.link(paths.NGINX_STOCK_DEFAULT_LINK, paths.NGINX_STOCK_DEFAULT)
    checksum = hashlib.md5(b"server { listen 80 default_server; }\n").hexdigest()
    host.commands["dpkg-query"] = lambda args: Completed(
        0, "nginx-common: /etc/nginx/sites-available/default\n" if "--search" in args
        else f" /etc/nginx/sites-available/default {checksum}\n", "")
    scale(host, 2)
    assert not files.is_link(paths.NGINX_STOCK_DEFAULT_LINK)  # the site took its place
    assert "listen 80 default_server;" in (files.read(paths.NGINX_SITE) or "")
    ctx = context(host)
    host.nginx_tests_fail = True
    with pytest.raises(DograhError, match="nginx -t failed"):
        ctx.nginx.apply({paths.NGINX_UPSTREAM: upstream_text(host).replace("8001", "8009")},
                        remove=(paths.NGINX_SITE_LINK,))
    assert files.link_target(paths.NGINX_SITE_LINK) == paths.NGINX_SITE  # put back
    assert "8001" in upstream_text(host) and "8009" not in upstream_text(host)


def test_removing_the_site_over_a_broken_admin_config_warns_and_does_not_reload(
        host: FakeHost) -> None:
    scale(host, 2)
    host.nginx_tests_fail = True
    host.log.clear()
    code, _, err = host.dograhctl("uninstall")
    assert code == 0
    assert "warning: nginx was not reloaded and still serves the old Dograh site" in err
    assert not [e for e in host.log if e.startswith("nginx ")]
    assert not host.files.exists(paths.NGINX_SITE)


def test_a_rollback_killed_midway_is_finished_as_a_rollback(host: FakeHost) -> None:
    scale(host, 2)
    upstream = upstream_text(host)
    host.configure("FASTAPI_WORKERS=2\nARQ_WORKERS=1\nDOGRAH_APP=api.app:aplication\n")
    host.failing.update(UPPER)
    host.kill_at = lambda event: event == f"stop {UPPER[0]}"  # the rollback's first step
    with pytest.raises(Killed):
        scale(host, 3)
    host.revive()
    op = record(host)["operation"]
    assert op["verb"] == "rollback" and op["started"] > 0
    assert op["nginx"][str(paths.NGINX_UPSTREAM)] == upstream
    assert [line for line in status(host).data["mismatches"] if "interrupted" in line] == [
        "an interrupted rollback stopped at its stop phase; finish it with: dograhctl resume "
        "(as root)"]
    resume(host)
    assert host.active() == whole_fleet(API[:2])
    assert upstream_text(host) == upstream
    assert record(host)["operation"] is None
    assert host.violations == []
