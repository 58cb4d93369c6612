"""Several hosts: an edge in front of two worker hosts, one command for all of them.

Four containers on a private bridge: the edge (Debian 12) runs the public
nginx and orchestrates over SSH; worker1 (Debian 12) and worker2 (Debian 13)
run API workers on their own addresses; an outsider on the same bridge shows
what the worker hosts' firewall refuses. All traffic stays on the bridge.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .container import Container
from .fleet import units
from .hosts import cluster, install
from .load import Load, assert_nothing_lost

pytestmark = pytest.mark.system

SUBNET = "10.250.7"
EDGE = f"{SUBNET}.10"
WORKERS = {"worker1": f"{SUBNET}.11", "worker2": f"{SUBNET}.12"}
HOSTS = {"edge": ("bookworm", 10), "worker1": ("bookworm", 11), "worker2": ("trixie", 12),
         "outsider": ("bookworm", 13)}
ORCHESTRATOR = "dograh-campaign-orchestrator.service"


@pytest.fixture(scope="module")
def hosts(deb: Path) -> Iterator[dict[str, Container]]:
    """The cluster, installed: each worker host names its edge, the edge its hosts."""
    with cluster(HOSTS, bridge="dograhbr0", subnet=SUBNET) as booted:
        install(booted, deb, EDGE, WORKERS, worker_env="FASTAPI_WORKERS=2\n",
                edge_env="DOGRAH_SINGLETON_HOSTS=ari-manager=worker1 "
                         "campaign-orchestrator=worker1\nFASTAPI_WORKERS=4\n")
        yield booted


def dograhctl(ct: Container, *args: str, check: bool = True) -> str:
    return ct.run("dograhctl", *args, check=check, timeout=600).stdout


def runs(ct: Container, unit: str) -> bool:
    return ct.run("systemctl", "is-active", "--quiet", unit, check=False).returncode == 0


def test_two_plus_two_share_eighty_calls(hosts: dict[str, Container]) -> None:
    edge = hosts["edge"]
    dograhctl(edge, "scale", "4")
    for name in WORKERS:
        assert units(hosts[name], "dograh-api@*") == ["dograh-api@8000.service",
                                                      "dograh-api@8001.service"]
    load = Load(edge, "--by-host", "--duration", "1", "--rps", "0", "--call-rate", "0",
                "--call-seconds", "8", "--jitter", "0", "--initial-calls", "80")
    assert load.warm_calls == {f"{host}:{port}": 20 for host in WORKERS
                               for port in (8000, 8001)}, load.warm_calls
    assert load.result()["calls"]["closed_early"] == 0
    status = json.loads(dograhctl(edge, "status", "--json"))
    assert status["mismatches"] == [], status["mismatches"]
    assert sorted(status["upstream"]) == sorted(f"{a}:{p}" for a in WORKERS.values()
                                                for p in (8000, 8001))
    for role in ("ari-manager", "campaign-orchestrator"):
        where = [name for name, state in status["hosts"].items()
                 if any(i["active"] == "active" for i in state["roles"][role])]
        assert where == ["worker1"], (role, where)


def test_the_worker_ports_refuse_anyone_but_the_edge(hosts: dict[str, Container]) -> None:
    for address in WORKERS.values():
        refused = hosts["outsider"].run("curl", "-s", "--max-time", "5",
                                        f"http://{address}:8000/api/v1/health", check=False)
        assert refused.returncode == 7, refused  # curl: connection refused, at once
        assert hosts["edge"].run("curl", "-sf", f"http://{address}:8000/api/v1/health"
                                 ).returncode == 0


def test_scale_a_host_down_and_restart_everything_under_load(
        hosts: dict[str, Container]) -> None:
    edge = hosts["edge"]
    dograhctl(edge, "scale", "4")
    load = Load(edge, "--by-host", "--duration", "30", "--rps", "20", "--call-rate", "1",
                "--call-seconds", "6", "--initial-calls", "8")
    dograhctl(edge, "scale", "--host", "worker1=2", "--host", "worker2=1")
    assert units(hosts["worker2"], "dograh-api@*") == ["dograh-api@8000.service"]
    dograhctl(edge, "restart")
    assert_nothing_lost(load.result())
    for name, count in (("worker1", 2), ("worker2", 1)):
        assert len(units(hosts[name], "dograh-api@*")) == count


def test_a_moved_singleton_never_runs_twice(hosts: dict[str, Container]) -> None:
    edge = hosts["edge"]
    dograhctl(edge, "scale", "4")
    seen: list[tuple[bool, bool]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.append((runs(hosts["worker1"], ORCHESTRATOR),
                         runs(hosts["worker2"], ORCHESTRATOR)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    env = edge.path("/etc/dograh/dograh.env")
    original = env.read_text()
    try:
        env.write_text(original.replace("campaign-orchestrator=worker1",
                                        "campaign-orchestrator=worker2"))
        dograhctl(edge, "scale", "4")
        time.sleep(1)
    finally:
        done.set()
        sampler.join()
    assert (True, True) not in seen
    assert seen[0] == (True, False) and seen[-1] == (False, True), (seen[0], seen[-1])
    env.write_text(original)
    dograhctl(edge, "scale", "4")
    assert runs(hosts["worker1"], ORCHESTRATOR) and not runs(hosts["worker2"], ORCHESTRATOR)


def test_a_host_that_dies_is_left_out_and_rejoins(hosts: dict[str, Container]) -> None:
    edge, worker2 = hosts["edge"], hosts["worker2"]
    dograhctl(edge, "scale", "4")
    load = Load(edge, "--by-host", "--duration", "20", "--rps", "10", "--call-rate", "0",
                "--call-seconds", "20", "--jitter", "0", "--initial-calls", "20")
    on_worker2 = sum(n for worker, n in load.warm_calls.items() if worker.startswith("worker2"))
    worker2.power_cut()
    result = load.result()
    # Only the dead host's calls are lost; nginx sends everything else to worker1.
    assert result["calls"]["closed_early"] + result["calls"]["failed"] <= on_worker2, result
    assert result["requests"]["ok"] > 0
    status = edge.run("dograhctl", "status", check=False, timeout=120)
    assert status.returncode == 1
    assert f"worker2 ({WORKERS['worker2']}) does not answer" in status.stdout
    dograhctl(edge, "scale", "3")  # works on the living host
    assert len(units(hosts["worker1"], "dograh-api@*")) == 3
    worker2.boot()
    deadline = time.monotonic() + 90  # dograh-cluster.timer looks every 15 s
    while True:
        upstream = json.loads(dograhctl(edge, "status", "--json", check=False))["upstream"]
        if any(member.startswith(WORKERS["worker2"]) for member in upstream):
            break
        assert time.monotonic() < deadline, upstream
        time.sleep(3)
    dograhctl(edge, "scale", "4")
    assert json.loads(dograhctl(edge, "status", "--json"))["mismatches"] == []
