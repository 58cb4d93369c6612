"""The edge's order of operations across worker hosts, with the hosts faked behind SSH."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dograh_systemd import cluster, config, remote
from dograh_systemd.context import Context
from dograh_systemd.errors import DograhError
from dograh_systemd.facts import Facts
from dograh_systemd.nginx import Nginx
from dograh_systemd.record import Store
from dograh_systemd.remote import Host, HostDown
from dograh_systemd.systemd import Completed, Systemd

from .fake_system import FakeClock, FakeSystem, point_paths_at

HOSTS = {"worker1": "10.0.0.11", "worker2": "10.0.0.12"}


class FakeHosts:
    """Worker hosts as their dograhctl answers the edge; every call is logged."""

    def __init__(self, cpus: dict[str, int]) -> None:
        self.cpus = cpus
        self.api: dict[str, list[int]] = {name: [8000] for name in cpus}
        self.singletons: dict[str, set[str]] = {name: set() for name in cpus}
        self.down: set[str] = set()
        self.log: list[str] = []

    def call(self, settings: Any, host: Host, args: list[str], timeout: float = 0) -> dict:
        if host.name in self.down:
            raise HostDown(f"{host} does not answer: connect timed out")
        verb = args[0]
        self.log.append(f"{host.name} {' '.join(args)}")
        members = [{"address": host.address, "port": p, "weight": 1, "ready": True, "calls": 0}
                   for p in self.api[host.name]]
        if verb == "status":
            roles = {"api": [], **{role: [{"unit": f"dograh-{role}.service", "active": "active"}]
                                   for role in self.singletons[host.name]}}
            return {"operation": None, "members": members, "roles": roles, "mismatches": [],
                    "cpus": self.cpus[host.name]}
        if verb == "scale":
            count = int(args[1])
            band = self.api[host.name][0] // 100 * 100 if self.api[host.name] else 8000
            self.api[host.name] = list(range(band, band + count))
            chosen = args[args.index("--singletons") + 1]
            self.singletons[host.name] = set(filter(None, chosen.split(",")))
        if verb == "restart":
            band = 8100 if self.api[host.name][0] < 8100 else 8000
            self.api[host.name] = [band + i for i in range(len(self.api[host.name]))]
        members = [{"address": host.address, "port": p, "weight": 1, "ready": True, "calls": 0}
                   for p in self.api[host.name]]
        return {"members": members, "summary": "done"}


class EdgeNginx(Nginx):
    def __init__(self, systemd: Systemd, log: list[str]) -> None:
        super().__init__(systemd)
        self.log = log

    def test(self) -> None:
        pass

    def reload(self, timeout: float = 10) -> None:
        from dograh_systemd import paths
        members = re.findall(r"server (\S+) ", paths.NGINX_UPSTREAM.read_text())
        self.log.append("edge nginx " + " ".join(members))


@pytest.fixture
def edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Context, FakeHosts]:
    point_paths_at(monkeypatch, tmp_path / "root")
    env = tmp_path / "dograh.env"
    env.write_text('DOGRAH_HOSTS="worker1=10.0.0.11 worker2=10.0.0.12"\nFASTAPI_WORKERS=4\n'
                   "DOGRAH_SINGLETON_HOSTS=ari-manager=worker1 campaign-orchestrator=worker1\n")
    hosts = FakeHosts({"worker1": 2, "worker2": 2})
    monkeypatch.setattr(remote, "call", hosts.call)
    monkeypatch.setattr(remote, "check_key", lambda key: None)
    system = FakeSystem()

    def run(argv: Any) -> Completed:
        if argv[0] in ("systemctl", "journalctl", "systemd-run"):
            return system.run(argv)
        return Completed(1, "", "")  # dpkg-query, openssl: nothing of theirs here

    systemd = Systemd(run)
    ctx = Context(config.load(env), [].append, systemd, EdgeNginx(systemd, hosts.log), Store(),
                  FakeClock(system), Facts())
    return ctx, hosts


def index(log: list[str], start: str) -> int:
    return next(i for i, line in enumerate(log) if line.startswith(start))


def test_hosts_stage_then_the_edge_switches_then_they_finish(edge: tuple[Context, FakeHosts]
                                                             ) -> None:
    ctx, hosts = edge
    cluster.scale(ctx, 4, {}, 300)
    log = hosts.log
    switch = index(log, "edge nginx")
    assert log[switch] == ("edge nginx 10.0.0.11:8000 10.0.0.11:8001 10.0.0.12:8000 "
                           "10.0.0.12:8001")
    staged = [i for i, line in enumerate(log) if "--stage" in line]
    resumed = [i for i, line in enumerate(log) if line.endswith("resume --json")]
    assert len(staged) == 2 and len(resumed) == 2
    assert max(staged) < switch < min(resumed)
    assert "--singletons ari-manager,campaign-orchestrator" in log[staged[0]] or \
        "--singletons ari-manager,campaign-orchestrator" in log[staged[1]]


def test_a_moving_singleton_stops_before_another_host_starts_it(
        edge: tuple[Context, FakeHosts]) -> None:
    ctx, hosts = edge
    hosts.singletons["worker2"] = {"campaign-orchestrator"}
    cluster.scale(ctx, 4, {}, 300)
    stop = index(hosts.log, "worker2 scale 1 --singletons  ")
    starts = [i for i, line in enumerate(hosts.log)
              if line.startswith("worker1 scale") and "campaign-orchestrator" in line]
    assert starts and stop < min(starts)


def test_a_host_that_does_not_answer_is_left_out(edge: tuple[Context, FakeHosts]) -> None:
    ctx, hosts = edge
    hosts.down.add("worker2")
    outcome = cluster.scale(ctx, 3, {}, 300)
    assert outcome.down == {"worker2": "worker2 (10.0.0.12) does not answer: connect timed out"}
    assert hosts.api["worker1"] == [8000, 8001, 8002]
    assert [line for line in hosts.log if line.startswith("edge nginx")][-1] == \
        "edge nginx 10.0.0.11:8000 10.0.0.11:8001 10.0.0.11:8002"


def test_a_deploy_goes_host_by_host(edge: tuple[Context, FakeHosts]) -> None:
    ctx, hosts = edge
    cluster.scale(ctx, 4, {}, 300)
    hosts.log.clear()
    cluster.restart(ctx, 300)
    assert [line for line in hosts.log if not line.endswith("status --json")] == [
        "worker1 restart --drain-timeout=300 --stage --json",
        "edge nginx 10.0.0.11:8100 10.0.0.11:8101 10.0.0.12:8000 10.0.0.12:8001",
        "worker1 resume --json",
        "worker2 restart --drain-timeout=300 --stage --json",
        "edge nginx 10.0.0.11:8100 10.0.0.11:8101 10.0.0.12:8100 10.0.0.12:8101",
        "worker2 resume --json"]


def test_workers_spread_by_cpus_or_as_given() -> None:
    alive = {Host("a", "10.0.0.1"): {"cpus": 4}, Host("b", "10.0.0.2"): {"cpus": 2},
             Host("c", "10.0.0.3"): {"cpus": 2}}
    assert cluster._spread(12, {}, alive) == {"a": 6, "b": 3, "c": 3}
    assert cluster._spread(7, {}, alive) == {"a": 3, "b": 2, "c": 2}  # largest remainders
    assert cluster._spread(6, {"a": 0}, alive) == {"a": 0, "b": 3, "c": 3}
    with pytest.raises(DograhError, match="no answering host named d"):
        cluster._spread(4, {"d": 1}, alive)
