"""Several hosts on etcd: the real dograhctl and the real agent of every fake host, on one
fake etcd and one clock. The order of operations across hosts, singletons by lease, and
the edge's trust boundary: a worker host that lies, breaks, is cut off or goes away harms
neither the edge nor the others."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dograh_systemd import paths, wire
from dograh_systemd.cluster import agent
from dograh_systemd.cluster.keys import Keys

from .fake_host import FakeCluster, FakeHost, dograhctl, make_cluster

ADDRESSES = {"worker1": "10.0.0.11", "worker2": "10.0.0.12"}
ORCHESTRATOR = "dograh-campaign-orchestrator.service"
ARI = "dograh-ari-manager.service"
KEYS = Keys("dograh")


@pytest.fixture
def cluster(tmp_path: Path) -> FakeCluster:
    found = make_cluster(tmp_path, {"edge": "10.0.0.10"}, ADDRESSES,
                         edge_config="FASTAPI_WORKERS=4\n", worker_config="FASTAPI_WORKERS=2\n")
    found.run(2)  # the agents start: each registers, the edge says it is alive
    return found


def upstream(cluster: FakeCluster) -> list[str]:
    return sorted(f"{a}:{p}" for a, p in cluster.edge.upstream)


def api_units(host: FakeHost) -> list[str]:
    return [unit for unit in host.active() if unit.startswith("dograh-api@")]


def runs(cluster: FakeCluster, unit: str) -> list[str]:
    return [name for name, host in cluster.workers.items()
            if host.units.get(unit) and host.units[unit].active in ("active", "activating")]


def no_violations(cluster: FakeCluster) -> None:
    for host in cluster.hosts.values():
        assert host.violations == [], host.violations


def desired(cluster: FakeCluster, host: str) -> dict:
    return json.loads(cluster.etcd.value(KEYS.desired(host)) or b"{}")


def test_hosts_stage_then_the_edge_sends_then_they_finish(cluster: FakeCluster) -> None:
    out = dograhctl(cluster.edge, "scale", "4")
    assert out.startswith("4 API workers behind the edge (worker1, worker2 carried it out)")
    assert upstream(cluster) == ["10.0.0.11:8000", "10.0.0.11:8001", "10.0.0.12:8000",
                                 "10.0.0.12:8001"]
    assert all(desired(cluster, name)["api"] == 2 for name in ADDRESSES)
    # Each host staged its scale, its agent waited for the edge's nginx, then finished.
    for name, host in cluster.workers.items():
        said = cluster.said[name]
        assert "every edge sends to the new workers: finishing the scale" in said
        assert api_units(host) == ["dograh-api@8000.service", "dograh-api@8001.service"]
    assert json.loads(cluster.etcd.value(KEYS.ack("edge")) or b"{}")["revision"] > 0
    no_violations(cluster)
    status = json.loads(cluster.edge.dograhctl("status", "--json")[1])
    assert status["mismatches"] == []
    assert status["edges"] == ["edge"]


def test_no_old_worker_stops_before_the_edge_sends_to_the_new(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.edge.log.clear()
    dograhctl(cluster.edge, "restart")
    switches = [line for line in cluster.edge.log if line.startswith("nginx ")]
    # Host by host: worker1's new band first, then worker2's.
    assert switches == [
        "nginx 10.0.0.11:8100 10.0.0.11:8101 10.0.0.12:8000 10.0.0.12:8001",
        "nginx 10.0.0.11:8100 10.0.0.11:8101 10.0.0.12:8100 10.0.0.12:8101"]
    no_violations(cluster)


def test_a_host_scaled_down_drains_after_the_edge_let_go(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker2 = cluster.workers["worker2"]
    worker2.running("dograh-api@8001.service", calls=3)
    worker2.ending["dograh-api@8001.service"] = worker2.clock.now + 5
    dograhctl(cluster.edge, "scale", "--host", "worker2=1", "--host", "worker1=2")
    assert api_units(worker2) == ["dograh-api@8000.service"]
    assert not [line for line in worker2.log if line.startswith("cut ")]
    no_violations(cluster)


def test_each_host_drains_for_its_own_timeout_unless_the_admin_gives_one(
        cluster: FakeCluster) -> None:
    """The edge's own DRAIN_TIMEOUT reaches no host: a host drains as it is configured."""
    dograhctl(cluster.edge, "scale", "4")
    assert desired(cluster, "worker1")["drain"] == {"timeout": None, "stop_at_once": False}
    dograhctl(cluster.edge, "restart")
    assert desired(cluster, "worker1")["drain"] == {"timeout": None, "stop_at_once": False}
    dograhctl(cluster.edge, "restart", "--drain-timeout", "30")
    assert desired(cluster, "worker2")["drain"] == {"timeout": 30, "stop_at_once": False}
    dograhctl(cluster.edge, "scale", "4", "--no-drain")
    assert desired(cluster, "worker2")["drain"] == {"timeout": None, "stop_at_once": True}


def test_the_command_a_host_runs_drains_for_the_hosts_own_timeout(tmp_path: Path) -> None:
    found = make_cluster(tmp_path, {"edge": "10.0.0.10"}, ADDRESSES,
                         edge_config="FASTAPI_WORKERS=4\nDRAIN_TIMEOUT=300\n",
                         worker_config="FASTAPI_WORKERS=2\nDRAIN_TIMEOUT=1260\n")
    found.run(2)
    dograhctl(found.edge, "scale", "4")
    worker1 = found.workers["worker1"]
    worker1.running("dograh-api@8001.service", calls=1)
    worker1.ending["dograh-api@8001.service"] = worker1.clock.now + 600
    dograhctl(found.edge, "scale", "--host", "worker1=1", "--host", "worker2=2")
    # The call lasted 600 s, longer than the edge's 300, within worker1's 1,260: not cut.
    assert not [line for line in worker1.log if line.startswith("cut ")]
    assert api_units(worker1) == ["dograh-api@8000.service"]


def test_zero_api_workers_are_refused_before_anything_is_asked(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    before = {name: desired(cluster, name) for name in ADDRESSES}
    for args in (["scale", "0"], ["scale", "--host", "worker1=0", "--host", "worker2=0"]):
        out = dograhctl(cluster.edge, *args, code=1)
        assert "a layout of zero API workers is refused" in out
        assert {name: desired(cluster, name) for name in ADDRESSES} == before
    # The cluster still takes commands, and its hosts their own.
    dograhctl(cluster.edge, "scale", "2")
    dograhctl(cluster.workers["worker1"], "status")


def test_a_busy_host_stays_in_the_upstream(cluster: FakeCluster) -> None:
    """A host whose own dograhctl holds its lock (a long drain) is still registered."""
    dograhctl(cluster.edge, "scale", "4")
    worker2 = cluster.workers["worker2"]
    with worker2.lock(print, 0):
        cluster.run(agent.TTL + 5)
        assert "10.0.0.12:8000" in upstream(cluster)
        _, out, _ = cluster.edge.dograhctl("status")
        assert "worker2 is not registered" not in out


def test_a_host_whose_lease_ends_leaves_the_upstream_and_rejoins(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.stopped.add("worker2")  # its agent stops answering (a power cut, say)
    cluster.run(agent.TTL - 1)
    assert "10.0.0.12:8000" in upstream(cluster)  # not yet: its lease runs on
    cluster.run(3)
    assert upstream(cluster) == ["10.0.0.11:8000", "10.0.0.11:8001"]
    cluster.stopped.discard("worker2")
    cluster.run(2)
    assert "10.0.0.12:8000" in upstream(cluster)
    no_violations(cluster)


# -- a hostile or broken worker host never harms the edge or the others -------------------

HOSTILE_ADDRESS = ('10.0.0.12 down; } log_format pwn "* * * * * root id > /tmp/pwned"; '
                   "server { listen 19999; access_log /etc/cron.d/pwn pwn; } "
                   "upstream x { server 10.0.0.12")


@pytest.mark.parametrize("lie", [
    {"members": [{"address": HOSTILE_ADDRESS, "port": 8000, "ready": True, "calls": 0}]},
    {"members": [{"port": 22, "ready": True, "calls": 0}]},
    {"members": [{"port": 8000, "ready": True, "calls": -100}]},
    {"members": [{"port": 8000, "ready": True, "calls": "7"}]},
    {"members": [{"port": 8000, "ready": 1, "calls": 0}]},
    {"bases": [22]},
    {"singletons": ["sshd"]},
    {"mismatches": ["\x1b]0;owned\x07"]},
    {"release": "r1\n"},
    {"format": 99},
])
def test_a_lying_host_never_reaches_nginx(cluster: FakeCluster, lie: dict) -> None:
    dograhctl(cluster.edge, "scale", "4")
    site = cluster.edge.files.read(paths.NGINX_SITE)
    honest = json.loads(cluster.etcd.value(KEYS.host("worker2")) or b"{}")
    cluster.stopped.add("worker2")  # its agent is replaced by whatever writes this
    lease = cluster.etcd.keys[KEYS.host("worker2")].lease
    cluster.etcd.write(KEYS.host("worker2"), json.dumps({**honest, **lie}).encode(), lease)
    cluster.run(2)
    text = cluster.edge.files.read(paths.NGINX_UPSTREAM) or ""
    assert "pwn" not in text and ":22 " not in text
    assert "10.0.0.12" not in text  # left out: nothing of it is used
    assert "server 10.0.0.11:8" in text
    code, out, _ = cluster.edge.dograhctl("status")
    assert code == 1
    assert "Host worker2 (10.0.0.12): UNHEALTHY (registers out of shape" in out
    assert cluster.edge.files.read(paths.NGINX_SITE) == site


def test_a_registration_with_a_trailing_newline_is_out_of_shape() -> None:
    """pydantic matches a pattern from the start only: ``$`` would let a newline in."""
    report = {"format": 2, "version": "0.9.0", "cpus": 2, "bases": [8000], "members": [],
              "singletons": [], "units": [], "operation": None, "mismatches": [],
              "release": "", "previous_release": "", "releases": [], "generation": 0,
              "restarted": 0, "failed": ""}
    wire.read(json.dumps(report), [])
    for field, value in (("version", "0.9.0\n"), ("release", "r1\n"), ("failed", "no\n"),
                         ("units", [{"unit": "dograh-arq@1.service\n", "role": "arq",
                                     "active": "active", "sub": "running", "status": ""}])):
        with pytest.raises(wire.schema.OutOfShape):
            wire.read(json.dumps({**report, field: value}), [])


def test_a_registration_from_a_host_outside_the_roster_is_not_used(
        cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    stranger = json.loads(cluster.etcd.value(KEYS.host("worker2")) or b"{}")
    cluster.etcd.write(KEYS.host("worker9"), json.dumps(stranger).encode(), 0)
    cluster.run(2)
    assert all(not member.startswith("10.0.0.19") for member in upstream(cluster))
    assert len(upstream(cluster)) == 4


# -- singletons, by lease ------------------------------------------------------------------

def sample_singletons(cluster: FakeCluster, seconds: float) -> list[tuple[list[str], ...]]:
    """Where each singleton runs, every 0.2 s of fake time."""
    samples = []
    for _ in range(int(seconds * 5)):
        cluster.clock.now += 0.2
        for host in cluster.hosts.values():
            host.tick()
        if round(cluster.clock.now * 5) % 5 == 0:
            cluster.turn()
        samples.append((runs(cluster, ARI), runs(cluster, ORCHESTRATOR)))
    return samples


def test_singletons_run_once_where_they_are_placed(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    assert runs(cluster, ARI) == ["worker1"] and runs(cluster, ORCHESTRATOR) == ["worker1"]
    env = cluster.workers["worker1"].files.read(paths.LEADER_DIR / "ari-manager.env") or ""
    token = cluster.etcd.keys[KEYS.leader("ari-manager")].create_revision
    assert env == f"DOGRAH_LEADER_REVISION={token}\n"
    # They are the agent's, not the fleet's: no mismatch, never enabled for boot.
    assert cluster.workers["worker1"].dograhctl("status")[0] == 0
    assert ARI not in cluster.workers["worker1"].enabled()


def test_a_singleton_moved_by_config_stops_before_it_starts(cluster: FakeCluster) -> None:
    """Both hosts may run it; the preferred one moves to worker2: never two at once."""
    dograhctl(cluster.edge, "scale", "4")
    env = Path("/etc/dograh/dograh.env")
    cluster.edge.configure((cluster.edge.files.read(env) or "")
                           + "DOGRAH_SINGLETON_HOSTS=ari-manager=worker2,worker1\n")
    dograhctl(cluster.edge, "scale", "4")
    samples = sample_singletons(cluster, 10)
    assert all(len(ari) <= 1 for ari, _ in samples)
    assert samples[-1][0] == ["worker2"]
    assert runs(cluster, ORCHESTRATOR) == ["worker1"]


def test_a_holder_that_cannot_stop_keeps_the_key(cluster: FakeCluster) -> None:
    """Its stop fails: the key is never given back, so no other host starts a second."""
    dograhctl(cluster.edge, "scale", "4")
    worker1 = cluster.workers["worker1"]
    stuck = worker1._stop

    def refuses(name: str) -> None:
        if name != ARI:
            stuck(name)
    worker1._stop = refuses  # type: ignore[method-assign]
    env = Path("/etc/dograh/dograh.env")
    cluster.edge.configure((cluster.edge.files.read(env) or "")
                           + "DOGRAH_SINGLETON_HOSTS=ari-manager=worker2\n")
    dograhctl(cluster.edge, "scale", "4")
    samples = sample_singletons(cluster, 20)
    assert all(ari == ["worker1"] for ari, _ in samples)


def test_a_lost_hosts_singletons_start_elsewhere_within_the_ttl(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.power_off("worker1")
    samples = sample_singletons(cluster, agent.TTL + 10)
    assert all(len(ari) <= 1 and len(orchestrator) <= 1 for ari, orchestrator in samples)
    first = next(i for i, (ari, _) in enumerate(samples) if ari == ["worker2"])
    assert first * 0.2 <= agent.TTL + 3
    assert samples[-1] == (["worker2"], ["worker2"])


def test_a_host_cut_off_from_etcd_stops_its_singletons_before_its_lease_ends(
        cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.etcd.cut.add("worker1")
    stopped_at = None
    for second in range(2 * agent.TTL):
        cluster.run(1)
        if stopped_at is None and not runs(cluster, ARI):
            stopped_at = second
        assert len(runs(cluster, ARI)) <= 1
    # Killed by its own clock, ttl - margin after its last renewal, before etcd ends the
    # lease; the other host took over, and the cut host's API workers kept serving.
    assert stopped_at is not None and stopped_at <= agent.TTL - agent.MARGIN
    assert runs(cluster, ARI) == ["worker2"]
    assert api_units(cluster.workers["worker1"]) == ["dograh-api@8000.service",
                                                     "dograh-api@8001.service"]
    cluster.etcd.cut.discard("worker1")
    cluster.run(3)
    assert runs(cluster, ARI) == ["worker2"]  # it stays where it went
    assert "10.0.0.11:8000" in upstream(cluster)


def test_a_restarted_agent_gives_its_singletons_back_at_once(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.restart_agent("worker1")
    assert KEYS.leader("ari-manager") not in cluster.etcd.keys  # revoked, not left to expire
    assert KEYS.host("worker1") not in cluster.etcd.keys  # its lease with it
    cluster.run(2)
    assert runs(cluster, ARI) == ["worker1"]  # the preferred host takes it again


def test_an_agent_stopped_without_etcd_says_its_lease_ends_by_itself(cluster: FakeCluster
                                                                     ) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.etcd.majority = False
    cluster.restart_agent("worker1")
    warning = cluster.said["worker1"][-1]
    assert warning.startswith(f"warning: the lease ends by itself within {agent.TTL}s ("), \
        warning
    cluster.etcd.majority = True
    cluster.run(agent.TTL + 2)
    assert KEYS.host("worker1") in cluster.etcd.keys  # the new agent registered again


def test_without_etcd_workers_serve_and_nothing_new_starts(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.etcd.majority = False
    cluster.run(agent.TTL + 2)
    # Every holder stopped what its lease guarded; nobody started anything new.
    assert runs(cluster, ARI) == [] and runs(cluster, ORCHESTRATOR) == []
    assert upstream(cluster) == ["10.0.0.11:8000", "10.0.0.11:8001", "10.0.0.12:8000",
                                 "10.0.0.12:8001"]  # the edge keeps its last good upstream
    assert all(len(api_units(host)) == 2 for host in cluster.workers.values())
    code, _, err = cluster.edge.dograhctl("scale", "4")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "the cluster's etcd does not answer" in err
    cluster.etcd.majority = True
    cluster.run(3)
    assert runs(cluster, ARI) == ["worker1"] and runs(cluster, ORCHESTRATOR) == ["worker1"]
    dograhctl(cluster.edge, "scale", "4")


def test_an_edge_cut_off_keeps_its_last_good_upstream(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    before = cluster.edge.files.read(paths.NGINX_UPSTREAM)
    cluster.etcd.cut.add("edge")
    cluster.run(agent.TTL * 2)
    assert cluster.edge.files.read(paths.NGINX_UPSTREAM) == before


def test_a_worker_hosts_own_restart_waits_for_the_edges(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker1 = cluster.workers["worker1"]
    worker1.log.clear()
    out = dograhctl(worker1, "restart")
    assert out.startswith("staged: ")
    assert "waits for the edges" in out
    assert not [line for line in worker1.log if line.startswith("stop dograh-api@80")]
    cluster.run(3)
    assert api_units(worker1) == ["dograh-api@8100.service", "dograh-api@8101.service"]
    assert upstream(cluster)[:2] == ["10.0.0.11:8100", "10.0.0.11:8101"]
    no_violations(cluster)


def test_two_edges_render_the_same_upstream_and_hosts_wait_for_both(tmp_path: Path) -> None:
    found = make_cluster(tmp_path, {"edge": "10.0.0.10", "edge2": "10.0.0.20"}, ADDRESSES,
                         edge_config="FASTAPI_WORKERS=4\n", worker_config="FASTAPI_WORKERS=2\n")
    found.run(2)
    dograhctl(found.edges["edge2"], "scale", "4")
    assert found.edges["edge"].upstream == found.edges["edge2"].upstream
    assert len(found.edges["edge"].upstream) == 4
    # With edge2 gone, its lease ends and hosts wait for the edge alone.
    found.power_off("edge2")
    found.run(agent.TTL + 2)
    dograhctl(found.edge, "restart")
    assert {port for _, port in found.edge.upstream} == {8100, 8101}
    no_violations(found)


def test_a_scale_that_changes_nothing_on_a_worker_host_waits_for_nobody(cluster: FakeCluster
                                                                        ) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker1 = cluster.workers["worker1"]
    out = dograhctl(worker1, "scale", "2")
    assert not out.startswith("staged: ") and "waits for the edges" not in out
    assert json.loads(worker1.files.read(paths.RECORD) or "{}").get("operation") is None


def test_the_edges_scale_brings_in_a_worker_hosts_edited_config(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker2 = cluster.workers["worker2"]
    config = worker2.files.path(Path("/etc/dograh/dograh.env"))
    config.write_text(config.read_text() + "UVICORN_BASE_PORT=9000\n")
    dograhctl(cluster.edge, "scale", "4")  # the same count: worker2 moves onto its config
    assert api_units(worker2) == ["dograh-api@9000.service", "dograh-api@9001.service"]
    assert sorted(p for a, p in cluster.edge.upstream if a == "10.0.0.12") == [9000, 9001]
    assert api_units(cluster.workers["worker1"]) == ["dograh-api@8000.service",
                                                     "dograh-api@8001.service"]
    no_violations(cluster)


def test_a_host_that_cannot_move_is_named_with_its_own_words(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.workers["worker1"].failing.add("dograh-arq@1.service")
    out = dograhctl(cluster.edge, "restart", code=1)
    said = re.search(r"; worker1 did not move \([\w ]+ failed: (dograhctl: .*)\)$", out, re.M)
    assert said, out
    assert "dograh-arq@1.service" in said.group(1) and "Failed with result" not in out
    assert "worker2 carried it out" in out
    no_violations(cluster)


def test_a_host_at_rest_looks_at_its_fleet_every_few_seconds_not_every_cycle(
        cluster: FakeCluster) -> None:
    """An agent's cycle runs every second: at rest it asks systemd once a cycle (its
    singletons), and its whole fleet (a dozen calls) every REGISTER_EVERY seconds."""
    from dograh_systemd.cluster.worker import REGISTER_EVERY
    dograhctl(cluster.edge, "scale", "4")
    cluster.run(REGISTER_EVERY + 2)
    worker1 = cluster.workers["worker1"]
    ran: list[str] = []
    asked = worker1.systemd.run

    def counted(argv, timeout=None, input=None):  # type: ignore[no-untyped-def]
        ran.append(" ".join(argv[:2]))
        return asked(argv, timeout, input)

    worker1.systemd.run = counted  # type: ignore[method-assign]
    cluster.run(20)
    looks = ran.count("systemctl list-units")
    assert 20 / REGISTER_EVERY - 1 <= looks <= 20 / REGISTER_EVERY + 1, ran
    assert len(ran) <= 20 + looks * 12, len(ran)
    # A command of the admin's on the host is registered at the next cycle.
    assert dograhctl(worker1, "scale", "3").startswith("staged: ")
    cluster.run(1)
    registered = json.loads(cluster.etcd.value(KEYS.host("worker1")) or b"{}")
    assert registered["operation"]["staged"] and len(registered["members"]) == 3
