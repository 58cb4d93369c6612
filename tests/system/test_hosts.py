"""Several hosts: an edge in front of two worker hosts, one command for all of them, and
a worker host that lies, breaks or drops off harms neither the edge nor the others.

Four containers on a private bridge: the edge (Debian 12) runs the public nginx and
orchestrates over SSH; worker1 (Debian 12) and worker2 (Debian 13) run API workers on
their own addresses, behind their own firewalls, with nftables.service on as an
admin's firewall would be; an outsider on the same bridge shows what the worker
hosts refuse. All traffic stays on the bridge.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.testbed.cluster import cluster, install
from bench.testbed.container import Container

from .fleet import units
from .load import Load, assert_nothing_lost
from .releases import SOURCE, commit, make_source

pytestmark = pytest.mark.system

SUBNET = "10.250.7"
EDGE = f"{SUBNET}.10"
WORKERS = {"worker1": f"{SUBNET}.11", "worker2": f"{SUBNET}.12"}
HOSTS = {"edge": ("bookworm", 10), "worker1": ("bookworm", 11), "worker2": ("trixie", 12),
         "outsider": ("bookworm", 13)}
ORCHESTRATOR = "dograh-campaign-orchestrator.service"
ARI = "dograh-ari-manager.service"
ENV = "/etc/dograh/dograh.env"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
PLACED = "ari-manager=worker1 campaign-orchestrator=worker1"


@pytest.fixture(scope="module")
def hosts(deb: Path) -> Iterator[dict[str, Container]]:
    """The cluster, installed: each worker host names its edge, the edge its hosts."""
    with cluster(HOSTS, bridge="dograhbr0", subnet=SUBNET) as booted:
        install(booted, deb, EDGE, WORKERS, worker_env="FASTAPI_WORKERS=2\n",
                edge_env=f"DOGRAH_SINGLETON_HOSTS={PLACED}\nFASTAPI_WORKERS=4\n")
        for name in WORKERS:
            booted[name].run("systemctl", "enable", "--now", "nftables")
        yield booted


@pytest.fixture
def edge(hosts: dict[str, Container]) -> Container:
    """The edge, with every host plugged in, singletons where they belong and four
    workers spread, whatever the test before left."""
    settle(hosts)
    return hosts["edge"]


def settle(hosts: dict[str, Container]) -> None:
    for name in WORKERS:
        hosts[name].cable(plugged=True)
    env = hosts["edge"].path(ENV)
    text = env.read_text()
    env.write_text("\n".join(line for line in text.splitlines()
                             if not line.startswith("DOGRAH_SINGLETON_HOSTS="))
                   + f"\nDOGRAH_SINGLETON_HOSTS={PLACED}\n")
    dograhctl(hosts["edge"], "scale", "4")


def dograhctl(ct: Container, *args: str, check: bool = True) -> str:
    return ct.run("dograhctl", *args, check=check, timeout=600).stdout


def runs(ct: Container, unit: str) -> bool:
    return ct.run("systemctl", "is-active", "--quiet", unit, check=False).returncode == 0


def status(edge: Container) -> dict:  # type: ignore[type-arg]
    return json.loads(dograhctl(edge, "status", "--json", check=False))


def where(edge: Container, role: str) -> list[str]:
    return [name for name, report in status(edge)["hosts"].items()
            if role in report["singletons"]]


def refused_from(outsider: Container, address: str, port: int) -> bool:
    result = outsider.run("curl", "-s", "--max-time", "5",
                          f"http://{address}:{port}/api/v1/health", check=False)
    return result.returncode == 7  # curl: connection refused, at once


def until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_two_plus_two_share_eighty_calls(hosts: dict[str, Container], edge: Container) -> None:
    for name in WORKERS:
        assert units(hosts[name], "dograh-api@*") == ["dograh-api@8000.service",
                                                      "dograh-api@8001.service"]
    load = Load(edge, "--by-host", "--duration", "1", "--rps", "0", "--call-rate", "0",
                "--call-seconds", "8", "--jitter", "0", "--initial-calls", "80")
    assert load.warm_calls == {f"{host}:{port}": 20 for host in WORKERS
                               for port in (8000, 8001)}, load.warm_calls
    assert load.result()["calls"]["closed_early"] == 0
    found = status(edge)
    assert found["mismatches"] == [], found["mismatches"]
    assert sorted(found["upstream"]) == sorted(f"{a}:{p}" for a in WORKERS.values()
                                               for p in (8000, 8001))
    for role in ("ari-manager", "campaign-orchestrator"):
        assert where(edge, role) == ["worker1"], role


def test_every_host_writes_its_metrics_from_its_sandbox(hosts: dict[str, Container],
                                                        edge: Container) -> None:
    """dograh-metrics.service, as its timer runs it: on the edge it asks every worker host
    over SSH, on a worker host it lists the firewall's table."""
    written = {}
    for name in ("edge", *WORKERS):
        host = hosts[name]
        host.run("mkdir", "-p", TEXTFILE_DIR)  # what node-exporter's package makes
        try:
            host.run("systemctl", "start", "dograh-metrics.service", timeout=120)
            written[name] = host.path(f"{TEXTFILE_DIR}/dograh.prom").read_text()
        finally:
            host.run("rm", "-rf", TEXTFILE_DIR)
    for name in WORKERS:
        assert f'dograh_host_up{{host="{name}"}} 1' in written["edge"], written["edge"]
        assert f'dograh_host_upstream_members{{host="{name}"}} 2' in written["edge"]
        assert 'dograh_units_desired{role="api"} 2' in written[name], written[name]
        assert "dograh_mismatches 0" in written[name], written[name]


def test_the_worker_ports_refuse_anyone_but_the_edge(hosts: dict[str, Container],
                                                     edge: Container) -> None:
    for address in WORKERS.values():
        assert refused_from(hosts["outsider"], address, 8000)
        assert edge.run("curl", "-sf", f"http://{address}:8000/api/v1/health").returncode == 0


def test_scale_a_host_down_and_restart_everything_under_load(
        hosts: dict[str, Container], edge: Container) -> None:
    load = Load(edge, "--by-host", "--duration", "30", "--rps", "20", "--call-rate", "1",
                "--call-seconds", "6", "--initial-calls", "8")
    dograhctl(edge, "scale", "--host", "worker1=2", "--host", "worker2=1")
    assert units(hosts["worker2"], "dograh-api@*") == ["dograh-api@8000.service"]
    dograhctl(edge, "restart")
    assert_nothing_lost(load.result())
    for name, count in (("worker1", 2), ("worker2", 1)):
        assert len(units(hosts[name], "dograh-api@*")) == count
    found = status(edge)
    assert found["down"] == {} and found["mismatches"] == [], found


def test_a_lying_host_changes_nothing_at_the_edge(hosts: dict[str, Container],
                                                  edge: Container) -> None:
    """worker2's dograhctl is replaced by a script that prints a reply written to break
    into the edge's nginx config: it never reaches a file, and worker1 serves on."""
    worker2 = hosts["worker2"]
    hostile = {"format": 1, "version": "0.3.0", "cpus": 2, "bases": [8000],
               "members": [{"address": "10.250.7.12 down; } log_format pwn "
                            '"* * * * * root id > /tmp/pwned"; server { listen 19999; '
                            "access_log /etc/cron.d/pwn pwn; } upstream x { server 10.250.7.12",
                            "port": 8000, "ready": True, "calls": 0}],
               "singletons": [], "units": [], "operation": None, "mismatches": [],
               "summary": None, "cut": None}
    worker2.run("cp", "/usr/bin/dograhctl", "/root/dograhctl.real")
    worker2.path("/usr/bin/dograhctl").write_text(
        f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(hostile)}\nEOF\n")
    try:
        before = {path: edge.path(path).read_text()
                  for path in ("/etc/nginx/dograh/upstream.conf",
                               "/etc/nginx/sites-available/dograh")}
        load = Load(edge, "--by-host", "--duration", "20", "--rps", "10", "--call-rate", "1",
                    "--call-seconds", "5", "--initial-calls", "40")
        dograhctl(edge, "rebalance")
        dograhctl(edge, "scale", "4")
        result = load.result()
        assert result["calls"]["closed_early"] == 0 and result["calls"]["failed"] == 0
        upstream = edge.path("/etc/nginx/dograh/upstream.conf").read_text()
        assert "pwn" not in upstream and "10.250.7.12" not in upstream
        assert "server 10.250.7.11:8" in upstream
        assert edge.path("/etc/nginx/sites-available/dograh").read_text() == \
            before["/etc/nginx/sites-available/dograh"]
        assert not edge.path("/etc/cron.d/pwn").exists()
        assert "pwn" not in edge.path("/var/lib/dograh-systemd/fleet.json").read_text()
        told = edge.run("dograhctl", "status", check=False)
        assert told.returncode == 1
        assert "Host worker2 (10.250.7.12): UNHEALTHY (answers out of shape (members.0.address:" \
            in told.stdout, told.stdout
    finally:
        worker2.run("cp", "/root/dograhctl.real", "/usr/bin/dograhctl")


def test_a_crash_looping_unit_holds_up_no_host(hosts: dict[str, Container],
                                               edge: Container) -> None:
    worker1 = hosts["worker1"]
    drop_in = worker1.path("/etc/systemd/system/dograh-arq@1.service.d/crash.conf")
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text("[Service]\nExecStart=\nExecStart=/bin/false\n")
    worker1.run("systemctl", "daemon-reload")
    worker1.run("systemctl", "restart", "dograh-arq@1.service", check=False)
    try:
        assert worker1.run("dograhctl", "status", "--json", check=False).returncode == 1
        load = Load(edge, "--by-host", "--duration", "25", "--rps", "20", "--call-rate", "1",
                    "--call-seconds", "5", "--initial-calls", "8")
        dograhctl(edge, "scale", "3")
        before = set(units(hosts["worker2"], "dograh-api@*"))
        # worker1's restart fails on its ARQ unit: the edge says so, and worker1 keeps
        # serving on its old workers, still in the upstream.
        told = edge.run("dograhctl", "restart", check=False, timeout=600)
        assert told.returncode == 1, told
        assert "; worker1 did not move (dograhctl failed there: dograh-arq@1.service " \
               "failed to start" in told.stdout, told
        assert_nothing_lost(load.result())
        assert any(member.startswith(WORKERS["worker1"]) for member in status(edge)["upstream"])
        # worker2 moved onto a new band though worker1 has a unit that keeps failing.
        assert before.isdisjoint(units(hosts["worker2"], "dograh-api@*"))
        found = status(edge)
        assert found["down"] == {}
        assert any("dograh-arq@1.service should run" in line for line in found["mismatches"])
    finally:
        drop_in.unlink()
        worker1.run("systemctl", "daemon-reload")
        worker1.run("systemctl", "restart", "dograh-arq@1.service")


def test_the_firewall_follows_the_config_and_survives_nftables(
        hosts: dict[str, Container], edge: Container) -> None:
    outsider, worker1 = hosts["outsider"], hosts["worker1"]
    originals = {name: hosts[name].path(ENV).read_text() for name in WORKERS}
    try:
        for name in WORKERS:
            hosts[name].path(ENV).write_text(originals[name] + "UVICORN_BASE_PORT=9000\n")
        dograhctl(edge, "scale", "4")
        for address in WORKERS.values():
            assert refused_from(outsider, address, 9000)
            assert edge.run("curl", "-sf",
                            f"http://{address}:9000/api/v1/health").returncode == 0
        load = Load(edge, "--by-host", "--duration", "12", "--rps", "10", "--call-rate", "0",
                    "--call-seconds", "14", "--jitter", "0", "--initial-calls", "40")
        pids = worker1.run("systemctl", "show", "-p", "MainPID", "--value",
                           "dograh-api@9000.service").stdout
        for action in ("reload", "restart"):
            worker1.run("systemctl", action, "nftables")
            until(lambda: refused_from(outsider, WORKERS["worker1"], 9000), 5,
                  f"the worker ports are open after nftables' {action}")
        assert worker1.run("systemctl", "show", "-p", "MainPID", "--value",
                           "dograh-api@9000.service").stdout == pids
        result = load.result()
        assert result["calls"]["closed_early"] == 0 and result["calls"]["failed"] == 0
    finally:
        for name in WORKERS:
            hosts[name].path(ENV).write_text(originals[name])
        dograhctl(edge, "scale", "4")
    for address in WORKERS.values():
        assert refused_from(outsider, address, 8000)


def test_a_singleton_is_fenced_while_its_host_is_cut_off(hosts: dict[str, Container],
                                                         edge: Container) -> None:
    worker1, worker2 = hosts["worker1"], hosts["worker2"]
    assert runs(worker1, ORCHESTRATOR)
    env = edge.path(ENV)
    worker1.cable(plugged=False)  # alive and still running it, but out of reach
    env.write_text(env.read_text().replace("campaign-orchestrator=worker1",
                                           "campaign-orchestrator=worker2"))
    refused = edge.run("dograhctl", "scale", "4", check=False, timeout=600)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        "dograhctl: campaign-orchestrator would start on worker2, but worker1 does not answer "
        "and may still run it (two must never run); bring it back, or if it is dead for good: "
        "--host-is-gone worker1")
    assert not runs(worker2, ORCHESTRATOR)
    dograhctl(edge, "scale", "4", "--host-is-gone", "worker1")
    assert runs(worker2, ORCHESTRATOR)
    worker1.cable(plugged=True)
    # The edge's timer finds worker1 running a copy that belongs on worker2 and stops it.
    until(lambda: not runs(worker1, ORCHESTRATOR), 45, "two orchestrators run")
    assert runs(worker2, ORCHESTRATOR)
    assert where(edge, "campaign-orchestrator") == ["worker2"]


def test_a_worker_hosts_own_restart_under_load(hosts: dict[str, Container],
                                               edge: Container) -> None:
    worker2 = hosts["worker2"]
    load = Load(edge, "--by-host", "--duration", "40", "--rps", "20", "--call-rate", "1",
                "--call-seconds", "5", "--initial-calls", "8")
    out = worker2.run("dograhctl", "restart", timeout=300).stdout
    assert out.startswith("staged: ") and "waits for the edge" in out
    # The edge's timer (every 15 s) switches to the new band, then worker2 drains the old.
    until(lambda: units(worker2, "dograh-api@*") == ["dograh-api@8100.service",
                                                     "dograh-api@8101.service"],
          60, "worker2 still runs its old band")
    assert_nothing_lost(load.result())
    found = status(edge)
    assert found["mismatches"] == [], found["mismatches"]


def test_singletons_move_back_and_forth_one_at_every_moment(hosts: dict[str, Container],
                                                            edge: Container) -> None:
    """Debian 12 and 13 worker hosts together: after a scale-down and a deploy across
    hosts, every host answers the edge, and each singleton moves both ways under load
    with exactly one running at every 0.2 s sample."""
    worker1, worker2 = hosts["worker1"], hosts["worker2"]
    dograhctl(edge, "scale", "2")
    dograhctl(edge, "restart")
    assert status(edge)["down"] == {}
    env = edge.path(ENV)
    load = Load(edge, "--by-host", "--duration", "60", "--rps", "10", "--call-rate", "1",
                "--call-seconds", "4", "--initial-calls", "6")
    for unit, role in ((ORCHESTRATOR, "campaign-orchestrator"), (ARI, "ari-manager")):
        seen: list[tuple[bool, bool]] = []
        done = threading.Event()

        def sample(unit: str, seen: list[tuple[bool, bool]], done: threading.Event) -> None:
            while not done.is_set():
                seen.append((runs(worker1, unit), runs(worker2, unit)))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, args=(unit, seen, done))
        sampler.start()
        try:
            for there, back in (("worker1", "worker2"), ("worker2", "worker1")):
                env.write_text(env.read_text().replace(f"{role}={there}", f"{role}={back}"))
                dograhctl(edge, "scale", "2")
        finally:
            done.set()
            sampler.join()
        assert (True, True) not in seen, role
        assert seen[-1] == (True, False), (role, seen[-1])
    assert_nothing_lost(load.result())


def test_a_host_that_dies_is_left_out_and_rejoins(hosts: dict[str, Container],
                                                  edge: Container) -> None:
    worker2 = hosts["worker2"]
    load = Load(edge, "--by-host", "--duration", "20", "--rps", "10", "--call-rate", "0",
                "--call-seconds", "20", "--jitter", "0", "--initial-calls", "20")
    on_worker2 = sum(n for worker, n in load.warm_calls.items() if worker.startswith("worker2"))
    worker2.power_cut()
    result = load.result()
    # Only the dead host's calls are lost; nginx sends everything else to worker1.
    assert result["calls"]["closed_early"] + result["calls"]["failed"] <= on_worker2, result
    assert result["requests"]["ok"] > 0
    told = edge.run("dograhctl", "status", check=False, timeout=120)
    assert told.returncode == 1
    assert f"Host worker2 ({WORKERS['worker2']}): DOWN (does not answer" in told.stdout
    dograhctl(edge, "scale", "3")  # works on the living host
    assert len(units(hosts["worker1"], "dograh-api@*")) == 3
    worker2.boot()
    until(lambda: any(member.startswith(WORKERS["worker2"])
                      for member in status(edge)["upstream"]),
          90, "worker2 did not rejoin (dograh-cluster.timer looks every 15 s)")
    dograhctl(edge, "scale", "4")
    assert status(edge)["mismatches"] == []


def test_a_release_moves_every_host_or_none(hosts: dict[str, Container],
                                            edge: Container) -> None:
    """The edge builds the same release on every worker host, then moves them host by
    host under load; a host that cannot build the next one stops it before any switch."""
    keys = f"DOGRAH_SOURCE={SOURCE}\nDOGRAH_SOURCE_LAYOUT=app\n"
    originals = {name: hosts[name].path(ENV).read_text() for name in (*WORKERS, "edge")}
    try:
        for name in WORKERS:
            make_source(hosts[name])
            hosts[name].path(ENV).write_text(originals[name] + keys)
        edge.path(ENV).write_text(originals["edge"] + keys)
        out = dograhctl(edge, "release", "make", "--app", "app:app")
        release = out.split()[1]
        assert out == f"release {release} is ready on 2 host(s)\n"
        load = Load(edge, "--by-host", "--duration", "20", "--rps", "20", "--call-rate", "1",
                    "--call-seconds", "5", "--initial-calls", "8")
        dograhctl(edge, "deploy")
        assert_nothing_lost(load.result())
        for member in status(edge)["upstream"]:
            assert json.loads(edge.run("curl", "-sf", f"http://{member}/api/v1/release")
                              .stdout)["release"] == "A"
        for name in WORKERS:
            commit(hosts[name], "B")
        hosts["worker2"].path(ENV).write_text(hosts["worker2"].path(ENV).read_text()
                                              + "DOGRAH_BUILD_COMMAND=/bin/false\n")
        before = edge.path("/etc/nginx/dograh/upstream.conf").read_text()
        failed = edge.run("dograhctl", "release", "make", "--app", "app:app", check=False,
                          timeout=600)
        assert failed.returncode == 1
        assert "is not ready on worker2 (dograhctl failed there: release " in failed.stderr
        newest = failed.stderr.split("release ")[-1].split()[0]
        refused = edge.run("dograhctl", "deploy", newest, check=False, timeout=600)
        assert refused.returncode == 1 and "no host moved" in refused.stderr
        assert edge.path("/etc/nginx/dograh/upstream.conf").read_text() == before
    finally:
        for name, text in originals.items():
            hosts[name].path(ENV).write_text(text)
        dograhctl(edge, "deploy", "--in-place", "--no-drain")
        for name in WORKERS:
            hosts[name].run("rm", "-f", "/etc/pip.conf")
