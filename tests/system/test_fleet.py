"""dograhctl on real systemd and nginx, in a booted Debian container.

Every assertion is on what systemd, nginx and the workers report or do.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from bench.testbed.container import Container

from .fleet import answering_ports, api, dograhctl, main_pid, reset, snapshot, units, upstream_ports
from .load import Load

pytestmark = pytest.mark.system

SINGLETONS = ["dograh-ari-manager.service", "dograh-campaign-orchestrator.service"]


def test_scale_to_six(container: Container) -> None:
    reset(container, 2)
    dograhctl(container, "scale", "6")
    assert units(container, "dograh-api@*") == api(range(8000, 8006))
    for unit in api(range(8000, 8006)):
        show = container.run("systemctl", "show", "-p", "SubState,StatusText", unit).stdout
        assert "SubState=running" in show
        assert re.search(r"StatusText=\d+ websockets, \d+ requests in flight, \d+ served, "
                         r"loop lag p95 \d+ ms", show), show
    status = container.run("systemctl", "status", "--no-pager", "dograh-api@*").stdout
    assert status.count("Status: \"") == 6
    assert upstream_ports(container) == set(range(8000, 8006))
    assert set(answering_ports(container, 30)) == set(range(8000, 8006))
    for unit in SINGLETONS:
        assert units(container, unit) == [unit]


def test_sixty_calls_balance_across_six_workers(container: Container) -> None:
    # Calls an earlier test left would weigh the upstream; start without them.
    reset(container, 6)
    load = Load(container, "--duration", "1", "--rps", "0", "--call-rate", "0",
                "--call-seconds", "10", "--jitter", "0", "--initial-calls", "60")
    per_port = {int(k): v for k, v in load.warm_calls.items()}
    assert set(per_port) == set(range(8000, 8006)), per_port
    assert sum(per_port.values()) == 60
    assert max(per_port.values()) - min(per_port.values()) <= 1, per_port
    time.sleep(0.5)  # the workers publish a changed STATUS= within 0.1 s
    for port, calls in per_port.items():
        text = container.run("systemctl", "show", "-p", "StatusText", "--value",
                             f"dograh-api@{port}.service").stdout
        assert text.startswith(f"{calls} websockets,"), (port, text)
    assert load.result()["calls"]["closed_early"] == 0


def test_scale_down_and_arq_leave_singletons_alone(container: Container) -> None:
    dograhctl(container, "scale", "6")
    singleton_pids = {unit: main_pid(container, unit) for unit in SINGLETONS}

    dograhctl(container, "scale", "2")
    assert units(container, "dograh-api@*") == api(range(8000, 8002))
    assert upstream_ports(container) == {8000, 8001}
    assert set(answering_ports(container, 10)) == {8000, 8001}

    dograhctl(container, "scale", "2", "--arq", "3")
    assert units(container, "dograh-arq@*") == [f"dograh-arq@{i}.service" for i in (1, 2, 3)]
    assert units(container, "dograh-api@*") == api(range(8000, 8002))
    for unit, pid in singleton_pids.items():
        assert units(container, unit) == [unit]
        assert main_pid(container, unit) == pid, f"{unit} was restarted by scaling"

    status = json.loads(dograhctl(container, "status", "--json").stdout)
    assert status["mismatches"] == []
    assert status["upstream"] == [8000, 8001]
    assert [i["unit"] for i in status["roles"]["arq"]] == [
        f"dograh-arq@{i}.service" for i in (1, 2, 3)]


@pytest.mark.parametrize("args", [["0"], ["-1"], ["abc"], ["10000"], ["3", "--arq", "-2"]])
def test_bad_counts_change_nothing(container: Container, args: list[str]) -> None:
    dograhctl(container, "scale", "2")
    before = snapshot(container)
    result = dograhctl(container, "scale", *args, check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("dograhctl: ")
    assert snapshot(container) == before


def test_port_held_by_another_process_changes_nothing(container: Container) -> None:
    dograhctl(container, "scale", "2")
    container.run("systemd-run", "--unit=port-hog", "python3", "-m", "http.server",
                  "--bind", "127.0.0.1", "8003")
    try:
        container.sh("for i in $(seq 50); do curl -s -o /dev/null localhost:8003 && exit 0;"
                     " sleep 0.1; done; exit 1")
        before = snapshot(container)
        result = dograhctl(container, "scale", "4", check=False)
        assert result.returncode == 1
        assert "port 8003" in result.stderr and "in use" in result.stderr
        assert snapshot(container) == before
    finally:
        container.run("systemctl", "stop", "port-hog")


def test_nginx_broken_elsewhere_changes_nothing(container: Container) -> None:
    dograhctl(container, "scale", "2")
    broken = container.path("/etc/nginx/conf.d/admin-typo.conf")
    broken.write_text("server { listen 81; bogus_directive on; }\n")
    try:
        before = snapshot(container)
        result = dograhctl(container, "scale", "4", check=False)
        assert result.returncode == 1
        assert "nginx -t failed" in result.stderr and "bogus_directive" in result.stderr
        assert snapshot(container) == before
    finally:
        broken.unlink()
    assert set(answering_ports(container, 6)) == {8000, 8001}


def test_bad_config_value_names_key_and_file(container: Container) -> None:
    container.path("/etc/dograh/bad.env").write_text("FASTAPI_WORKERS=many\n")
    before = snapshot(container)
    result = dograhctl(container, "--config", "/etc/dograh/bad.env", "scale", check=False)
    assert result.returncode == 1
    assert "/etc/dograh/bad.env: FASTAPI_WORKERS='many'" in result.stderr
    assert snapshot(container) == before


def test_kill_9_worker_is_back_within_3_seconds(container: Container) -> None:
    dograhctl(container, "scale", "2")
    old = main_pid(container, "dograh-api@8001.service")
    container.run("kill", "-9", str(old))
    started = time.monotonic()
    container.sh("until curl -sf http://127.0.0.1:8001/api/v1/worker >/dev/null; do "
                 "sleep 0.05; done", timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed <= 3, f"worker took {elapsed:.1f}s to serve again"
    assert main_pid(container, "dograh-api@8001.service") not in (0, old)


def test_fleet_survives_reboot(container: Container) -> None:
    dograhctl(container, "scale", "3", "--arq", "2")
    before_units = units(container, "dograh-*")
    container.poweroff()
    container.boot()
    container.sh("until [ \"$(systemctl is-active nginx)\" = active ]; do sleep 0.2; done",
                 timeout=60)
    assert units(container, "dograh-*") == before_units
    assert units(container, "dograh-api@*") == api(range(8000, 8003))
    assert upstream_ports(container) == {8000, 8001, 8002}
    assert set(answering_ports(container, 12)) == {8000, 8001, 8002}
    assert dograhctl(container, "status").returncode == 0


@pytest.mark.parametrize("unit", ["dograh-api@8000.service", "dograh-arq@1.service",
                                  "dograh-ari-manager.service",
                                  "dograh-campaign-orchestrator.service"])
def test_units_are_hardened(container: Container, unit: str) -> None:
    dograhctl(container, "scale", "2", "--arq", "1")
    out = container.run("systemd-analyze", "security", "--no-pager", unit).stdout
    score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
    assert score <= 1.5, out
    assert units(container, unit) == [unit]  # and it still runs


def test_concurrent_runs_are_serialized(container: Container) -> None:
    dograhctl(container, "scale", "2", "--no-drain")
    first = container.popen("dograhctl", "scale", "6")
    time.sleep(0.3)  # the first holds the lock while its workers start
    second = container.popen("dograhctl", "scale", "3", "--no-drain")
    assert first.wait(120) == 0
    assert second.wait(120) == 0
    assert second.stderr is not None
    assert "waiting for another dograhctl (pid" in second.stderr.read()
    # The second ran after the first had finished, so its size won.
    assert units(container, "dograh-api@*") == api(range(8000, 8003))
    assert upstream_ports(container) == {8000, 8001, 8002}


def test_status_names_an_instance_enabled_by_hand(container: Container) -> None:
    dograhctl(container, "scale", "2")
    assert dograhctl(container, "status").returncode == 0
    container.run("systemctl", "enable", "--now", "dograh-api@8007.service")
    try:
        result = dograhctl(container, "status", check=False)
        assert result.returncode == 1
        assert ("dograh-api@8007.service runs but is not part of the fleet "
                "(/var/lib/dograh-systemd/fleet.json)") in result.stdout
    finally:
        container.run("systemctl", "disable", "--now", "dograh-api@8007.service")
    assert dograhctl(container, "status").returncode == 0


def test_workers_on_ipv6_loopback_still_see_the_client(container: Container) -> None:
    """nginx dials [::1] and connects from it: the workers trust that address."""
    env = container.path("/etc/dograh/dograh.env")
    original = env.read_text()
    env.write_text(original + "UVICORN_HOST=::1\n")
    try:
        dograhctl(container, "scale", "2")
        assert "server [::1]:" in container.path("/etc/nginx/dograh/upstream.conf").read_text()
        seen = json.loads(container.run(
            "curl", "-sf", "--interface", "127.0.0.2", "-H", "X-Forwarded-For: 203.0.113.9",
            "http://localhost/api/v1/worker").stdout)
        assert seen["client"] == "127.0.0.2"  # from X-Forwarded-For, as nginx set it
        assert seen["scheme"] == "http"
    finally:
        env.write_text(original)
        dograhctl(container, "scale", "2")
    assert "server 127.0.0.1:" in container.path("/etc/nginx/dograh/upstream.conf").read_text()
