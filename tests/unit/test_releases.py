"""Releases on a fake host: made from a local git repository with a submodule (fetched
and built for real, by the host's own git and Python), checked, deployed with a band
switch, rolled back, pruned; across hosts, all or none."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dograh_systemd import paths
from dograh_systemd.cluster import agent
from dograh_systemd.cluster.keys import Keys

from .fake_host import FakeCluster, FakeHost, make_cluster

KEYS = Keys("dograh")

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

APP = '''import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "lib"))
import greeting
from fastapi import FastAPI

app = FastAPI()


@app.get("/api/v1/health")
async def health() -> dict:
    return {{"status": "ok", "answer": "{answer}", "greeting": greeting.WORD}}
'''
# The release's venv runs this checkout's own interpreter (its packages are the app's).
BUILD = ("mkdir -p venv/bin && printf '#!/bin/sh\\nexec %s \"$@\"\\n' "
         f"{sys.executable} > venv/bin/python && chmod +x venv/bin/python")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c",
                           "user.email=t@t", "-c", "protocol.file.allow=always", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An app with a submodule and a migrations directory, one commit per answer."""
    lib, app = tmp_path / "greeting", tmp_path / "app"
    for path in (lib, app):
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
    (lib / "greeting.py").write_text('WORD = "hello"\n')
    git(lib, "add", ".")
    git(lib, "commit", "-qm", "greeting")
    (app / "app.py").write_text(APP.format(answer="A"))
    (app / "migrations").mkdir()
    (app / "migrations/0001_calls.py").write_text("")
    git(app, "submodule", "add", "-q", str(lib), "lib")
    git(app, "add", ".")
    git(app, "commit", "-qm", "A")
    git(app, "tag", "v1.0")
    return app


def commit(repo: Path, answer: str, migration: str | None = None,
           app: str | None = None) -> None:
    (repo / "app.py").write_text(app or APP.format(answer=answer))
    if migration:
        (repo / "migrations" / migration).write_text("")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", answer)


def configure(host: FakeHost, repo: Path, extra: str = "") -> None:
    host.configure(f"FASTAPI_WORKERS=2\nDOGRAH_SOURCE={repo}\nDOGRAH_SOURCE_LAYOUT=app\n"
                   f"DOGRAH_MIGRATIONS_DIR=migrations\n"
                   f"DOGRAH_BUILD_COMMAND=/bin/sh -c {json.dumps(BUILD)}\n{extra}")


def make(host: FakeHost, *args: str) -> str:
    code, out, err = host.dograhctl("release", "make", "--app", "app:app", *args)
    assert code == 0, err
    return out.split()[1]  # "release ID is ready: ..."


def dograhctl(host: FakeHost, *args: str) -> str:
    code, out, err = host.dograhctl(*args)
    assert code == 0, (code, out, err)
    return out


def deployed_then_made(host: FakeHost, repo: Path, migration: str | None = None
                       ) -> tuple[str, str]:
    """Release A made and deployed, then release B made from a later commit."""
    configure(host, repo)
    dograhctl(host, "scale")
    a = make(host)
    dograhctl(host, "deploy", a)
    host.clock.now += 1
    commit(repo, "B", migration)
    return a, make(host)


def api_cwds(host: FakeHost) -> set[str]:
    return {Path(unit.cwd).name for name, unit in host.units.items()
            if name.startswith("dograh-api@") and unit.active == "active" and unit.cwd}


def record(host: FakeHost) -> dict:  # type: ignore[type-arg]
    return json.loads(host.files.read(paths.RECORD) or "{}")


def test_a_release_is_fetched_built_sealed_and_checked(host: FakeHost, repo: Path) -> None:
    configure(host, repo)
    release = make(host)
    described = json.loads(host.files.read(paths.RELEASES_DIR / f"{release}.json") or "")
    assert described["state"] == "ready" and described["version"] == "v1.0"
    assert described["commit"] == git(repo, "rev-parse", "HEAD")
    assert described["migrations"] == ["0001_calls.py"]
    directory = host.files.path(paths.RELEASES_DIR / release)
    assert (directory / "lib/greeting.py").read_text() == 'WORD = "hello"\n'  # the submodule
    for folder, subfolders, names in os.walk(directory):
        for entry in [folder, *(os.path.join(folder, n) for n in subfolders + names)]:
            if not os.path.islink(entry):
                assert not os.stat(entry).st_mode & (stat.S_IWGRP | stat.S_IWOTH), entry
    assert host.log[:3] == [f"write {paths.RELEASES_DIR}/{release}.json",
                            f"write {paths.BUILD_GITCONFIG}",
                            f"write {paths.RELEASES_DIR}/{release}.log"]
    assert not [e for e in host.log if e.startswith(("start", "stop", "restart", "nginx"))]
    listing = dograhctl(host, "releases")
    assert release in listing and "v1.0" in listing and "ready" in listing


def test_deploy_moves_every_process_onto_the_release(host: FakeHost, repo: Path) -> None:
    configure(host, repo)
    dograhctl(host, "scale")
    first = make(host)
    out = dograhctl(host, "deploy", first)
    assert out.startswith("deployed: 2 API workers (ports 8100-8101)")
    unit = host.files.read(paths.UNIT_DIR / "dograh-api@.service") or ""
    directory = paths.RELEASES_DIR / first
    assert f"WorkingDirectory={directory}\n" in unit
    assert f"ExecStart={directory}/venv/bin/python -m dograh_systemd.worker --app app:app" in unit
    assert api_cwds(host) == {first}
    assert record(host)["fleet"]["release"] == first
    assert host.violations == []


def test_a_new_release_keeps_old_workers_on_their_own_code(host: FakeHost, repo: Path) -> None:
    a, b = deployed_then_made(host, repo)
    before = {p: p.read_bytes() for p in host.files.path(paths.RELEASES_DIR / a).rglob("*")
              if p.is_file()}
    for name in ("dograh-api@8100.service", "dograh-api@8101.service"):
        host.units[name].load = host.units[name].load.__class__(websockets=2, requests=0)
        host.ending[name] = host.clock.now + 5
    host.log.clear()
    dograhctl(host, "deploy", b)
    # The old band kept serving from A until it drained and stopped.
    stop = host.log.index("stop dograh-api@8100.service")
    assert host.log.index("nginx 8000 8001") < stop
    assert not [e for e in host.log if e.startswith("cut ")]
    assert api_cwds(host) == {b}
    after = {p: p.read_bytes() for p in host.files.path(paths.RELEASES_DIR / a).rglob("*")
             if p.is_file()}
    assert after == before  # A's directory did not change
    fleet = record(host)["fleet"]
    assert (fleet["release"], fleet["previous_release"]) == (b, a)


def test_a_release_that_does_not_import_is_refused_and_changes_nothing(
        host: FakeHost, repo: Path) -> None:
    configure(host, repo)
    dograhctl(host, "scale")
    good = make(host)
    dograhctl(host, "deploy", good)
    commit(repo, "C", app="import no_such_module\n")
    host.clock.now += 1
    host.log.clear()
    code, _, err = host.dograhctl("release", "make", "--app", "app:app")
    assert code == 1
    error = err.strip().splitlines()[-1]  # the lines before are progress
    assert error.startswith("dograhctl: release ") and error.endswith(
        "failed, nothing running changed: the check failed: app:app does not import: "
        "ModuleNotFoundError: No module named 'no_such_module'")
    assert not [e for e in host.log if e.startswith(("start", "stop", "restart", "nginx"))]
    assert "failed" in dograhctl(host, "releases")
    code, _, err = host.dograhctl("deploy", error.split()[2])
    assert code == 1 and "is failed, not ready" in err
    assert api_cwds(host) == {good}


def test_rollback_goes_back_and_a_restart_stays_there(host: FakeHost, repo: Path) -> None:
    a, b = deployed_then_made(host, repo)
    dograhctl(host, "deploy", b)
    assert dograhctl(host, "rollback").startswith("deployed: ")
    assert api_cwds(host) == {a}
    fleet = record(host)["fleet"]
    assert (fleet["release"], fleet["previous_release"]) == (a, b)
    # A worker killed later comes back on A, never B.
    host.units["dograh-api@8000.service"].active = "activating"
    host.tick()
    assert api_cwds(host) == {a}
    assert host.violations == []


def test_rollback_over_unknown_migrations_needs_force(host: FakeHost, repo: Path) -> None:
    a, b = deployed_then_made(host, repo, migration="0002_campaigns.py")
    dograhctl(host, "deploy", b)
    host.log.clear()
    code, _, err = host.dograhctl("rollback")
    assert code == 1
    assert err == (f"dograhctl: release {b} ran migrations that {a} does not know "
                   f"(0002_campaigns.py): {a} may not run against the database as it is now; "
                   "roll back anyway with: dograhctl rollback --force\n")
    assert host.log == []
    dograhctl(host, "rollback", "--force")
    assert api_cwds(host) == {a}


def test_keep_two_never_prunes_what_runs(host: FakeHost, repo: Path) -> None:
    configure(host, repo, "DOGRAH_KEEP_RELEASES=2\n")
    dograhctl(host, "scale")
    made = []
    for answer in "BCDE":
        commit(repo, answer)
        host.clock.now += 1
        made.append(make(host))
        dograhctl(host, "deploy", made[-1])
    left = sorted(p.name for p in host.files.listing(paths.RELEASES_DIR))
    assert left == sorted(f"{release}{suffix}" for release in made[-2:]
                          for suffix in ("", ".json", ".log"))
    assert api_cwds(host) == {made[-1]}
    # One still in use survives a prune past its turn: a process the admin started by
    # hand from it (dograhctl leaves such instances alone) runs on.
    host.running("dograh-arq@reports.service")
    host.units["dograh-arq@reports.service"].cwd = paths.RELEASES_DIR / made[-2]
    for answer in "FG":
        commit(repo, answer)
        host.clock.now += 1
        dograhctl(host, "deploy", make(host))
    assert made[-2] in [p.name for p in host.files.listing(paths.RELEASES_DIR)]


def test_a_release_of_an_app_needs_its_app(host: FakeHost, repo: Path) -> None:
    configure(host, repo)
    code, _, err = host.dograhctl("release", "make")
    assert code == 1 and err == ("dograhctl: a release of the app layout needs its app: "
                                 "--app module:attribute, or DOGRAH_APP\n")
    assert host.log == []


def test_a_release_name_is_checked(host: FakeHost, repo: Path) -> None:
    configure(host, repo)
    for args in (["release", "make", "--id", "../x"], ["deploy", "a b"],
                 ["release", "make", "--ref", "--upload-pack=touch /tmp/x"]):
        code, _, err = host.dograhctl(*args)
        assert code in (1, 2) and len(err.strip().splitlines()) == 1, (args, err)
    assert host.log == []


# -- across hosts ---------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path, repo: Path) -> FakeCluster:
    found = make_cluster(tmp_path, {"edge": "10.0.0.10"},
                         {"worker1": "10.0.0.11", "worker2": "10.0.0.12"},
                         edge_config=f"FASTAPI_WORKERS=4\nDOGRAH_SOURCE={repo}\n"
                         "DOGRAH_SOURCE_LAYOUT=app\n")
    for name in ("worker1", "worker2"):
        host = found.workers[name]
        configure(host, repo, host.files.read(Path("/etc/dograh/dograh.env")) or "")
    found.run(2)
    return found


def made_there(cluster: FakeCluster, host: str) -> list[str]:
    """The release make lines ``host``'s agent ran."""
    return [" ".join(job) for job in cluster.workers[host].ran if "make" in job]


def test_every_host_builds_the_same_release_then_all_move(cluster: FakeCluster) -> None:
    edge = cluster.edge
    dograhctl(edge, "scale", "4")
    out = dograhctl(edge, "release", "make", "--app", "app:app")
    release = out.split()[1]
    assert out == f"release {release} is ready on 2 host(s)\n"
    dograhctl(edge, "deploy")
    for host in cluster.workers.values():
        assert api_cwds(host) == {release}
    assert sorted(a for a, _ in edge.upstream) == ["10.0.0.11", "10.0.0.11", "10.0.0.12",
                                                    "10.0.0.12"]
    for host in cluster.hosts.values():
        assert host.violations == []


def test_a_release_is_one_commit_on_every_host(cluster: FakeCluster, repo: Path) -> None:
    """The branch moves while the hosts build: every host still builds the commit the
    edge resolved once."""
    edge, worker2 = cluster.edge, cluster.workers["worker2"]
    dograhctl(edge, "scale", "4")
    pinned = git(repo, "rev-parse", "HEAD")
    build = worker2.run_background

    def late() -> list[tuple[int, str, str]]:
        if any("make" in job for job in worker2.background):
            commit(repo, "B")  # worker2 fetches after the branch moved on
            worker2.run_background = build  # type: ignore[method-assign]
        return build()
    worker2.run_background = late  # type: ignore[method-assign]
    dograhctl(edge, "release", "make", "--app", "app:app", "--ref", "main", "--id", "r1")
    assert git(repo, "rev-parse", "HEAD") != pinned
    listed = json.loads(dograhctl(edge, "releases", "--json"))["hosts"]
    assert [r["commit"] for host in ("worker1", "worker2") for r in listed[host]["releases"]] \
        == [pinned, pinned]
    assert all(f"--ref {pinned} --id r1" in line for host in ("worker1", "worker2")
               for line in made_there(cluster, host))


def test_one_host_that_cannot_build_stops_the_deploy_before_any_switch(
        cluster: FakeCluster) -> None:
    edge, worker2 = cluster.edge, cluster.workers["worker2"]
    dograhctl(edge, "scale", "4")
    env = Path("/etc/dograh/dograh.env")
    worker2.configure((worker2.files.read(env) or "").replace(
        "DOGRAH_BUILD_COMMAND=", "DOGRAH_BUILD_COMMAND=/bin/false #"))
    code, _, err = edge.dograhctl("release", "make", "--app", "app:app")
    assert code == 1
    assert "is not ready on worker2 (it is failed)" in err
    assert err.rstrip().endswith("nothing was deployed")
    edge.log.clear()
    release = json.loads(dograhctl(edge, "releases", "--json"))["hosts"]["worker1"][
        "releases"][0]["id"]
    code, _, err = edge.dograhctl("deploy", release)
    assert code == 1 and "no host moved" in err
    assert not [e for e in edge.log if e.startswith("nginx ")]
    assert api_cwds(cluster.workers["worker1"]) == {"dograh"}  # /var/lib/dograh: in place


def test_the_edge_makes_lists_deploys_and_rolls_back_across_hosts(
        cluster: FakeCluster, repo: Path) -> None:
    edge = cluster.edge
    dograhctl(edge, "scale", "4")
    assert dograhctl(edge, "release", "make", "--app", "app:app", "--id", "first") == \
        "release first is ready on 2 host(s)\n"
    first = git(repo, "rev-parse", "HEAD")
    assert made_there(cluster, "worker1") == [
        f"--config /etc/dograh/dograh.env release make {repo} --ref {first} --id first "
        "--layout app --app app:app"]
    commit(repo, "B")
    dograhctl(edge, "release", "make", "--app", "app:app", "--id", "second", "--ref", "main")
    dograhctl(edge, "deploy", "first")
    # Only the config's app ran before "first": the edge asks no host to roll back.
    code, out, _ = edge.dograhctl("rollback")
    refused = "it ran no other release before this one"
    assert code == 1 and out.rstrip().endswith(
        f"; worker1 did not move ({refused}); worker2 did not move ({refused})")
    assert len(edge.upstream) == 4
    assert dograhctl(edge, "deploy").startswith("deployed: ")  # the newest ready everywhere
    for host in cluster.workers.values():
        assert api_cwds(host) == {"second"}
    listed = dograhctl(edge, "releases").splitlines()
    assert listed[0] == "Host worker1 (10.0.0.11): runs second"
    assert [line.split()[:2] for line in listed[1:3]] == [["first", "ready"],
                                                          ["second", "ready"]]
    assert listed[3] == "Host worker2 (10.0.0.12): runs second"
    assert dograhctl(edge, "rollback").startswith("rolled back: ")
    for host in cluster.workers.values():
        assert api_cwds(host) == {"first"}
        assert host.violations == []
    cluster.power_off("worker2")
    cluster.run(12)
    listed = dograhctl(edge, "releases").splitlines()
    assert listed[-1].startswith("Host worker2 (10.0.0.12): is not registered")
    code, _, err = edge.dograhctl("deploy", "second")
    assert code == 1 and err.splitlines()[-1].startswith(
        "dograhctl: release second is not ready on worker2 (is not registered")


def test_the_edge_needs_a_source_and_a_release_ready_everywhere(cluster: FakeCluster,
                                                                 repo: Path) -> None:
    edge = cluster.edge
    dograhctl(edge, "scale", "4")
    code, _, err = edge.dograhctl("deploy")
    assert (code, err) == (1, "dograhctl: no release is ready on every host; make one with: "
                              "dograhctl release make\n")
    code, _, err = edge.dograhctl("deploy", "third")
    assert (code, err) == (1, "dograhctl: release third is not ready on worker1 (it is "
                              "missing); worker2 (it is missing); no host moved\n")
    code, _, err = edge.dograhctl("release", "make", "--app", "app:app", "--ref", "nowhere")
    assert code == 1 and err.startswith(f"dograhctl: nowhere is neither a branch nor a tag of "
                                        f"{repo}")
    edge.configure((edge.files.read(Path("/etc/dograh/dograh.env")) or "").replace(
        f"DOGRAH_SOURCE={repo}\n", ""))
    code, _, err = edge.dograhctl("release", "make", "--app", "app:app")
    assert (code, err) == (1, "dograhctl: no source to make a release from: give one, or set "
                              "DOGRAH_SOURCE\n")


def test_an_edges_release_is_told_listed_and_kept_to_its_newest(cluster: FakeCluster,
                                                                 repo: Path) -> None:
    edge = cluster.edge
    edge.configure((edge.files.read(Path("/etc/dograh/dograh.env")) or "")
                   + "DOGRAH_KEEP_RELEASES=2\nDOGRAH_APP=app:app\n")
    dograhctl(edge, "scale", "4")
    first = git(repo, "rev-parse", "HEAD")
    code, out, err = edge.dograhctl("release", "make", "--app", "app:app", "--id", "first",
                                    "--json")
    assert code == 0
    assert f"release first (commit {first[:12]}): made by worker1, worker2\n" in err
    made = json.loads(out)
    assert made["down"] == {}
    for name in ("worker1", "worker2"):
        assert made["hosts"][name]["release"] == ""
        assert [(r["id"], r["state"], r["commit"]) for r in made["hosts"][name]["releases"]] \
            == [("first", "ready", first)]
    code, _, err = edge.dograhctl("release", "make", "--app", "app:app", "--id", "first")
    assert (code, err) == (1, "dograhctl: release first exists already\n")
    assert dograhctl(edge, "releases").splitlines() == [
        "Host worker1 (10.0.0.11): runs its config app, in place",
        f"  {'first':20} {'ready':8} {first[:12]}",
        "Host worker2 (10.0.0.12): runs its config app, in place",
        f"  {'first':20} {'ready':8} {first[:12]}"]
    dograhctl(edge, "deploy", "first")
    status = dograhctl(edge, "status").splitlines()
    assert "Host worker1 (10.0.0.11): runs release first" in status
    for release in ("second", "third"):  # the app: the edge's DOGRAH_APP
        dograhctl(edge, "release", "make", "--id", release)
    # DOGRAH_KEEP_RELEASES=2: the edge asks for the newest two only.
    kept = sorted(key.rsplit("/", 1)[1] for key in cluster.etcd.keys
                  if key.startswith(KEYS.release("")))
    assert kept == ["second", "third"]


def test_a_release_no_host_down_can_make_is_refused(cluster: FakeCluster) -> None:
    edge = cluster.edge
    dograhctl(edge, "scale", "4")
    cluster.power_off("worker2")
    cluster.run(agent.TTL + 3)
    code, _, err = edge.dograhctl("release", "make", "--app", "app:app", "--id", "r1")
    assert code == 1
    assert err.splitlines()[-1] == (
        "dograhctl: release r1 is not ready on worker2 (is not registered (its agent's lease "
        "ended, or it never started)); nothing was deployed")
    listed = json.loads(dograhctl(edge, "releases", "--json"))
    assert set(listed["hosts"]) == {"worker1"} and set(listed["down"]) == {"worker2"}
    cluster.power_off("worker1")
    cluster.run(agent.TTL + 3)
    code, _, err = edge.dograhctl("release", "make", "--app", "app:app", "--id", "r2")
    down = "is not registered (its agent's lease ended, or it never started)"
    assert (code, err.splitlines()[-1]) == (
        1, f"dograhctl: release r2 is not ready on worker1 ({down}); worker2 ({down}); "
           "nothing was deployed")
