"""Releases on real systemd: made from a local git repository (with a submodule) and a
local wheel directory, built by the build user, deployed and rolled back under live calls
and HTTP load, refused when they do not import, pruned; on Debian 12 (Debian 13's
releases are the real Dograh's, in test_real_dograh.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from bench.testbed.container import Container

from .fleet import api_ports, dograhctl, main_pid, reset
from .load import Load, assert_nothing_lost
from .releases import SOURCE, commit, make_source

pytestmark = [pytest.mark.system,
              pytest.mark.parametrize("container", ["bookworm"], indirect=True)]

ENV = "/etc/dograh/dograh.env"
RELEASES = "/var/lib/dograh-systemd/releases"
KEYS = (f"DOGRAH_SOURCE={SOURCE}\nDOGRAH_SOURCE_LAYOUT=app\n"
        "DOGRAH_MIGRATIONS_DIR=migrations\nDOGRAH_KEEP_RELEASES=2\n")


@pytest.fixture
def releasing(container: Container) -> Iterator[Container]:
    """The fleet on releases of /srv/app; afterwards back on the config's own app."""
    env = container.path(ENV)
    original = env.read_text()
    reset(container, 3)
    make_source(container)
    env.write_text(original + KEYS)
    try:
        yield container
    finally:
        env.write_text(original)
        dograhctl(container, "deploy", "--in-place", "--no-drain")
        container.run("rm", "-f", "/etc/pip.conf")
        reset(container, 2)


def make(ct: Container) -> str:
    out = dograhctl(ct, "release", "make", "--app", "app:app").stdout
    assert out.startswith("release "), out
    return out.split()[1]


def answers(ct: Container, port: int) -> str:
    out = ct.run("curl", "-sf", f"http://127.0.0.1:{port}/api/v1/release", check=False).stdout
    return json.loads(out)["release"] if out else ""


def tree(ct: Container, release: str) -> str:
    return ct.sh(f"cd {RELEASES}/{release} && find . -type f -print0 | sort -z | "
                 "xargs -0 sha256sum | sha256sum").stdout


class Sampler:
    """Asks every API worker which release it runs, every 0.2 s, until stopped."""

    def __init__(self, ct: Container) -> None:
        self.ct, self.seen = ct, set[tuple[int, str]]()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        while not self.done.is_set():
            for port in api_ports(self.ct):
                release = answers(self.ct, port)
                if release:
                    self.seen.add((port, release))
            time.sleep(0.2)

    def stop(self) -> set[tuple[int, str]]:
        self.done.set()
        self.thread.join()
        return self.seen


def test_deploy_new_code_refuse_a_broken_one_roll_back_and_prune(releasing: Container) -> None:
    ct = releasing
    a = make(ct)
    assert json.loads(ct.path(f"{RELEASES}/{a}.json").read_text())["state"] == "ready"
    built = ct.run("stat", "-c", "%U %a", f"{RELEASES}/{a}/app.py").stdout.split()
    assert built == ["root", "644"]  # sealed: the app cannot change its own code
    dograhctl(ct, "deploy", a)
    lower = api_ports(ct)
    assert {answers(ct, port) for port in lower} == {"A"}
    assert ct.run("curl", "-sf", f"http://127.0.0.1:{lower[0]}/api/v1/release").stdout \
        .count('"greeting":"hello"') == 1  # the submodule and the wheel are in the release

    # B under 40 live calls and HTTP load: nothing lost; old workers serve A until they stop.
    commit(ct, "B")
    b = make(ct)
    before = tree(ct, a)
    load = Load(ct, "--duration", "14", "--rps", "20", "--call-rate", "1",
                "--call-seconds", "6", "--initial-calls", "40")
    sampler = Sampler(ct)
    dograhctl(ct, "deploy", b)
    seen = sampler.stop()
    assert_nothing_lost(load.result())
    upper = api_ports(ct)
    assert {answers(ct, port) for port in upper} == {"B"}
    assert {release for port, release in seen if port in lower} == {"A"}, seen
    assert tree(ct, a) == before  # A's directory never changed

    # C does not import: refused before anything moves.
    commit(ct, "C", app="import no_such_module\n")
    pids = {port: main_pid(ct, f"dograh-api@{port}.service") for port in upper}
    refused = dograhctl(ct, "release", "make", "--app", "app:app", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].endswith(
        "the check failed: app:app does not import: ModuleNotFoundError: No module named "
        "'no_such_module'")
    assert {port: main_pid(ct, f"dograh-api@{port}.service") for port in upper} == pids

    # Back to A under load; a worker killed afterwards comes back on A, never B.
    load = Load(ct, "--duration", "10", "--rps", "20", "--call-rate", "1",
                "--call-seconds", "5", "--initial-calls", "20")
    dograhctl(ct, "rollback")
    assert_nothing_lost(load.result())
    port = api_ports(ct)[0]
    ct.run("kill", "-9", str(main_pid(ct, f"dograh-api@{port}.service")))
    ct.sh(f"until curl -sf http://127.0.0.1:{port}/api/v1/release >/dev/null; do sleep 0.1; done",
          timeout=30)
    assert {answers(ct, p) for p in api_ports(ct)} == {"A"}

    # Keep 2: after four deploys two releases remain, and none a process runs from went.
    for name in ("D", "E"):
        commit(ct, name)
        dograhctl(ct, "deploy", make(ct))
    kept = sorted(p.name for p in ct.path(RELEASES).iterdir() if p.is_dir())
    assert len(kept) == 2, kept
    assert {answers(ct, p) for p in api_ports(ct)} == {"E"}
    listing = dograhctl(ct, "releases").stdout
    assert "(current, in use)" in listing and "(previous)" in listing
