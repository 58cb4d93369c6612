"""A front door with no single point of failure: two edges and a floating address, on
real systemd, nginx and Debian's keepalived (2.2.7 on Debian 12, 2.3.3 on 13).

Four containers on a bridge of the test's own: edge1 (Debian 12) and edge2 (Debian 13)
each run nginx and keepalived and hold the floating address in turn; worker1 runs the
API workers; caller is a client on the same network, which calls through the floating
address (and through edge2's own address, to tell the calls of one edge from the
other's). All three hosts of the cluster run a member of its etcd.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.failover import failover_seconds
from bench.testbed import pebble
from bench.testbed.cluster import cluster, front_keys, install
from bench.testbed.cluster import holders as on_floating
from bench.testbed.container import Container

from .load import Load, assert_nothing_lost

pytestmark = pytest.mark.system

SUBNET = "10.250.8"
NETWORK = f"{SUBNET}.0/24"
EDGES = {"edge1": f"{SUBNET}.20", "edge2": f"{SUBNET}.21"}
WORKERS = {"worker1": f"{SUBNET}.22"}
HOSTS = {"edge1": ("bookworm", 20), "edge2": ("trixie", 21), "worker1": ("bookworm", 22),
         "caller": ("bookworm", 23)}
FLOATING = f"{SUBNET}.100"
PRIORITY = {"edge1": 150, "edge2": 100}
ENV = "/etc/dograh/dograh.env"
FAILOVER = Path(__file__).resolve().parents[2] / "bench/failover.py"
NAME = "voice.dograh.test"


@pytest.fixture(scope="module")
def hosts(deb: Path) -> Iterator[dict[str, Container]]:
    """The cluster on etcd, then the front door set up as an admin adds it: the keys in
    each edge's config, and dograhctl render."""
    with cluster(HOSTS, bridge="dograhbr1", subnet=SUBNET) as booted:
        edges = {name: booted[name] for name in EDGES}
        install({name: booted[name] for name in (*EDGES, *WORKERS)}, deb, EDGES, WORKERS,
                (*EDGES, *WORKERS), worker_env="FASTAPI_WORKERS=2\n",
                edge_env="FASTAPI_WORKERS=2\n", tools=("keepalived", "certbot"))
        for name, edge in edges.items():
            env = edge.path(ENV)
            env.write_text(env.read_text() + front_keys(name, EDGES, FLOATING, PRIORITY[name]))
            edge.run("dograhctl", "render", timeout=120)
        booted["worker1"].run("systemctl", "enable", "--now", "nftables")
        booted["edge1"].run("dograhctl", "scale", "2", timeout=300)
        booted["caller"].path("/root/failover.py").write_text(FAILOVER.read_text())
        yield booted


def holders(hosts: dict[str, Container]) -> list[str]:
    return on_floating(hosts, EDGES, FLOATING)


def until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


@pytest.fixture
def settled(hosts: dict[str, Container]) -> dict[str, Container]:
    """Both edges up, exactly one holding the address, the other standing by."""
    for name in EDGES:
        if not hosts[name].pid:
            hosts[name].boot()
        hosts[name].run("nft", "delete", "table", "inet", "split", check=False)
        hosts[name].run("systemctl", "start", "keepalived.service", "dograh-agent.service")
    until(lambda: len(holders(hosts)) == 1, 30, "one edge holds the floating address")
    return hosts


def caller_load(hosts: dict[str, Container], base: str, *args: str) -> Load:
    return Load(hosts["caller"], "--base", base, "--within", NETWORK, "--keep-alive", *args)


def status(edge: Container) -> str:
    return edge.run("dograhctl", "status", check=False).stdout


def test_the_floating_address_answers_from_the_edge_that_holds_it(settled: dict[str, Container]
                                                                   ) -> None:
    hosts = settled
    [holder] = holders(hosts)
    other = next(name for name in EDGES if name != holder)
    answer = hosts["caller"].run("curl", "-sf", f"http://{FLOATING}/api/v1/health").stdout
    assert json.loads(answer) == {"status": "ok"}
    for name in EDGES:
        conf = hosts[name].run("stat", "-c", "%U %a", "/etc/keepalived/keepalived.conf")
        assert conf.stdout.strip() == "root 600"
        assert hosts[name].run("keepalived", "-t", "-f", "/etc/keepalived/keepalived.conf",
                               check=False).returncode == 0
    until(lambda: re.search(rf"^Floating address {FLOATING}/24: held by {holder} since .*; "
                            rf"{other} standing by$", status(hosts[other]), re.M), 10,
          "status on the other edge names the holder")


def test_the_holder_powered_off_the_other_answers_within_3s(settled: dict[str, Container]
                                                             ) -> None:
    hosts = settled
    [holder] = holders(hosts)
    other = next(name for name in EDGES if name != holder)
    through_floating = caller_load(hosts, f"http://{FLOATING}", "--duration", "20", "--rps",
                                   "20", "--call-rate", "1", "--call-seconds", "8",
                                   "--initial-calls", "10")
    through_other = caller_load(hosts, f"http://{EDGES[other]}", "--duration", "20", "--rps",
                                "10", "--call-rate", "1", "--call-seconds", "8",
                                "--initial-calls", "10")
    poller = hosts["caller"].popen("python3", "/root/failover.py",
                                   f"http://{FLOATING}/api/v1/health", "--within", NETWORK,
                                   "--seconds", "12")
    time.sleep(2)
    cut = hosts[holder].power_cut()  # when its link went down
    out, _ = poller.communicate(timeout=60)
    polls = [json.loads(line) for line in out.splitlines()]
    failover = failover_seconds(polls, cut)
    print(json.dumps({"failover_seconds": failover}))
    assert failover is not None and failover <= 3, polls[-5:]
    assert holders(hosts) == [other]
    # The calls of the other edge go on; those of the dead edge died with its TCP
    # connections, and are counted; new calls go through the other edge.
    assert_nothing_lost(through_other.result())
    result = through_floating.result()
    calls = result["calls"]
    assert calls["closed_early"] <= 10 + 1 * 3  # the ones that entered through the holder
    assert calls["completed"] > 0
    fresh = caller_load(hosts, f"http://{FLOATING}", "--duration", "5", "--rps", "20",
                        "--call-rate", "2", "--call-seconds", "2")
    assert_nothing_lost(fresh.result())
    # The edge boots again and stands by: the address stays where the calls are.
    hosts[holder].boot()
    hosts[holder].run("systemctl", "start", "keepalived.service")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert holders(hosts) == [other]
        time.sleep(0.5)
    until(lambda: re.search(rf"held by {other} since .*; {holder} standing by$",
                            status(hosts[other]), re.M), 30, "status names the new holder")


def test_a_killed_keepalived_is_started_again_and_one_edge_holds_it(
        settled: dict[str, Container]) -> None:
    hosts = settled
    [holder] = holders(hosts)
    before = hosts[holder].run("systemctl", "show", "-p", "NRestarts", "--value",
                               "keepalived.service").stdout.strip()
    load = caller_load(hosts, f"http://{FLOATING}", "--duration", "10", "--rps", "10",
                       "--call-rate", "0")
    hosts[holder].run("systemctl", "kill", "--signal=SIGKILL", "keepalived.service")
    until(lambda: hosts[holder].run("systemctl", "show", "-p", "NRestarts", "--value",
                                    "keepalived.service").stdout.strip() != before,
          10, "systemd started keepalived again (the drop-in's Restart=on-failure)")
    until(lambda: len(holders(hosts)) == 1, 15, "one edge holds the address again")
    assert load.result()["requests"]["ok"] > 0


def test_a_split_keeps_serving_and_status_and_metrics_say_so(settled: dict[str, Container]
                                                             ) -> None:
    hosts = settled
    through = {name: caller_load(hosts, f"http://{EDGES[name]}", "--duration", "12",
                                 "--rps", "10", "--call-rate", "1", "--call-seconds", "4",
                                 "--initial-calls", "4") for name in EDGES}
    for name in EDGES:  # VRRP between the edges cut; everything else flows
        hosts[name].sh("nft -f - <<'EOF'\ntable inet split {\n  chain input {\n"
                       "    type filter hook input priority filter - 10; policy accept;\n"
                       "    ip protocol vrrp drop\n  }\n}\nEOF")
    until(lambda: holders(hosts) == list(EDGES), 10, "both edges hold the address")
    until(lambda: "edge1 and edge2 all hold" in status(hosts["edge1"]), 10, "status names it")
    assert hosts["edge1"].run("dograhctl", "status", check=False).returncode == 1
    metrics = {name: hosts[name].run("dograhctl", "metrics").stdout for name in EDGES}
    for text in metrics.values():
        assert f'dograh_front_address_held{{address="{FLOATING}/24"}} 1' in text
        assert "dograh_keepalived_up 1" in text and "dograh_nginx_up 1" in text
        assert "dograh_front_address_changed_timestamp_seconds " in text
    for name in EDGES:
        assert_nothing_lost(through[name].result())
    for name in EDGES:
        hosts[name].run("nft", "delete", "table", "inet", "split")
    until(lambda: len(holders(hosts)) == 1, 10, "one edge keeps it once they hear each other")


def test_each_edge_gets_its_certificate_whichever_holds_the_address(
        settled: dict[str, Container]) -> None:
    hosts = settled
    caller = hosts["caller"]
    at = f"{SUBNET}.{HOSTS['caller'][1]}"
    pebble.start(caller, at, NAME, FLOATING)  # it validates at the floating address
    ca = caller.path(pebble.CA).read_text()
    [holder] = holders(hosts)
    other = next(name for name in EDGES if name != holder)
    # The edge that does not hold the address asks first: its challenge is answered by
    # the holder, which asks the other edges for what it has not.
    for name in (other, holder):
        edge = hosts[name]
        edge.path("/root/pebble-ca.pem").write_text(ca)
        env = edge.path(ENV)
        env.write_text(env.read_text() + f"DOGRAH_TLS=acme\nDOGRAH_NGINX_SERVER_NAME={NAME}\n"
                       f"DOGRAH_ACME_SERVER={pebble.directory(at)}\n")
        out = edge.run("dograhctl", "render", env={"REQUESTS_CA_BUNDLE": "/root/pebble-ca.pem"},
                       timeout=180)
        assert f"certbot issued the site's certificate for {NAME}" in out.stderr, out.stderr
    pebble.root(caller, at, "/root/pebble-root.pem")
    for address in (FLOATING, *EDGES.values()):
        health = caller.run("curl", "-sf", "--cacert", "/root/pebble-root.pem", "--resolve",
                            f"{NAME}:443:{address}", f"https://{NAME}/api/v1/health").stdout
        assert json.loads(health) == {"status": "ok"}
    until(lambda: len(holders(hosts)) == 1, 10, "keepalived checks nginx over HTTPS now")
