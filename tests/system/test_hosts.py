"""Several hosts on etcd: an edge in front of two worker hosts, the cluster's state in
three etcd members from Debian's etcd-server, set up by dograhctl's own commands, and
singletons by lease.

Four containers on a private bridge: the edge (Debian 12) runs the public nginx; worker1
(Debian 12) and worker2 (Debian 13) run API workers on their own addresses behind their
own firewalls; all three run a member of etcd (3.4 and 3.5 in one cluster, TLS, a user
per host). An outsider on the same bridge shows what the worker hosts refuse. All
traffic stays on the bridge.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.testbed.cluster import cluster, install
from bench.testbed.container import Container

from .fleet import units
from .load import Load, assert_nothing_lost
from .releases import SOURCE, commit, copy_source, make_source

pytestmark = pytest.mark.system

SUBNET = "10.250.7"
EDGE = f"{SUBNET}.10"
WORKERS = {"worker1": f"{SUBNET}.11", "worker2": f"{SUBNET}.12"}
HOSTS = {"edge": ("bookworm", 10), "worker1": ("bookworm", 11), "worker2": ("trixie", 12),
         "outsider": ("bookworm", 13)}
MEMBERS = ("edge", "worker1", "worker2")
ORCHESTRATOR = "dograh-campaign-orchestrator.service"
ARI = "dograh-ari-manager.service"
SINGLETONS = (ARI, ORCHESTRATOR)
ENV = "/etc/dograh/dograh.env"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
PLACED = "ari-manager=worker1,worker2 campaign-orchestrator=worker1,worker2"
# The agents' lease: a lost host's singletons run elsewhere within TTL + 10 s.
TTL = 10
PREFIX = "/dograh/dograh/"


@pytest.fixture(scope="module")
def hosts(deb: Path) -> Iterator[dict[str, Container]]:
    """The cluster, installed and its etcd created and joined."""
    with cluster(HOSTS, bridge="dograhbr0", subnet=SUBNET) as booted:
        install(booted, deb, {"edge": EDGE}, WORKERS, MEMBERS,
                worker_env="FASTAPI_WORKERS=2\n",
                edge_env=f"DOGRAH_SINGLETON_HOSTS={PLACED}\nFASTAPI_WORKERS=4\n")
        for name in WORKERS:
            booted[name].run("systemctl", "enable", "--now", "nftables")
        yield booted


@pytest.fixture
def edge(hosts: dict[str, Container]) -> Container:
    """The edge, with every host up and plugged in, four workers spread and the
    singletons placed as the config says, whatever the test before left."""
    settle(hosts)
    return hosts["edge"]


def settle(hosts: dict[str, Container]) -> None:
    for name in WORKERS:
        host = hosts[name]
        if not host.pid:
            host.boot()
        host.cable(plugged=True)
        host.run("nft", "delete", "table", "inet", "cutoff", check=False)
        host.run("systemctl", "start", "etcd.service", "dograh-agent.service")
    edge_env = hosts["edge"].path(ENV)
    edge_env.write_text("\n".join(line for line in edge_env.read_text().splitlines()
                                  if not line.startswith("DOGRAH_SINGLETON_HOSTS="))
                        + f"\nDOGRAH_SINGLETON_HOSTS={PLACED}\n")
    until(lambda: set(status(hosts["edge"])["hosts"]) == set(WORKERS), 60,
          "every worker host registered")
    dograhctl(hosts["edge"], "scale", "4")


def dograhctl(ct: Container, *args: str, check: bool = True) -> str:
    return ct.run("dograhctl", *args, check=check, timeout=900).stdout


def runs(ct: Container, *names: str) -> list[bool]:
    if not ct.pid:
        return [False] * len(names)
    out = ct.run("systemctl", "is-active", *names, check=False).stdout.split()
    if len(out) != len(names):  # the container went down while asked: nothing runs there
        return [False] * len(names)
    return [state in ("active", "activating", "deactivating") for state in out]


def status(edge: Container) -> dict:  # type: ignore[type-arg]
    return json.loads(dograhctl(edge, "status", "--json", check=False))


def until(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until ``predicate`` holds."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() < started + timeout, f"not within {timeout}s: {what}"
        time.sleep(0.5)
    return time.monotonic() - started


def refused_from(outsider: Container, address: str, port: int) -> bool:
    result = outsider.run("curl", "-s", "--max-time", "5",
                          f"http://{address}:{port}/api/v1/health", check=False)
    return result.returncode == 7  # curl: connection refused, at once


class Sampler:
    """Where each singleton runs, every 0.2 s, in a thread of its own."""

    def __init__(self, hosts: dict[str, Container]) -> None:
        self.hosts = hosts
        self.seen: list[tuple[float, dict[str, list[str]]]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.is_set():
            states = {name: runs(self.hosts[name], *SINGLETONS) for name in WORKERS}
            self.seen.append((time.monotonic(), {
                unit: [name for name in WORKERS if states[name][i]]
                for i, unit in enumerate(SINGLETONS)}))
            time.sleep(0.2)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()

    def never_two(self) -> None:
        doubled = [(when, where) for when, where in self.seen
                   if any(len(hosts) > 1 for hosts in where.values())]
        assert not doubled, doubled[:3]

    def next_holder(self, since: float, unit: str, seconds: float) -> str:
        """The host ``unit`` runs on alone after it ran nowhere, within ``seconds`` of
        ``since``."""
        while time.monotonic() < since + seconds + 1 and self.thread.is_alive():
            gap = False
            for when, where in list(self.seen):
                if not since <= when <= since + seconds:
                    continue
                gap = gap or not where[unit]
                if gap and len(where[unit]) == 1:
                    print(json.dumps({"moved": unit, "to": where[unit][0],
                                      "seconds": round(when - since, 1)}))
                    return where[unit][0]
            time.sleep(0.2)
        raise AssertionError(f"{unit} did not move within {seconds}s: "
                             f"{[w[unit] for t, w in self.seen if t >= since][:40]}")

    def holder(self, unit: str) -> list[str]:
        return self.seen[-1][1][unit]


def cut_from_etcd(host: Container, cut: bool) -> None:
    """A firewall rule: the host's agent reaches no etcd member (its own included), while
    its member still talks to the others and its workers still serve."""
    if cut:
        host.sh("nft -f - <<'EOF'\ntable inet cutoff {\n  chain output {\n"
                "    type filter hook output priority filter - 2; policy accept;\n"
                "    tcp dport 2379 meta skuid 0 drop\n  }\n}\nEOF")
    else:
        host.run("nft", "delete", "table", "inet", "cutoff", check=False)


def test_the_cluster_runs_on_etcd(hosts: dict[str, Container], edge: Container) -> None:
    """Three members of 3.4 and 3.5, TLS, auth on; each host registered on its lease;
    80 calls spread 20 per worker; each singleton once."""
    members = edge.run("etcdctl", "--endpoints", f"https://{EDGE}:2379",
                       "--cacert", "/etc/dograh/etcd/ca.crt", "--user",
                       f"root:{edge.path('/etc/dograh/etcd/root.password').read_text().strip()}",
                       "member", "list").stdout
    assert len(members.splitlines()) == 3, members
    assert "https://" in members
    load = Load(edge, "--by-host", "--duration", "1", "--rps", "0", "--call-rate", "0",
                "--call-seconds", "8", "--jitter", "0", "--initial-calls", "80")
    assert load.warm_calls == {f"{host}:{port}": 20 for host in WORKERS
                               for port in (8000, 8001)}, load.warm_calls
    assert load.result()["calls"]["closed_early"] == 0
    found = status(edge)
    assert found["mismatches"] == [], found["mismatches"]
    assert found["edges"] == ["edge"]
    for role in ("ari-manager", "campaign-orchestrator"):
        assert found["leaders"][role]["holder"] == "worker1", found["leaders"]
        assert found["leaders"][role]["runs_on"] == ["worker1"]


def test_a_host_may_write_its_own_keys_only(hosts: dict[str, Container],
                                            edge: Container) -> None:
    """etcd's RBAC: worker2's user registers worker2, and nothing else."""
    worker2 = hosts["worker2"]
    password = worker2.path("/etc/dograh/etcd/password").read_text().strip()

    def gateway(path: str, body: dict, token: str = "") -> tuple[int, dict]:  # type: ignore[type-arg]
        result = worker2.run("curl", "-s", "-o", "/dev/stdout", "-w", "\n%{http_code}",
                             "--cacert", "/etc/dograh/etcd/ca.crt",
                             *(["-H", f"Authorization: {token}"] if token else []),
                             f"https://{WORKERS['worker2']}:2379{path}", "-d", json.dumps(body))
        text, code = result.stdout.rsplit("\n", 1)
        return int(code), json.loads(text or "{}")

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    code, reply = gateway("/v3/auth/authenticate", {"name": "dograh-worker2",
                                                    "password": password})
    assert code == 200, reply
    token = reply["token"]
    for key, allowed in ((f"{PREFIX}hosts/worker1", False), (f"{PREFIX}desired/worker2", False),
                         (f"{PREFIX}acks/edge", False), ("/elsewhere", False)):
        code, reply = gateway("/v3/kv/put", {"key": b64(key), "value": b64("x")}, token)
        assert (code == 200) is allowed, (key, code, reply)
    code, _ = gateway("/v3/kv/range", {"key": b64(PREFIX), "range_end": b64(
        PREFIX[:-1] + "0")}, token)
    assert code == 200


def test_singletons_by_lease_through_every_fault(hosts: dict[str, Container],
                                                 edge: Container) -> None:
    """Under calls and HTTP load through the edge, in turn: a singleton moved by config;
    its host powered off; its host cut from etcd by a firewall rule; an etcd member
    killed; the edge's agent restarted. Sampled every 0.2 s: never two of a singleton,
    exactly one again within TTL + 10 s with no admin command, and no call lost on the
    hosts that stay up."""
    worker1, worker2 = hosts["worker1"], hosts["worker2"]
    sampler = Sampler(hosts)
    try:
        # 1. Moved by config: ari-manager prefers worker2 now.
        load = Load(edge, "--by-host", "--duration", "25", "--rps", "10", "--call-rate", "1",
                    "--call-seconds", "5", "--initial-calls", "8")
        env = edge.path(ENV)
        env.write_text(env.read_text().replace("ari-manager=worker1,worker2",
                                               "ari-manager=worker2,worker1"))
        moved = time.monotonic()
        dograhctl(edge, "scale", "4")
        assert sampler.next_holder(moved, ARI, TTL + 10) == "worker2"
        assert_nothing_lost(load.result())

        # 2. Its host powered off: only its own calls die; ari-manager runs on worker1.
        load = Load(edge, "--by-host", "--duration", "30", "--rps", "10", "--call-rate", "0",
                    "--call-seconds", "30", "--jitter", "0", "--initial-calls", "20")
        on_worker2 = sum(n for where, n in load.warm_calls.items() if where.startswith("worker2"))
        off = time.monotonic()
        worker2.power_cut()
        assert sampler.next_holder(off, ARI, TTL + 10) == "worker1"
        until(lambda: all(not m.startswith(WORKERS["worker2"])
                          for m in status(edge)["upstream"]), TTL + 10,
              "worker2 left the upstream")
        result = load.result()
        assert result["calls"]["closed_early"] + result["calls"]["failed"] <= on_worker2, result
        assert result["requests"]["ok"] > 0
        worker2.boot()
        until(lambda: any(m.startswith(WORKERS["worker2"]) for m in status(edge)["upstream"]),
              90, "worker2 rejoined the upstream by itself")
        assert sampler.holder(ARI) == ["worker1"]  # a host that comes back takes nothing

        # 3. worker1, which holds both, cut from etcd: it stops them by its own clock
        # before its lease may go; worker2 runs them; worker1's calls go on.
        load = Load(edge, "--by-host", "--duration", "30", "--rps", "10", "--call-rate", "1",
                    "--call-seconds", "5", "--initial-calls", "8")
        cut = time.monotonic()
        cut_from_etcd(worker1, True)
        for unit in SINGLETONS:
            assert sampler.next_holder(cut, unit, TTL + 10) == "worker2", unit
        result = load.result()
        assert result["calls"]["closed_early"] == 0 and result["calls"]["failed"] == 0, result
        cut_from_etcd(worker1, False)
        until(lambda: set(status(edge)["hosts"]) == set(WORKERS), 30, "worker1 registered")

        # 4. An etcd member killed: the rest keep a majority; nothing moves, nothing lost.
        load = Load(edge, "--by-host", "--duration", "15", "--rps", "10", "--call-rate", "1",
                    "--call-seconds", "5", "--initial-calls", "8")
        before = {unit: sampler.holder(unit) for unit in SINGLETONS}
        worker2.run("systemctl", "kill", "--signal=SIGKILL", "etcd.service")
        time.sleep(TTL)
        assert {unit: sampler.holder(unit) for unit in SINGLETONS} == before
        assert_nothing_lost(load.result())
        worker2.run("systemctl", "start", "etcd.service")

        # 5. The edge's agent restarted: the upstream stays, the calls too.
        load = Load(edge, "--by-host", "--duration", "15", "--rps", "10", "--call-rate", "1",
                    "--call-seconds", "5", "--initial-calls", "8")
        upstream = edge.path("/etc/nginx/dograh/upstream.conf").read_text()
        edge.run("systemctl", "restart", "dograh-agent.service")
        assert_nothing_lost(load.result())
        assert edge.path("/etc/nginx/dograh/upstream.conf").read_text() == upstream
    finally:
        sampler.stop()
    sampler.never_two()


def test_scale_a_host_down_and_restart_everything_under_load(
        hosts: dict[str, Container], edge: Container) -> None:
    load = Load(edge, "--by-host", "--duration", "30", "--rps", "20", "--call-rate", "1",
                "--call-seconds", "6", "--initial-calls", "8")
    dograhctl(edge, "scale", "--host", "worker1=2", "--host", "worker2=1")
    assert len(units(hosts["worker2"], "dograh-api@*")) == 1
    dograhctl(edge, "restart")
    assert_nothing_lost(load.result())
    for name, count in (("worker1", 2), ("worker2", 1)):
        assert len(units(hosts[name], "dograh-api@*")) == count
    found = status(edge)
    assert found["down"] == {} and found["mismatches"] == [], found


def test_a_crash_looping_unit_holds_up_no_host(hosts: dict[str, Container],
                                               edge: Container) -> None:
    worker1 = hosts["worker1"]
    drop_in = worker1.path("/etc/systemd/system/dograh-arq@1.service.d/crash.conf")
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text("[Service]\nExecStart=\nExecStart=/bin/false\n")
    worker1.run("systemctl", "daemon-reload")
    worker1.run("systemctl", "restart", "dograh-arq@1.service", check=False)
    try:
        load = Load(edge, "--by-host", "--duration", "25", "--rps", "20", "--call-rate", "1",
                    "--call-seconds", "5", "--initial-calls", "8")
        before = set(units(hosts["worker2"], "dograh-api@*"))
        # worker1's restart fails on its ARQ unit: the edge says so, and worker1 keeps
        # serving on its old workers, still in the upstream.
        told = edge.run("dograhctl", "restart", check=False, timeout=600)
        assert told.returncode == 1, told
        assert "; worker1 did not move (" in told.stdout, told
        assert "dograhctl: dograh-arq@1.service failed to start" in told.stdout, told
        assert_nothing_lost(load.result())
        assert any(member.startswith(WORKERS["worker1"]) for member in status(edge)["upstream"])
        # worker2 moved onto a new band though worker1 has a unit that keeps failing.
        assert before.isdisjoint(units(hosts["worker2"], "dograh-api@*"))
    finally:
        drop_in.unlink()
        worker1.run("systemctl", "daemon-reload")
        worker1.run("systemctl", "restart", "dograh-arq@1.service")


def test_the_firewall_follows_the_config_and_survives_nftables(
        hosts: dict[str, Container], edge: Container) -> None:
    """Each worker host's config moves its base port; the edge's scale brings it in."""
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
        assert refused_from(outsider, address, 8000) or refused_from(outsider, address, 8100)


def test_a_release_moves_every_host_or_none(hosts: dict[str, Container],
                                            edge: Container) -> None:
    """The edge pins one commit and every worker host builds it, then they move host by
    host under load; a host that cannot build the next one stops it before any switch."""
    keys = f"DOGRAH_SOURCE={SOURCE}\nDOGRAH_SOURCE_LAYOUT=app\n"
    originals = {name: hosts[name].path(ENV).read_text() for name in (*WORKERS, "edge")}
    try:
        make_source(edge)  # the edge pins the commit every host builds
        edge.path(ENV).write_text(originals["edge"] + keys)
        for name in WORKERS:
            copy_source(edge, hosts[name])
            hosts[name].path(ENV).write_text(originals[name] + keys)
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
        commit(edge, "B")
        for name in WORKERS:
            copy_source(edge, hosts[name])
        hosts["worker2"].path(ENV).write_text(hosts["worker2"].path(ENV).read_text()
                                              + "DOGRAH_BUILD_COMMAND=/bin/false\n")
        before = edge.path("/etc/nginx/dograh/upstream.conf").read_text()
        failed = edge.run("dograhctl", "release", "make", "--app", "app:app", check=False,
                          timeout=600)
        assert failed.returncode == 1
        assert "is not ready on worker2 (" in failed.stderr, failed.stderr
        newest = failed.stderr.split("release ")[-1].split()[0]
        refused = edge.run("dograhctl", "deploy", newest, check=False, timeout=600)
        assert refused.returncode == 1 and "no host moved" in refused.stderr, refused.stderr
        assert edge.path("/etc/nginx/dograh/upstream.conf").read_text() == before
    finally:
        for name, text in originals.items():
            hosts[name].path(ENV).write_text(text)
        dograhctl(edge, "deploy", "--in-place", "--no-drain")
        for name in (*WORKERS, "edge"):
            hosts[name].run("rm", "-f", "/etc/pip.conf")


def test_without_a_majority_workers_serve_and_nothing_starts(hosts: dict[str, Container],
                                                             edge: Container) -> None:
    """Two of three members stopped: calls go on, every singleton stops (its holder cannot
    renew), commands fail in one line; with etcd back it converges by itself."""
    load = Load(edge, "--by-host", "--duration", "30", "--rps", "10", "--call-rate", "1",
                "--call-seconds", "5", "--initial-calls", "8")
    for name in ("worker1", "worker2"):
        hosts[name].run("systemctl", "stop", "etcd.service")
    try:
        until(lambda: not any(any(runs(hosts[name], *SINGLETONS)) for name in WORKERS),
              TTL, "the singletons stopped")
        failed = edge.run("dograhctl", "scale", "4", check=False, timeout=120)
        assert failed.returncode == 1
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert "the cluster's etcd does not answer" in failed.stderr
        assert_nothing_lost(load.result())
    finally:
        for name in ("worker1", "worker2"):
            hosts[name].run("systemctl", "start", "etcd.service")
    until(lambda: [sum(on) for on in zip(*(runs(hosts[name], *SINGLETONS)
                                           for name in WORKERS), strict=True)] == [1, 1],
          60, "each singleton back on one host, with no admin command")


def test_a_lying_host_changes_nothing_at_the_edge(hosts: dict[str, Container],
                                                  edge: Container) -> None:
    """worker2 registers, on its own user, a value written to break into the edge's
    nginx config: it never reaches a file, and worker1 serves on."""
    worker2 = hosts["worker2"]
    worker2.run("systemctl", "stop", "dograh-agent.service")
    try:
        hostile = {"format": 2, "version": "0.9.0", "cpus": 2, "bases": [8000],
                   "members": [{"address": "10.250.7.12 down; } log_format pwn "
                                '"* * * * * root id > /tmp/pwned"; server { listen 19999; '
                                "access_log /etc/cron.d/pwn pwn; } upstream x { server "
                                "10.250.7.12", "port": 8000, "ready": True, "calls": 0}]}
        password = worker2.path("/etc/dograh/etcd/password").read_text().strip()
        worker2.run("etcdctl", "--endpoints", f"https://{WORKERS['worker2']}:2379",
                    "--cacert", "/etc/dograh/etcd/ca.crt", "--user",
                    f"dograh-worker2:{password}", "put", f"{PREFIX}hosts/worker2",
                    json.dumps(hostile))
        before = edge.path("/etc/nginx/sites-available/dograh").read_text()
        load = Load(edge, "--by-host", "--duration", "12", "--rps", "10", "--call-rate", "1",
                    "--call-seconds", "4", "--initial-calls", "20")
        until(lambda: "10.250.7.12" not in edge.path("/etc/nginx/dograh/upstream.conf")
              .read_text(), 10, "worker2 left out")
        result = load.result()
        on_worker2 = sum(n for where, n in load.warm_calls.items() if where.startswith("worker2"))
        assert result["calls"]["closed_early"] <= on_worker2
        upstream = edge.path("/etc/nginx/dograh/upstream.conf").read_text()
        assert "pwn" not in upstream and "server 10.250.7.11:8" in upstream
        assert edge.path("/etc/nginx/sites-available/dograh").read_text() == before
        assert not edge.path("/etc/cron.d/pwn").exists()
        told = edge.run("dograhctl", "status", check=False)
        assert told.returncode == 1
        assert "Host worker2 (10.250.7.12): UNHEALTHY (registers out of shape" in told.stdout
    finally:
        worker2.run("systemctl", "start", "dograh-agent.service")


def test_a_worker_hosts_own_restart_waits_for_the_edge(hosts: dict[str, Container],
                                                       edge: Container) -> None:
    worker2 = hosts["worker2"]
    before = set(units(worker2, "dograh-api@*"))
    load = Load(edge, "--by-host", "--duration", "25", "--rps", "20", "--call-rate", "1",
                "--call-seconds", "5", "--initial-calls", "8")
    out = worker2.run("dograhctl", "restart", timeout=300).stdout
    assert out.startswith("staged: ") and "waits for the edges" in out
    until(lambda: len(now := set(units(worker2, "dograh-api@*"))) == 2
          and now.isdisjoint(before), 30, "worker2 still runs its old band")
    assert_nothing_lost(load.result())
    assert status(edge)["mismatches"] == []


def test_the_worker_ports_refuse_anyone_but_the_edge(hosts: dict[str, Container],
                                                     edge: Container) -> None:
    serving = {member.rsplit(":", 1)[0]: int(member.rsplit(":", 1)[1])
               for member in status(edge)["upstream"]}
    for address in WORKERS.values():
        port = serving[address]  # a worker there now (a restart may have moved its band)
        assert refused_from(hosts["outsider"], address, port)
        assert edge.run("curl", "-sf", f"http://{address}:{port}/api/v1/health").returncode == 0


def test_every_host_writes_its_metrics_from_its_sandbox(hosts: dict[str, Container],
                                                        edge: Container) -> None:
    """dograh-metrics.service, as its timer runs it: on the edge it reads the cluster's
    registrations, on a worker host it lists the firewall's table."""
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
        assert 'limit="nginx_connections"' not in written[name]
    assert 'dograh_call_ceiling_bound{limit="nginx_connections"} 1' in written["edge"]
