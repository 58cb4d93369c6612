"""An edge's own verbs, as its operator sees them: what status, scale, restart, rollback,
resume, rebalance and render print and exit with, what they ask of each worker host in
etcd, what the edge writes and runs itself, and how it gives up on a host that never
carries a change out. The real dograhctl and agents on fake hosts over one fake etcd."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from dograh_systemd import paths
from dograh_systemd.cluster import agent
from dograh_systemd.cluster.keys import Keys
from dograh_systemd.host.commands import Completed

from .fake_etcd import FakeClient
from .fake_host import FakeCluster, FakeHost, NginxProcess, dograhctl, make_cluster

WORKERS = {"worker1": "10.0.0.11", "worker2": "10.0.0.12"}
KEYS = Keys("dograh")
UI = "dograh-ui.service"
NOT_REGISTERED = "is not registered (its agent's lease ended, or it never started)"


@pytest.fixture
def cluster(tmp_path: Path) -> FakeCluster:
    """One edge over two worker hosts that run Dograh's UI as a third singleton."""
    found = make_cluster(tmp_path, {"edge": "10.0.0.10"}, WORKERS,
                         edge_config="FASTAPI_WORKERS=4\nENABLE_DOGRAH_UI=1\n",
                         worker_config="FASTAPI_WORKERS=2\nENABLE_DOGRAH_UI=1\n")
    found.run(2)
    return found


def lines(host: FakeHost, *args: str, code: int = 0) -> list[str]:
    return dograhctl(host, *args, code=code).splitlines()


def desired(cluster: FakeCluster, host: str) -> dict:
    return json.loads(cluster.etcd.value(KEYS.desired(host)) or b"{}")


def freeze(cluster: FakeCluster, name: str) -> None:
    """``name``'s agent stops, its last registration stays for good (a lease-less key):
    a host that looks alive and never carries anything out."""
    honest = cluster.etcd.value(KEYS.host(name))
    assert honest
    cluster.stopped.add(name)
    cluster.etcd.write(KEYS.host(name), honest, 0)


# -- scale, restart, rollback: what the operator is told ---------------------------------

def test_a_scale_says_where_singletons_may_run_and_each_hosts_progress(
        cluster: FakeCluster) -> None:
    # No count: the edge's own FASTAPI_WORKERS, spread over the hosts.
    assert lines(cluster.edge, "scale") == [
        "4 API workers behind the edge (worker1, worker2 carried it out)",
        "singletons may run on: ari-manager worker1, worker2; campaign-orchestrator "
        "worker1, worker2; ui worker1, worker2",
        "worker1 (10.0.0.11): scale at its switch phase",
        "worker2 (10.0.0.12): scale at its switch phase"]
    # The placement is in etcd already: not said again.
    assert lines(cluster.edge, "scale", "2") == [
        "2 API workers behind the edge (worker1, worker2 carried it out)",
        "worker1 (10.0.0.11): scale at its switch phase",
        "worker2 (10.0.0.12): scale at its switch phase"]


def test_a_restart_goes_host_by_host_and_says_so(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    assert lines(cluster.edge, "restart") == [
        "restarted: 4 API workers behind the edge (worker1, worker2 carried it out)",
        "worker1 (10.0.0.11): restart at its switch phase",
        "worker2 (10.0.0.12): restart at its switch phase"]


def test_each_command_asks_each_host_one_generation_on(cluster: FakeCluster) -> None:
    """What a host is asked: a fresh host starts from nothing, each command is one
    generation and a restart is one restart more."""
    dograhctl(cluster.edge, "scale", "4")
    first = desired(cluster, "worker1")
    assert first == {"format": 1, "generation": 1, "api": 2, "release": None,
                     "unknown_migrations": False, "restart": 0,
                     "drain": {"timeout": None, "stop_at_once": False}}
    dograhctl(cluster.edge, "restart")
    assert desired(cluster, "worker1") == {**first, "generation": 2, "restart": 1}
    dograhctl(cluster.edge, "restart")
    assert desired(cluster, "worker2")["restart"] == 2
    assert desired(cluster, "worker2")["generation"] == 3


def test_a_first_restart_asks_no_api_worker_of_a_fresh_host(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "restart", code=1)
    assert desired(cluster, "worker1")["api"] == 0
    assert desired(cluster, "worker1")["unknown_migrations"] is False


def test_up_to_the_limit_of_api_workers_on_one_host(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    out = dograhctl(cluster.edge, "scale", "--host", "worker1=64", "--host", "worker2=1")
    assert out.startswith("65 API workers behind the edge")
    assert desired(cluster, "worker1")["api"] == 64


def test_zero_api_workers_are_refused_in_the_operators_words(cluster: FakeCluster) -> None:
    out = dograhctl(cluster.edge, "scale", "0", code=1)
    assert out == ("dograhctl: a layout of zero API workers is refused: nothing would "
                   "answer the site; nothing was asked of any host\n")


@pytest.mark.parametrize(("args", "said"), [
    (["--arq", "2"], "--arq is each worker host's own: ARQ_WORKERS in its config"),
    (["--stage"], "--stage is for one host: a worker host stages its own changes"),
    (["--host", "worker9=2"], "worker9 is not in DOGRAH_HOSTS"),
])
def test_options_for_one_host_are_refused_before_anything_is_asked(
        cluster: FakeCluster, args: list[str], said: str) -> None:
    assert dograhctl(cluster.edge, "scale", "4", *args, code=1) == f"dograhctl: {said}\n"
    assert desired(cluster, "worker1") == {} and desired(cluster, "worker2") == {}


def test_a_rollback_no_host_can_make_fails_with_each_hosts_reason(cluster: FakeCluster
                                                                 ) -> None:
    dograhctl(cluster.edge, "scale", "4")
    why = "it ran no other release before this one"
    assert dograhctl(cluster.edge, "rollback", code=1) == (
        f"rolled back: 4 API workers behind the edge; worker1 did not move ({why}); "
        f"worker2 did not move ({why})\n")
    data = json.loads(dograhctl(cluster.edge, "rollback", "--json", code=1))
    assert data == {"upstream": ["10.0.0.11:8000", "10.0.0.11:8001", "10.0.0.12:8000",
                                 "10.0.0.12:8001"],
                    "done": [], "failed": {"worker1": why, "worker2": why}, "down": {}}


def test_the_answer_names_every_host_left_out(tmp_path: Path) -> None:
    found = make_cluster(tmp_path, {"edge": "10.0.0.10"},
                         {**WORKERS, "worker3": "10.0.0.13"},
                         edge_config="FASTAPI_WORKERS=6\n", worker_config="FASTAPI_WORKERS=2\n")
    found.run(2)
    dograhctl(found.edge, "scale")
    found.power_off("worker1")
    found.power_off("worker2")
    found.run(agent.TTL + 3)
    code, out, _ = found.edge.dograhctl("scale", "2", "--json")
    data = json.loads(out)
    assert code == 0
    assert data == {"upstream": ["10.0.0.13:8000", "10.0.0.13:8001"], "done": ["worker3"],
                    "failed": {}, "down": {"worker1": NOT_REGISTERED,
                                           "worker2": NOT_REGISTERED}}
    assert lines(found.edge, "scale", "2")[0] == (
        f"2 API workers behind the edge (worker3 carried it out); worker1 is left out "
        f"({NOT_REGISTERED}); worker2 is left out ({NOT_REGISTERED})")


def test_a_deploy_in_place_asks_every_host_for_its_config_app(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    out = dograhctl(cluster.edge, "deploy", "--in-place")
    assert out.startswith("deployed: 4 API workers behind the edge (worker1, worker2 "
                          "carried it out)")
    assert desired(cluster, "worker1")["release"] == ""
    assert desired(cluster, "worker2")["release"] == ""


def test_a_host_that_never_carries_it_out_is_given_up_at_its_deadline(
        cluster: FakeCluster) -> None:
    """Start, the drain the admin gave, start again: then the edge stops following and
    says the host goes on by itself."""
    dograhctl(cluster.edge, "scale", "4")
    freeze(cluster, "worker2")
    started = cluster.clock.monotonic()
    out = dograhctl(cluster.edge, "scale", "2", "--drain-timeout", "30", code=1)
    assert out.splitlines()[-1] == ("dograhctl: worker2 did not finish within 630s; they go "
                                    "on by themselves (follow them with: dograhctl status)")
    assert cluster.clock.monotonic() - started == pytest.approx(630, abs=0.5)
    assert desired(cluster, "worker1")["api"] == 1  # worker1 moved meanwhile


def test_a_second_edge_writing_meanwhile_stops_the_command(cluster: FakeCluster) -> None:
    """Each host's desired state is replaced at the revision it was read at."""
    dograhctl(cluster.edge, "scale", "4")
    other = cluster.etcd.client("edge2")
    replace = FakeClient.replace

    def raced(self: FakeClient, key: str, value: str, mod_revision: int,
              lease: int = 0) -> bool:
        if key == KEYS.desired("worker1"):
            other.put(key, value)  # the other edge's write lands first
        return replace(self, key, value, mod_revision, lease)

    FakeClient.replace = raced  # type: ignore[method-assign]
    try:
        out = dograhctl(cluster.edge, "scale", "2", code=1)
    finally:
        FakeClient.replace = replace  # type: ignore[method-assign]
    assert out.splitlines()[-1] == ("dograhctl: another edge changed what worker1 is asked "
                                    "meanwhile; run the command again")


def test_without_etcd_the_edge_says_so_and_changes_nothing(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.etcd.majority = False
    for verb in ("status", "scale"):
        assert dograhctl(cluster.edge, verb, code=1) == (
            "dograhctl: the cluster's etcd does not answer (etcdserver: request timed out); "
            "nothing was changed\n")


# -- status --------------------------------------------------------------------------------

def test_status_before_any_scale_names_what_is_missing(cluster: FakeCluster) -> None:
    out = lines(cluster.edge, "status", code=1)
    assert out[:8] == ["Host worker1 (10.0.0.11):", "Host worker2 (10.0.0.12):",
                       "Singleton ari-manager: held by nobody (revision 0)",
                       "Singleton campaign-orchestrator: held by nobody (revision 0)",
                       "Singleton ui: held by nobody (revision 0)",
                       "Edges alive: edge",
                       "nginx upstream dograh_api: (none)",
                       "Mismatches:"]
    assert out[-3:] == [
        f"  {role} runs nowhere: no host that may run it holds it (DOGRAH_SINGLETON_HOSTS)"
        for role in ("ari-manager", "campaign-orchestrator", "ui")]


def test_status_of_a_sound_cluster(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    out = lines(cluster.edge, "status")
    assert out[0] == "Host worker1 (10.0.0.11):"
    assert out[1].startswith("  dograh-api@8000.service ")
    assert out[1].split()[1:3] == ["active/running", "0"]
    worker2 = out.index("Host worker2 (10.0.0.12):")
    assert [line.split()[0] for line in out[1:worker2]] == [
        "dograh-api@8000.service", "dograh-api@8001.service", "dograh-arq@1.service",
        "dograh-ari-manager.service", "dograh-campaign-orchestrator.service", UI]
    singletons = [line for line in out if line.startswith("Singleton ")]
    assert [re.sub(r"\d+\)$", "N)", line) for line in singletons] == [
        f"Singleton {role}: held by worker1 (revision N)"
        for role in ("ari-manager", "campaign-orchestrator", "ui")]
    assert out[-3:] == ["Edges alive: edge",
                        "nginx upstream dograh_api: 10.0.0.11:8000 10.0.0.11:8001 "
                        "10.0.0.12:8000 10.0.0.12:8001",
                        "No mismatches."]
    data = json.loads(dograhctl(cluster.edge, "status", "--json"))
    assert set(data) == {"hosts", "down", "edges", "leaders", "upstream", "front",
                         "mismatches", "nginx_generations"}
    assert set(data["hosts"]) == {"worker1", "worker2"} and data["down"] == {}
    ui = data["leaders"]["ui"]
    assert ui["holder"] == "worker1" and ui["runs_on"] == ["worker1"]
    assert singletons[2] == f"Singleton ui: held by worker1 (revision {ui['revision']})"
    assert ui["revision"] > data["leaders"]["ari-manager"]["revision"] > 0
    assert data["upstream"] == ["10.0.0.11:8000", "10.0.0.11:8001", "10.0.0.12:8000",
                                "10.0.0.12:8001"]
    assert data["front"] == {} and data["nginx_generations"] == []


def test_status_says_a_host_is_down_and_keeps_the_others(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.power_off("worker2")
    cluster.run(agent.TTL + 3)
    out = lines(cluster.edge, "status", code=1)
    assert out[0] == "Host worker1 (10.0.0.11):"
    assert f"Host worker2 (10.0.0.12): DOWN ({NOT_REGISTERED})" in out
    assert out[-2:] == ["Mismatches:", f"  worker2 {NOT_REGISTERED}"]
    data = json.loads(dograhctl(cluster.edge, "status", "--json", code=1))
    assert data["down"] == {"worker2": NOT_REGISTERED}


def test_status_tells_a_singleton_running_twice(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    freeze(cluster, "worker2")
    honest = json.loads(cluster.etcd.value(KEYS.host("worker2")) or b"{}")
    cluster.etcd.write(KEYS.host("worker2"),
                       json.dumps({**honest, "singletons": ["ui"]}).encode(), 0)
    out = lines(cluster.edge, "status", code=1)
    assert out[-2:] == ["Mismatches:", "  ui runs on 2 hosts (worker1, worker2), not one"]
    data = json.loads(dograhctl(cluster.edge, "status", "--json", code=1))
    assert data["leaders"]["ui"]["runs_on"] == ["worker1", "worker2"]


def test_a_singleton_held_but_not_yet_registered_is_no_mismatch(cluster: FakeCluster
                                                                ) -> None:
    """The holder's lease is live, its next registration will say it runs it."""
    dograhctl(cluster.edge, "scale", "4")
    honest = json.loads(cluster.etcd.value(KEYS.host("worker1")) or b"{}")
    cluster.stopped.add("worker1")  # for less than its lease: it still holds them
    lease = cluster.etcd.keys[KEYS.host("worker1")].lease
    cluster.etcd.write(KEYS.host("worker1"),
                       json.dumps({**honest, "singletons": []}).encode(), lease)
    out = dograhctl(cluster.edge, "status")
    assert "runs nowhere" not in out and out.endswith("No mismatches.\n")


def test_status_names_a_host_that_failed_what_it_was_asked(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.workers["worker1"].failing.add("dograh-arq@1.service")
    dograhctl(cluster.edge, "restart", code=1)
    failed = json.loads(cluster.etcd.value(KEYS.host("worker1")) or b"{}")["failed"]
    assert failed
    assert f"  worker1: {failed}" in lines(cluster.edge, "status", code=1)


def test_status_tells_an_edge_whose_agent_is_gone(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.stopped.add("edge")
    cluster.run(agent.TTL + 3)
    assert "Edges alive: none" in lines(cluster.edge, "status")


def test_status_and_metrics_count_old_nginx_generations(cluster: FakeCluster) -> None:
    edge = cluster.edge
    dograhctl(edge, "scale", "4")
    edge.nginx_processes.append(NginxProcess(999, False, edge.clock.now - 120, connections=6))
    data = json.loads(dograhctl(edge, "status", "--json"))
    assert [g["calls"] for g in data["nginx_generations"]] == [3]
    assert "dograh_nginx_old_generations" in dograhctl(edge, "metrics")


# -- resume, rebalance and the agent's own turn ------------------------------------------

def test_resume_and_rebalance_on_an_edge_at_rest(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    cluster.edge.log.clear()
    assert dograhctl(cluster.edge, "resume") == (
        "nothing to finish: each host's agent finishes its own changes\n")
    assert dograhctl(cluster.edge, "rebalance") == (
        "4 API workers behind the edge, weights as they were\n")
    assert not [line for line in cluster.edge.log if line.startswith("nginx ")]


def test_resume_with_no_ready_worker_leaves_the_upstream_alone(cluster: FakeCluster) -> None:
    assert dograhctl(cluster.edge, "resume", code=1) == (
        "dograhctl: no worker host has a ready API worker to send to\n")
    dograhctl(cluster.edge, "scale", "4")
    cluster.power_off("worker1")
    cluster.power_off("worker2")
    cluster.run(agent.TTL + 3)
    before = cluster.edge.files.read(paths.NGINX_UPSTREAM)
    assert dograhctl(cluster.edge, "resume", code=1) == (
        "dograhctl: no worker host has a ready API worker to send to; "
        f"worker1 (10.0.0.11) {NOT_REGISTERED}; worker2 (10.0.0.12) {NOT_REGISTERED}\n")
    assert cluster.edge.files.read(paths.NGINX_UPSTREAM) == before


def test_resume_puts_back_an_upstream_the_edge_lost(cluster: FakeCluster) -> None:
    """The record is gone (a restored disk, say): resume renders it from the
    registrations again."""
    dograhctl(cluster.edge, "scale", "4")
    cluster.stopped.add("edge")  # its agent would do it otherwise
    cluster.edge.files.path(paths.RECORD).unlink()
    assert dograhctl(cluster.edge, "resume") == (
        "nginx upstream dograh_api: 10.0.0.11:8000 10.0.0.11:8001 10.0.0.12:8000 "
        "10.0.0.12:8001\n")
    assert len(cluster.edge.upstream) == 4


def weights(host: FakeHost) -> dict[str, int]:
    text = host.files.read(paths.NGINX_UPSTREAM) or ""
    return {f"{a}:{p}": int(w or 1) for a, p, w in
            re.findall(r"server ([0-9.]+):(\d+)(?: weight=(\d+))?", text)}


def test_rebalance_weighs_the_upstream_again_by_the_live_calls(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    even = weights(cluster.edge)
    assert len(set(even.values())) == 1
    worker2 = cluster.workers["worker2"]
    worker2.running("dograh-api@8000.service", "dograh-api@8001.service", calls=20)
    cluster.run(10)  # registered; the agent keeps the weights (the members are the same)
    assert weights(cluster.edge) == even
    assert dograhctl(cluster.edge, "rebalance") == (
        "nginx upstream dograh_api: 10.0.0.11:8000 10.0.0.11:8001 10.0.0.12:8000 "
        "10.0.0.12:8001\n")
    weighed = weights(cluster.edge)
    assert weighed["10.0.0.11:8000"] > weighed["10.0.0.12:8000"]


def test_the_agent_leaves_the_upstream_to_a_dograhctl_at_work(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    before = cluster.edge.files.read(paths.NGINX_UPSTREAM)
    with cluster.edge.lock(print, 0):
        cluster.power_off("worker2")
        cluster.run(agent.TTL + 3)
        assert cluster.agent("edge").status == (
            "the upstream stays as it was: another dograhctl is at work here; the next "
            "cycle tries again")
        assert cluster.edge.files.read(paths.NGINX_UPSTREAM) == before
    # It does not wait for the lock: its next cycle comes soon enough.
    assert not [line for line in cluster.said["edge"] if line.startswith("waiting for")]
    cluster.run(2)
    assert {a for a, _ in cluster.edge.upstream} == {"10.0.0.11"}


@pytest.mark.parametrize("verb", ["resume", "rebalance", "scale"])
def test_a_verb_waits_for_a_dograhctl_at_work_then_gives_up(cluster: FakeCluster, verb: str
                                                            ) -> None:
    dograhctl(cluster.edge, "scale", "4")
    with cluster.edge.lock(print, 0):
        code, _, err = cluster.edge.dograhctl(verb)
    said = err.splitlines()
    assert code == 75  # EX_TEMPFAIL: busy, try again
    assert re.fullmatch(r"waiting for another dograhctl \(.+\) to finish", said[0]), said
    assert re.fullmatch(r"dograhctl: another dograhctl \(.+\) has held \S+ for more than "
                        r"60s; try again when it is done", said[-1]), said


def test_the_ui_is_reached_where_it_runs(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    assert "proxy_pass http://10.0.0.11:3010;" in (cluster.edge.files.read(paths.NGINX_SITE)
                                                   or "")
    cluster.power_off("worker1")
    cluster.run(agent.TTL + 8)  # worker2 holds the UI now, and registers so
    site = cluster.edge.files.read(paths.NGINX_SITE) or ""
    assert "proxy_pass http://10.0.0.12:3010;" in site and "10.0.0.11:3010" not in site


def test_the_ui_goes_first_where_the_config_places_it(tmp_path: Path) -> None:
    found = make_cluster(tmp_path, {"edge": "10.0.0.10"}, WORKERS,
                         edge_config="FASTAPI_WORKERS=4\nENABLE_DOGRAH_UI=1\n"
                                     'DOGRAH_SINGLETON_HOSTS="ui=worker2,worker1"\n',
                         worker_config="FASTAPI_WORKERS=2\nENABLE_DOGRAH_UI=1\n")
    found.run(2)
    out = dograhctl(found.edge, "scale", "4")
    assert "ui worker2, worker1" in out
    ui = ("    # Dograh UI (Next.js)\n    location / {\n"
          "        proxy_pass http://10.0.0.12:3010;")
    assert ui in (found.edge.files.read(paths.NGINX_SITE) or "")
    # Rendered from the config alone (no registration read): the first it places it on.
    staging = tmp_path / "staging"
    dograhctl(found.edge, "render", "--root", str(staging))
    assert ui in (staging / paths.NGINX_SITE.relative_to("/")).read_text()


def test_doctor_on_an_edge_checks_its_cluster_and_its_site(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    out = lines(cluster.edge, "doctor")
    assert out[0].startswith("ok   etcd https://10.0.0.10:2379: answers")
    assert "ok   nginx config: nginx -t is fine" in out
    assert out[-1] == f"{len(out) - 1} ok, 0 failed"


# -- an edge outside any cluster; render ------------------------------------------------

def test_an_edge_that_joined_no_cluster_readies_itself_and_says_what_next(
        tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    # Its etcd named, but neither its CA nor its password here yet.
    host.configure('DOGRAH_HOSTS="worker1=10.0.0.11"\n'
                   "DOGRAH_ETCD_ENDPOINTS=https://10.0.0.10:2379\n")
    assert dograhctl(host, "scale", "2") == (
        "this edge has joined no cluster yet; its own units are in place. Create its etcd "
        "(dograhctl etcd create) or join it (dograhctl etcd join FILE), then: "
        "dograhctl scale\n")
    assert host.enabled() == [paths.AGENT_UNIT, paths.METRICS_TIMER]
    assert host.files.exists(paths.UNIT_DIR / paths.AGENT_UNIT)


def test_an_edge_runs_its_own_units_and_no_workers(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    installed = sorted(p.name for p in cluster.edge.files.path(paths.UNIT_DIR).iterdir()
                       if p.is_file())
    assert paths.AGENT_UNIT in installed and paths.TARGET in installed
    assert not [name for name in installed if name.startswith(("dograh-api", "dograh-arq"))]
    agent_unit = cluster.edge.files.read(paths.UNIT_DIR / paths.AGENT_UNIT) or ""
    assert f"WatchdogSec={agent.WATCHDOG}" in agent_unit


def test_render_into_a_directory_writes_there_only(cluster: FakeCluster, tmp_path: Path
                                                   ) -> None:
    dograhctl(cluster.edge, "scale", "4")
    edge = cluster.edge
    edge.log.clear()
    edge.writes.clear()
    staging = tmp_path / "staging"
    out = lines(edge, "render", "--root", str(staging))
    written = {Path(line.strip()) for line in out[1:]}
    assert out[0] == f"{len(written)} file(s) changed"
    for path in (paths.NGINX_SITE, paths.NGINX_UPSTREAM, paths.UNIT_DIR / paths.AGENT_UNIT,
                 paths.UNIT_DIR / paths.TARGET):
        assert path in written
        assert (staging / path.relative_to("/")).read_text() == edge.files.read(path)
    assert edge.writes == [] and edge.log == []


def test_a_dry_run_shows_the_diff_and_writes_nothing(cluster: FakeCluster) -> None:
    dograhctl(cluster.edge, "scale", "4")
    edge = cluster.edge
    assert lines(edge, "render", "--dry-run") == ["0 file(s) would change"]
    config = edge.files.path(Path("/etc/dograh/dograh.env"))
    config.write_text(config.read_text() + "DOGRAH_NGINX_SERVER_NAME=dograh.example\n")
    site = edge.files.read(paths.NGINX_SITE) or ""
    edge.writes.clear()
    edge.log.clear()
    out = dograhctl(edge, "render", "--dry-run")
    assert f"--- {paths.NGINX_SITE}" in out and f"+++ {paths.NGINX_SITE}" in out
    assert re.search(r"^\+\s+server_name dograh\.example;$", out, re.M), out
    assert re.search(r"^-\s+server_name ", out, re.M), out
    assert out.endswith(f"file(s) would change\n  {paths.NGINX_SITE}\n") or \
        f"  {paths.NGINX_SITE}" in out
    assert edge.writes == [] and edge.log == []
    assert edge.files.read(paths.NGINX_SITE) == site


def test_render_on_the_live_edge_reloads_nginx_and_restarts_no_agent_unchanged(
        cluster: FakeCluster) -> None:
    edge = cluster.edge
    dograhctl(edge, "scale", "4")
    config = edge.files.path(Path("/etc/dograh/dograh.env"))
    config.write_text(config.read_text() + "DOGRAH_NGINX_SERVER_NAME=dograh.example\n")
    edge.log.clear()
    out = dograhctl(edge, "render")
    assert f"  {paths.NGINX_SITE}" in out
    assert "server_name dograh.example;" in (edge.files.read(paths.NGINX_SITE) or "")
    assert [line for line in edge.log if line.startswith("nginx ")] == [
        "nginx 10.0.0.11:8000 10.0.0.11:8001 10.0.0.12:8000 10.0.0.12:8001"]
    assert f"restart {paths.AGENT_UNIT}" not in edge.log


def test_an_agent_whose_unit_changed_starts_again_on_it(cluster: FakeCluster) -> None:
    edge = cluster.edge
    dograhctl(edge, "scale", "4")
    unit = edge.files.path(paths.UNIT_DIR / paths.AGENT_UNIT)
    unit.write_text(unit.read_text() + "# edited by hand\n")
    edge.log.clear()
    dograhctl(edge, "render")
    assert f"restart {paths.AGENT_UNIT}" in edge.log


def test_the_floating_address_lines_in_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """Two addresses (one v4, one v6), held by nobody then by both (a split); times in UTC
    whatever the host's zone."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        edges = {"edge1": "10.0.0.10", "edge2": "10.0.0.20"}
        found = make_cluster(tmp_path, edges, WORKERS, edge_config="FASTAPI_WORKERS=4\n",
                             worker_config="FASTAPI_WORKERS=2\n")
        addresses = "10.0.0.100/24 fd00::100/64"
        for name, host in found.edges.items():
            peer = next(a for e, a in edges.items() if e != name)
            config = host.files.path(Path("/etc/dograh/dograh.env"))
            config.write_text(config.read_text() + f'DOGRAH_FRONT_ADDRESS="{addresses}"\n'
                              f"DOGRAH_FRONT_INTERFACE=eth0\nDOGRAH_FRONT_PEERS={peer}\n")
            keepalived = host.files.path(paths.KEEPALIVED)
            keepalived.parent.mkdir(parents=True, exist_ok=True)
            keepalived.touch()
        found.run(2)
        edge1, edge2 = found.edges["edge1"], found.edges["edge2"]
        dograhctl(edge1, "scale", "4")
        dograhctl(edge2, "render")
        found.run(2)
        out = lines(edge1, "status", code=1)
        assert "Edges alive: edge1, edge2" in out
        assert (f"Floating address {addresses}: held by nobody; edge1, edge2 standing by"
                in out)
        assert out[-1] == (f"  no live edge holds the floating address {addresses} (see: "
                           "journalctl -u keepalived on each edge)")
        for host in (edge1, edge2):
            host.floating.update(addresses.split())
        found.run(2)
        out = lines(edge1, "status", code=1)
        since = {name: json.loads(found.edges[name].files.read(paths.FRONT_STATE) or "{}")
                 ["since"] for name in edges}
        utc = {name: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
               for name, when in since.items()}
        assert (f"Floating address {addresses}: held by edge1 since {utc['edge1']}, "
                f"edge2 since {utc['edge2']}") in out
        assert out[-1] == (f"  edge1 and edge2 all hold {addresses}: a split (VRRP between "
                           "them is cut; calls go on through each, see README)")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_render_on_the_live_edge_reloads_nginx_even_with_nothing_changed(
        cluster: FakeCluster) -> None:
    """An nginx edited or reloaded by hand meanwhile serves the site as rendered again."""
    edge = cluster.edge
    dograhctl(edge, "scale", "4")
    edge.log.clear()
    assert lines(edge, "render") == ["0 file(s) changed"]
    assert [line for line in edge.log if line.startswith("nginx ")] == [
        "nginx 10.0.0.11:8000 10.0.0.11:8001 10.0.0.12:8000 10.0.0.12:8001"]


def test_only_a_live_render_makes_the_sites_certificate(cluster: FakeCluster, tmp_path: Path
                                                        ) -> None:
    edge = cluster.edge
    dograhctl(edge, "scale", "4")
    config = edge.files.path(Path("/etc/dograh/dograh.env"))
    config.write_text(config.read_text() + "DOGRAH_TLS=self-signed\n")
    asked: list[list[str]] = []

    def openssl(args: list[str]) -> Completed:
        asked.append(args)
        return Completed(1, "", "openssl: cannot write here\n")

    edge.commands["openssl"] = openssl
    dograhctl(edge, "render", "--root", str(tmp_path / "staging"))
    dograhctl(edge, "render", "--dry-run")
    assert asked == []
    code, _, err = edge.dograhctl("render")
    assert code == 1 and asked
    assert err == ("dograhctl: making a self-signed certificate failed, the serving one is "
                   "unchanged: openssl: cannot write here\n")
