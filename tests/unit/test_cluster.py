"""The edge and its worker hosts: the real dograhctl on every fake host, ssh between them
in-process. The order of operations across hosts, and the edge's trust boundary: a
worker host that lies, breaks or goes away harms neither the edge nor the others."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dograh_systemd import paths
from dograh_systemd.host.commands import Completed

from .fake_host import FakeCluster, FakeHost, edge_host

EDGE = "10.0.0.10"
ADDRESSES = {"worker1": "10.0.0.11", "worker2": "10.0.0.12"}
ORCHESTRATOR = "dograh-campaign-orchestrator.service"
ARI = "dograh-ari-manager.service"


@pytest.fixture
def cluster(tmp_path: Path) -> FakeCluster:
    edge = edge_host(tmp_path / "edge", EDGE,
                     'DOGRAH_HOSTS="worker1=10.0.0.11 worker2=10.0.0.12"\nFASTAPI_WORKERS=4\n'
                     "DOGRAH_SINGLETON_HOSTS=ari-manager=worker1 "
                     "campaign-orchestrator=worker1\n")
    workers = {}
    for name, address in ADDRESSES.items():
        workers[name] = FakeHost(tmp_path / name, address)
        workers[name].configure(f"DOGRAH_EDGE={EDGE}\nUVICORN_HOST={address}\n"
                                "FASTAPI_WORKERS=2\n")
    return FakeCluster(edge, workers)


def dograhctl(host: FakeHost, *args: str, code: int = 0) -> str:
    exit_code, out, err = host.dograhctl(*args)
    assert exit_code == code, (exit_code, out, err)
    return out + err


def upstream(cluster: FakeCluster) -> list[str]:
    return sorted(f"{a}:{p}" for a, p in cluster.edge.upstream)


def edge_files(cluster: FakeCluster) -> dict[str, str | None]:
    files = cluster.edge.files
    return {str(path): files.read(path)
            for path in (paths.NGINX_SITE, paths.NGINX_UPSTREAM, paths.RECORD)}


def api_units(host: FakeHost) -> list[str]:
    return [unit for unit in host.active() if unit.startswith("dograh-api@")]


def no_violations(cluster: FakeCluster) -> None:
    for host in (cluster.edge, *cluster.workers.values()):
        assert host.violations == [], host.violations


def test_hosts_stage_then_the_edge_switches_then_they_finish(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    assert upstream(cluster) == ["10.0.0.11:8000", "10.0.0.11:8001", "10.0.0.12:8000",
                                 "10.0.0.12:8001"]
    calls = cluster.calls
    staged = [i for i, line in enumerate(calls) if line.startswith(("worker1 scale",
                                                                     "worker2 scale"))]
    finished = [i for i, line in enumerate(calls) if "resume --switched" in line]
    switch = cluster.edge.log.index(
        "nginx 10.0.0.11:8000 10.0.0.11:8001 10.0.0.12:8000 10.0.0.12:8001")
    assert len(staged) == 2 and len(finished) == 2 and max(staged) < min(finished)
    assert switch >= 0
    assert ORCHESTRATOR in cluster.workers["worker1"].active()
    assert ORCHESTRATOR not in cluster.workers["worker2"].active()
    no_violations(cluster)
    status = json.loads(dograhctl(cluster.edge, "status", "--json").split("\n", 0)[0])
    assert status["mismatches"] == []


def test_scale_down_a_host_drains_after_the_edge_let_go(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker2 = cluster.workers["worker2"]
    worker2.running("dograh-api@8001.service", calls=3)
    worker2.ending["dograh-api@8001.service"] = worker2.clock.now + 5
    dograhctl(cluster.edge, "scale", "--host", "worker2=1", "--host", "worker1=2")
    assert api_units(worker2) == ["dograh-api@8000.service"]
    assert not [line for line in worker2.log if line.startswith("cut ")]
    no_violations(cluster)


def test_a_deploy_goes_host_by_host(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.edge.log.clear()
    dograhctl(cluster.edge, "restart")
    switches = [line for line in cluster.edge.log if line.startswith("nginx ")]
    assert switches == [
        "nginx 10.0.0.11:8100 10.0.0.11:8101 10.0.0.12:8000 10.0.0.12:8001",
        "nginx 10.0.0.11:8100 10.0.0.11:8101 10.0.0.12:8100 10.0.0.12:8101"]
    no_violations(cluster)


def test_a_host_that_does_not_answer_is_left_out(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.down.add("worker2")
    out = dograhctl(cluster.edge, "scale", "3")
    assert "worker2 is left out (does not answer: ssh: connect to host 10.0.0.12" in out
    assert upstream(cluster) == ["10.0.0.11:8000", "10.0.0.11:8001", "10.0.0.11:8002"]


# -- issue: a hostile or broken worker host never harms the edge or the others ----------

HOSTILE_ADDRESS = ('10.0.0.12 down; } log_format pwn "* * * * * root id > /tmp/pwned"; '
                   "server { listen 19999; access_log /etc/cron.d/pwn pwn; } "
                   "upstream x { server 10.0.0.12")


def report_of(host: FakeHost) -> dict:
    _code, out, _ = host.dograhctl("status", "--json")
    return json.loads(out)


@pytest.mark.parametrize("lie", [
    {"members": [{"address": HOSTILE_ADDRESS, "port": 8000, "ready": True, "calls": 0}]},
    {"members": [{"port": 22, "ready": True, "calls": 0}]},
    {"members": [{"port": 8000, "ready": True, "calls": -100}]},
    {"members": [{"port": 8000, "ready": True, "calls": "7"}]},
    {"members": [{"port": 8000, "ready": 1, "calls": 0}]},
    {"bases": [22]},
    {"singletons": ["sshd"]},
    {"mismatches": ["\x1b]0;owned\x07"]},
    {"format": 99},
])
def test_a_lying_host_never_reaches_nginx_or_the_record(cluster: FakeCluster,
                                                        lie: dict) -> None:
    dograhctl(cluster.edge, "scale", "4")
    before = edge_files(cluster)
    honest = report_of(cluster.workers["worker2"])

    def impostor(args: list[str]) -> Completed:
        return Completed(0, json.dumps({**honest, **lie}), "")

    cluster.impostors["worker2"] = impostor
    for verb in (["rebalance"], ["scale", "4"], ["restart"]):
        cluster.edge.dograhctl(*verb)
        assert edge_files(cluster)["/etc/nginx/dograh/upstream.conf"] is not None
        text = cluster.edge.files.read(paths.NGINX_UPSTREAM) or ""
        assert "pwn" not in text and ":22 " not in text
        assert "10.0.0.12" not in text  # left out: nothing of it is used
    code, out, _ = cluster.edge.dograhctl("status")
    assert code == 1
    assert "Host worker2 (10.0.0.12): UNHEALTHY (answers out of shape" in out
    assert "server 10.0.0.11:8" in (cluster.edge.files.read(paths.NGINX_UPSTREAM) or "")
    assert before["/etc/nginx/sites-available/dograh"] == edge_files(cluster)[
        "/etc/nginx/sites-available/dograh"]


def test_a_host_with_a_mismatch_is_still_read_and_repaired(cluster: FakeCluster) -> None:
    """A crash-looping unit makes a host's status exit 1: the edge reads it anyway."""
    dograhctl(cluster.edge, "scale", "4")
    worker1 = cluster.workers["worker1"]
    worker1.units["dograh-arq@1.service"].active = "failed"
    code, _, _ = worker1.dograhctl("status", "--json")
    assert code == 1
    dograhctl(cluster.edge, "scale", "6")
    assert len(api_units(cluster.workers["worker2"])) == 3
    dograhctl(cluster.edge, "restart")
    assert upstream(cluster)[0].startswith("10.0.0.11:81")
    no_violations(cluster)


def test_the_edge_finishes_a_hosts_interrupted_operation(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker2 = cluster.workers["worker2"]
    worker2.kill_at = lambda event: event == "start dograh-api@8100.service"
    out = dograhctl(cluster.edge, "restart", code=1)
    assert "; worker2 did not move (dograhctl failed there: no output)\n" in out
    # Read again, its old workers keep their place in the upstream.
    assert "10.0.0.12:8000" in upstream(cluster)
    worker2.revive()
    dograhctl(cluster.edge, "rebalance")
    worker2.run_background()
    assert api_units(worker2) == ["dograh-api@8100.service", "dograh-api@8101.service"]
    assert "10.0.0.12:8100" in upstream(cluster)
    no_violations(cluster)


def test_a_worker_hosts_own_restart_waits_for_its_edge(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker1 = cluster.workers["worker1"]
    worker1.log.clear()
    out = dograhctl(worker1, "restart")
    assert out.startswith("staged: ")
    assert "waits for the edge" in out
    # No old worker stopped: the edge still sends to them.
    assert not [line for line in worker1.log if line.startswith("stop dograh-api@80")]
    assert api_units(worker1) == ["dograh-api@8000.service", "dograh-api@8001.service",
                                  "dograh-api@8100.service", "dograh-api@8101.service"]
    # A second local command is refused while the first waits.
    code, _, err = worker1.dograhctl("scale", "3")
    assert code == 1 and "waits for the edge" in err
    dograhctl(cluster.edge, "rebalance")  # what dograh-cluster.timer runs
    worker1.run_background()
    assert api_units(worker1) == ["dograh-api@8100.service", "dograh-api@8101.service"]
    assert "10.0.0.11:8100" in upstream(cluster) and "10.0.0.11:8000" not in upstream(cluster)
    no_violations(cluster)


def test_a_worker_host_refuses_what_only_an_edge_does(cluster: FakeCluster) -> None:
    worker1 = cluster.workers["worker1"]
    code, _, err = worker1.dograhctl("rebalance")
    assert code == 1 and "its edge weighs it" in err
    code, _, err = worker1.dograhctl("scale", "2", "--host", "worker1=2")
    assert code == 1 and err == "dograhctl: --host is for an edge (a host with DOGRAH_HOSTS)\n"


def test_a_singleton_never_starts_while_its_old_host_may_run_it(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker1, worker2 = cluster.workers["worker1"], cluster.workers["worker2"]
    assert ORCHESTRATOR in worker1.active()
    cluster.down.add("worker1")  # cut off, but alive: it still runs the orchestrator
    env = Path("/etc/dograh/dograh.env")
    cluster.edge.configure((cluster.edge.files.read(env) or "").replace(
        "campaign-orchestrator=worker1", "campaign-orchestrator=worker2"))
    code, _, err = cluster.edge.dograhctl("scale", "4")
    assert code == 1
    assert err.splitlines()[-1] == (
        "dograhctl: campaign-orchestrator would start on worker2, but worker1 does not answer "
        "and may still run it (two must never run); bring it back, or if it is dead for good: "
        "--host-is-gone worker1")
    assert ORCHESTRATOR not in worker2.active()
    dograhctl(cluster.edge, "scale", "4", "--host-is-gone", "worker1")
    assert ORCHESTRATOR in worker2.active()
    code, _, err = cluster.edge.dograhctl("scale", "4", "--host-is-gone", "worker2")
    assert code == 1 and "worker2 (10.0.0.12) answers: it is not gone" in err
    out = dograhctl(cluster.edge, "rebalance")  # the timer's: warns, never refuses
    assert ("warning: ari-manager belongs on worker1, which is left out: it runs nowhere until "
            "that host answers again") in out.splitlines()
    cluster.down.discard("worker1")  # it comes back, still running its copy
    out = dograhctl(cluster.edge, "rebalance")
    assert ("worker1 (10.0.0.11): singletons ari-manager (were ari-manager, "
            "campaign-orchestrator)") in out.splitlines()
    worker1.run_background()
    running = [name for name, host in cluster.workers.items() if ORCHESTRATOR in host.active()]
    assert running == ["worker2"]


def test_a_moving_singleton_stops_before_another_host_starts_it(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    env = Path("/etc/dograh/dograh.env")
    cluster.edge.configure((cluster.edge.files.read(env) or "").replace(
        "ari-manager=worker1", "ari-manager=worker2"))
    cluster.calls.clear()
    out = dograhctl(cluster.edge, "scale", "4")
    assert "worker1 (10.0.0.11): stopping ari-manager before another host starts it" \
        in out.splitlines()
    worker1, worker2 = cluster.workers["worker1"], cluster.workers["worker2"]
    assert ARI in worker2.active() and ARI not in worker1.active()
    stop = next(i for i, line in enumerate(cluster.calls)
                if line.startswith("worker1 resume --switched"))
    start = next(i for i, line in enumerate(cluster.calls)
                 if line.startswith("worker2 scale") and "ari-manager" in line)
    assert stop < start


def test_the_ui_is_routed_to_the_host_that_runs_it(cluster: FakeCluster) -> None:
    env = Path("/etc/dograh/dograh.env")
    cluster.edge.configure((cluster.edge.files.read(env) or "")
                           + "ENABLE_DOGRAH_UI=true\nDOGRAH_SINGLETON_HOSTS=ui=worker2\n")
    for host in cluster.workers.values():
        host.configure((host.files.read(env) or "") + "ENABLE_DOGRAH_UI=true\n")
    dograhctl(cluster.edge, "scale", "4")
    site = cluster.edge.files.read(paths.NGINX_SITE) or ""
    assert "proxy_pass http://10.0.0.12:3010;" in site
    ui = cluster.workers["worker2"].files.read(paths.UNIT_DIR / "dograh-ui.service") or ""
    assert "Environment=PORT=3010 HOSTNAME=10.0.0.12" in ui
    rules = cluster.workers["worker2"].files.read(paths.FIREWALL_RULES) or ""
    assert "tcp dport { 8000-8063, 8100-8163, 3010 } accept" in rules


def test_the_firewall_follows_the_config(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker1 = cluster.workers["worker1"]
    rules = worker1.files.read(paths.FIREWALL_RULES) or ""
    assert "ip saddr 10.0.0.10 tcp dport { 8000-8063, 8100-8163 } accept" in rules
    assert rules.index("table inet dograh\ndelete table inet dograh\n") > 0
    drop_in = worker1.files.read(paths.NFTABLES_DROP_IN) or ""
    assert f"ExecReload=-/usr/sbin/nft -f {paths.FIREWALL_RULES}" in drop_in
    env = Path("/etc/dograh/dograh.env")
    worker1.configure((worker1.files.read(env) or "") + "UVICORN_BASE_PORT=9000\n")
    worker1.log.clear()
    dograhctl(cluster.edge, "scale", "4")
    rules = worker1.files.read(paths.FIREWALL_RULES) or ""
    assert "tcp dport { 9000-9063, 9100-9163 } accept" in rules
    assert f"reload-or-restart {paths.FIREWALL_UNIT}" in worker1.log
    assert api_units(worker1) == ["dograh-api@9000.service", "dograh-api@9001.service"]
    # While the old band drained, its ports stayed behind the firewall too.
    rules_written = [text for path, text in worker1.writes if path == paths.FIREWALL_RULES]
    assert "tcp dport { 9000-9063, 9100-9163, 8000, 8001 } accept" in rules_written[-2]
    worker1.nft_table = False
    code, out, _ = worker1.dograhctl("status")
    assert code == 1 and "table inet dograh is missing" in out


def test_workers_spread_by_cpus_or_as_given(cluster: FakeCluster) -> None:
    cluster.workers["worker1"].machine.cpu_count = 4
    dograhctl(cluster.edge, "scale", "6")
    assert len(api_units(cluster.workers["worker1"])) == 4
    assert len(api_units(cluster.workers["worker2"])) == 2
    dograhctl(cluster.edge, "scale", "5", "--host", "worker1=1")
    assert len(api_units(cluster.workers["worker1"])) == 1
    assert len(api_units(cluster.workers["worker2"])) == 4
    code, _, err = cluster.edge.dograhctl("scale", "4", "--host", "worker9=1")
    assert code == 1 and err == "dograhctl: worker9 is not in DOGRAH_HOSTS\n"


def test_a_host_lost_in_the_middle_of_a_deploy_holds_up_no_other(
        cluster: FakeCluster) -> None:
    """worker1 stages its new band, then stops answering before it can finish: the edge
    leaves it out and deploys worker2 all the same."""
    dograhctl(cluster.edge, "scale", "4")
    worker1 = cluster.workers["worker1"]

    def answers_until_the_switch(args: list[str]) -> Completed:
        if args[0] == "resume":
            return Completed(255, "", "ssh: connect to host 10.0.0.11 port 22: No route to host\n")
        code, out, err = worker1.dograhctl(*args)
        return Completed(code, out, err)

    cluster.impostors["worker1"] = answers_until_the_switch
    out = dograhctl(cluster.edge, "restart")
    assert "worker1 is left out (does not answer: ssh: connect to host 10.0.0.11" in out
    assert api_units(cluster.workers["worker2"]) == ["dograh-api@8100.service",
                                                     "dograh-api@8101.service"]
    assert upstream(cluster) == ["10.0.0.12:8100", "10.0.0.12:8101"]
    no_violations(cluster)


def test_status_names_what_the_hosts_and_the_upstream_disagree_on(
        cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker1, worker2 = cluster.workers["worker1"], cluster.workers["worker2"]
    worker2.running(ORCHESTRATOR)  # started by hand: two run
    failing = worker1.units["dograh-api@8001.service"]
    failing.active, failing.sub = "failed", "failed"
    code, out, _ = cluster.edge.dograhctl("status")
    assert code == 1
    assert "  campaign-orchestrator runs on 2 hosts (worker1, worker2), not exactly one" in out
    assert "  the upstream lists 10.0.0.11:8001, which is not ready" in out
    assert "  worker1: dograh-api@8001.service should run but is failed (failed)" in out
    failing.active, failing.sub = "active", "running"
    worker2.units[ORCHESTRATOR].active = "inactive"
    worker2.running("dograh-api@8005.service")
    code, out, _ = cluster.edge.dograhctl("status")
    assert "  worker2: dograh-api@8005.service runs but is not part of the fleet" in out
    assert code == 1


def test_render_on_an_edge_writes_its_units_and_the_recorded_upstream(
        cluster: FakeCluster, tmp_path: Path) -> None:
    edge = cluster.edge
    stage = tmp_path / "stage"
    code, _, err = edge.dograhctl("render", "--root", str(stage))
    assert code == 0
    assert (stage / "etc/systemd/system/dograh-cluster.timer").exists()
    assert (stage / "etc/systemd/system/dograh.target").exists()
    assert not (stage / "etc/systemd/system/dograh-api@.service").exists()  # no fleet here
    assert not (stage / "etc/nginx/dograh/upstream.conf").exists()  # nothing recorded yet
    dograhctl(edge, "scale", "4")
    edge.log.clear()
    cluster.calls.clear()
    code, _, err = edge.dograhctl("render", "--root", str(stage), "--dry-run")
    assert code == 0 and "+    server 10.0.0.12:8001 " in err
    assert not (stage / "etc/nginx/dograh/upstream.conf").exists()
    dograhctl(edge, "render", "--root", str(stage))
    staged = (stage / "etc/nginx/dograh/upstream.conf").read_text()
    assert staged == edge.files.read(paths.NGINX_UPSTREAM)
    assert edge.log == [] and cluster.calls == []  # a staging root asks no host, moves nothing
    # On the live root: what moves no process, from the record, without asking the hosts.
    edge.files.unlink(paths.NGINX_UPSTREAM)
    out = dograhctl(edge, "render")
    assert str(paths.NGINX_UPSTREAM) in out
    assert edge.files.read(paths.NGINX_UPSTREAM) == staged
    assert edge.log[-2] == ("nginx 10.0.0.11:8000 10.0.0.11:8001 10.0.0.12:8000 "
                            "10.0.0.12:8001") and cluster.calls == []
    assert "0 file(s) changed" in dograhctl(edge, "render")


def test_resume_on_an_edge_finishes_what_a_host_staged(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    worker1 = cluster.workers["worker1"]
    dograhctl(worker1, "scale", "3", "--stage")
    assert api_units(worker1) == ["dograh-api@8000.service", "dograh-api@8001.service",
                                  "dograh-api@8002.service"]
    cluster.calls.clear()
    out = dograhctl(cluster.edge, "resume")
    assert "worker1 (10.0.0.11): finishing its staged scale" in out
    assert upstream(cluster) == ["10.0.0.11:8000", "10.0.0.11:8001", "10.0.0.11:8002",
                                 "10.0.0.12:8000", "10.0.0.12:8001"]
    assert [c for c in cluster.calls if "resume --switched" in c] == [
        "worker1 resume --switched --json"]
    assert "finishing" not in dograhctl(cluster.edge, "resume")  # nothing left to finish
    no_violations(cluster)


def test_status_on_an_edge_reads_host_by_host(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.down.add("worker2")
    code, out, _ = cluster.edge.dograhctl("status")
    lines = out.splitlines()
    assert code == 1
    assert lines[0] == "Host worker1 (10.0.0.11):"
    assert lines[1].split()[:2] == ["dograh-api@8000.service", "active/running"]
    assert "Host worker2 (10.0.0.12): DOWN (does not answer: ssh: connect to host 10.0.0.12 " \
           "port 22: Connection timed out)" in lines
    assert ("nginx upstream dograh_api: 10.0.0.11:8000 10.0.0.11:8001 10.0.0.12:8000 "
            "10.0.0.12:8001") in lines
    assert lines[-4:] == ["Mismatches:",
                          "  worker2 does not answer: ssh: connect to host 10.0.0.12 port 22: "
                          "Connection timed out",
                          "  the upstream lists 10.0.0.12:8000, which is not ready",
                          "  the upstream lists 10.0.0.12:8001, which is not ready"]
    cluster.down.clear()
    code, out, _ = cluster.edge.dograhctl("status")
    assert (code, out.splitlines()[-1]) == (0, "No mismatches.")


@pytest.mark.parametrize(("args", "error"), [
    (["scale", "4", "--singletons", "ari-manager"],
     "--singletons is what an edge passes its worker hosts"),
    (["scale", "4", "--arq", "2"], "--arq is each worker host's own: ARQ_WORKERS in its config"),
    (["scale", "4", "--stage"], "--stage is for one host: an edge stages its hosts itself"),
    (["scale", "--host", "worker9=2"], "worker9 is not in DOGRAH_HOSTS"),
    (["scale", "--host-is-gone", "worker9"], "worker9 is not in DOGRAH_HOSTS"),
])
def test_an_edge_refuses_what_is_not_its_own_in_one_line(cluster: FakeCluster,
                                                         args: list[str], error: str) -> None:
    dograhctl(cluster.edge, "scale", "4")
    before = edge_files(cluster)
    cluster.calls.clear()
    code, _, err = cluster.edge.dograhctl(*args)
    assert (code, err) == (1, f"dograhctl: {error}\n")
    assert edge_files(cluster) == before and cluster.calls == []


def test_an_edge_says_what_each_host_did_and_what_it_could_not_reach(
        cluster: FakeCluster) -> None:
    code, out, _ = cluster.edge.dograhctl("scale", "4")
    assert (code, out) == (0, (
        "4 API workers behind the edge (worker1: 2 API workers (ports 8000-8001), 1 ARQ "
        "workers, singletons: dograh-ari-manager.service, dograh-campaign-orchestrator.service "
        "(started 5, stopped 0); worker2: 2 API workers (ports 8000-8001), 1 ARQ workers, "
        "singletons: none (started 3, stopped 0))\n"))
    cluster.down.add("worker2")
    code, _, err = cluster.edge.dograhctl("scale", "--host", "worker2=2")
    assert (code, err.splitlines()[-1]) == (1, "dograhctl: no answering host named worker2")
    cluster.down.add("worker1")
    code, _, err = cluster.edge.dograhctl("rebalance")
    timed_out = "port 22: Connection timed out"
    assert (code, err.splitlines()[-1]) == (
        1, "dograhctl: no worker host has a ready API worker to send to; worker1 (10.0.0.11) "
           f"does not answer: ssh: connect to host 10.0.0.11 {timed_out}; worker2 (10.0.0.12) "
           f"does not answer: ssh: connect to host 10.0.0.12 {timed_out}")
    assert upstream(cluster) == ["10.0.0.11:8000", "10.0.0.11:8001", "10.0.0.12:8000",
                                 "10.0.0.12:8001"]  # nothing to send to: nginx is left as it was


def test_the_edge_weighs_each_worker_by_its_live_calls(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.workers["worker1"].running("dograh-api@8000.service", calls=30)
    dograhctl(cluster.edge, "rebalance")
    text = cluster.edge.files.read(paths.NGINX_UPSTREAM) or ""
    weights = {endpoint: int(weight or 1)
               for endpoint, weight in re.findall(r"server (\S+?)(?: weight=(\d+))? ", text)}
    assert weights["10.0.0.11:8000"] == 1 < weights["10.0.0.12:8000"], text


def test_the_edge_waits_for_a_hosts_drain_as_long_as_it_may_last(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.calls.clear()
    cluster.timeouts.clear()
    dograhctl(cluster.edge, "restart", "--drain-timeout", "900")
    waited = dict(zip(cluster.calls, cluster.timeouts, strict=True))
    finishing = [timeout for call, timeout in waited.items() if "resume --switched" in call]
    assert finishing == [300 + 900, 300 + 900]  # its start, then the whole drain
    assert all(timeout == 300 for call, timeout in waited.items()
               if call.split()[1] == "restart"), waited
