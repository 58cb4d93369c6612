"""The .deb's whole life on Debian 12 and 13, the way maintainer scripts must behave.

Install, upgrade under live calls (apt returns at once, the deploy drains in
dograh-deploy.service, no call drops), remove (whatever the admin's own nginx
sites and instances look like), purge (the file tree is as before install).
And policy: nothing starts when policy-rc.d forbids it; a fleet and an nginx
the admin stopped stay stopped across an upgrade; a capacity warning never
fails configuration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.testbed.container import Container, package_relations

from .conftest import SUITES
from .fleet import answering_ports, main_pid, units
from .load import Load, assert_nothing_lost

pytestmark = pytest.mark.system

# Debian keeps system users on purge (their uid may own files elsewhere).
KEPT_ON_PURGE = {"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow",
                 "/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-",
                 "/etc/subuid", "/etc/subgid"}
# Logs, caches and runtime state that installing any package changes.
NOT_COMPARED = ["/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/log",
                "/var/cache", "/var/lib/apt", "/var/lib/dpkg", "/var/lib/systemd",
                "/var/lib/nginx", "/root", "/etc/ld.so.cache"]
DEPLOY = "dograh-deploy.service"


def tree(ct: Container) -> dict[str, str]:
    """Every path with its type, mode and owner; regular files under /etc with a hash."""
    prune = " -o ".join(f"-path {p}" for p in NOT_COMPARED)
    listing = ct.sh(f"find / -xdev \\( {prune} \\) -prune -o -printf '%p %y %m %u:%g %l\\n'",
                    timeout=300).stdout
    entries = {}
    for line in listing.splitlines():
        path, rest = line.split(" ", 1)
        entries[path] = rest
    hashes = ct.sh("find /etc -xdev -type f -exec md5sum {} +", timeout=300).stdout
    for line in hashes.splitlines():
        digest, path = line.split(maxsplit=1)
        if path in entries:
            entries[path] += f" {digest}"
    return entries


def stat(ct: Container, path: str) -> str:
    return ct.run("stat", "-c", "%U:%G %a", path).stdout.strip()


def nginx_is_valid_and_running(ct: Container) -> None:
    ct.run("nginx", "-t", "-q")
    assert ct.run("systemctl", "is-active", "nginx").stdout.strip() == "active"


def versions_answering(ct: Container) -> set[str]:
    out = ct.sh("for i in 1 2 3 4 5 6; do curl -sf http://localhost/api/v1/worker; echo; done").stdout
    return {json.loads(line)["version"] for line in out.splitlines()}


def wait_for_deploy(ct: Container, timeout: float = 300) -> None:
    """Until dograh-deploy.service has finished; it must have succeeded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = ct.run("systemctl", "show", "-p", "ActiveState,SubState,Result", DEPLOY).stdout
        if "SubState=exited" in state or "ActiveState=failed" in state:
            assert "Result=success" in state, ct.run("journalctl", "-u", DEPLOY).stdout
            return
        time.sleep(0.5)
    pytest.fail(f"{DEPLOY} did not finish within {timeout}s")


def deb_version(deb: Path) -> str:
    return deb.name.split("_")[1]


@pytest.mark.parametrize("suite", SUITES)
def test_install_upgrade_remove_purge(suite: str, deb: Path,
                                      build_deb: Callable[[str], Path]) -> None:
    ct = Container(suite, name="dograh-lifecycle")
    try:
        ct.boot()
        ct.run("apt-get", "install", "-y", *package_relations(), timeout=300)
        before = tree(ct)

        # Fresh install: the fleet at its configured size answers through nginx at once.
        ct.install_deb(deb)
        assert json.loads(ct.run("curl", "-sf", "http://localhost/api/v1/health").stdout) == {
            "status": "ok"}
        assert stat(ct, "/etc/dograh/dograh.env") == "root:dograh 640"
        assert stat(ct, "/var/lib/dograh") == "dograh:dograh 750"
        ct.run("test", "-f", "/usr/share/man/man1/dograhctl.1.gz")
        completion = ct.path("/usr/share/bash-completion/completions/dograhctl").read_text()
        assert "_DOGRAHCTL_COMPLETE" in completion
        assert ct.run("dograhctl", "--version").stdout.strip() == (
            f"dograhctl, version {deb_version(deb)}")

        # The admin scales and edits the config.
        ct.run("dograhctl", "scale", "3")
        env = ct.path("/etc/dograh/dograh.env")
        env.write_text(env.read_text() + "\n# kept by the admin\nDOGRAH_WORKER_MEMORY_MB=350\n")
        old_pids = {main_pid(ct, f"dograh-api@{p}.service") for p in range(8000, 8003)}

        # Upgrade under live calls of 30 s: apt returns long before they end; the
        # deploy drains them in dograh-deploy.service and drops none.
        newer = build_deb(f"{deb_version(deb)}+upgrade1")
        load = Load(ct, "--duration", "10", "--rps", "20", "--call-rate", "1",
                    "--call-seconds", "30", "--jitter", "0", "--initial-calls", "6")
        started = time.monotonic()
        ct.install_deb(newer)
        took = time.monotonic() - started
        assert took < 20, f"apt took {took:.0f}s: it waited for the drain"
        wait_for_deploy(ct)
        assert_nothing_lost(load.result())
        # The deploy moved the workers to the other band of ports.
        assert units(ct, "dograh-api@*") == [f"dograh-api@{p}.service" for p in (8100, 8101, 8102)]
        assert "# kept by the admin" in env.read_text()
        assert stat(ct, "/etc/dograh/dograh.env") == "root:dograh 640"
        new_pids = {main_pid(ct, f"dograh-api@{p}.service") for p in range(8100, 8103)}
        assert not new_pids & old_pids
        assert versions_answering(ct) == {f"{deb_version(deb)}+upgrade1"}
        assert set(answering_ports(ct, 6)) == {8100, 8101, 8102}
        nginx_is_valid_and_running(ct)
        assert "Last deploy (dograh-deploy.service): finished" in ct.run(
            "dograhctl", "status").stdout

        # Remove, with an instance the admin started by hand and a broken site of
        # the admin's own: every unit stops, the site leaves nginx, nginx keeps running.
        ct.run("systemctl", "start", "dograh-arq@reports.service")
        broken = ct.path("/etc/nginx/sites-enabled/broken")
        broken.write_text("server { listen 81; bogus_directive on; }\n")
        removal = ct.run("apt-get", "remove", "-y", "dograh-systemd")
        assert "nginx was not reloaded" in removal.stdout + removal.stderr
        broken.unlink()
        ct.run("systemctl", "reload", "nginx")
        assert units(ct, "dograh-*") == []
        assert units(ct, "dograh-*", state="failed") == []
        assert "dograh" not in ct.run("ls", "/etc/nginx/sites-enabled").stdout
        nginx_is_valid_and_running(ct)
        # The reload is asynchronous: old nginx workers accept for a moment longer.
        ct.sh("until [ \"$(curl -s -o /dev/null -w '%{http_code}' "
              "http://localhost/api/v1/health)\" = 404 ]; do sleep 0.2; done", timeout=30)
        ct.run("test", "-f", "/etc/dograh/dograh.env")  # a conffile: kept until purge

        # Purge: nothing of the package is left.
        ct.run("apt-get", "purge", "-y", "dograh-systemd")
        after = tree(ct)
        left = {p: after[p] for p in after.keys() - before.keys()}
        changed = {p: (before[p], after[p]) for p in before.keys() & after.keys()
                   if before[p] != after[p] and p not in KEPT_ON_PURGE}
        gone = before.keys() - after.keys()
        assert (left, changed, gone) == ({}, {}, set())
        nginx_is_valid_and_running(ct)
    finally:
        ct.destroy()


@pytest.fixture(scope="module", params=SUITES)
def bare(request: pytest.FixtureRequest) -> Iterator[Container]:
    """A host with the package's dependencies but not the package."""
    ct = Container(request.param, name="dograh-policy")
    try:
        ct.boot()
        ct.run("apt-get", "install", "-y", *package_relations(), timeout=300)
        yield ct
    finally:
        ct.destroy()


def purge(ct: Container) -> None:
    ct.run("apt-get", "purge", "-y", "dograh-systemd")


def test_policy_rc_d_forbids_starting(bare: Container, deb: Path) -> None:
    policy = bare.path("/usr/sbin/policy-rc.d")
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        bare.install_deb(deb)
        assert units(bare, "dograh-*", state="active,activating") == []
        assert bare.path("/etc/systemd/system/dograh-api@.service").exists()
    finally:
        policy.unlink()
        purge(bare)


def test_a_stopped_fleet_and_nginx_stay_stopped_across_an_upgrade(
        bare: Container, deb: Path, build_deb: Callable[[str], Path]) -> None:
    bare.install_deb(deb)
    try:
        bare.run("systemctl", "stop", "dograh.target", "nginx.service")
        newer = build_deb(f"{deb_version(deb)}+upgrade1")
        bare.install_deb(newer)
        wait_for_deploy(bare)
        started = [u for u in units(bare, "dograh-*", state="active,activating") if u != DEPLOY]
        assert started == []
        assert bare.run("systemctl", "is-active", "nginx", check=False).stdout.strip() == \
            "inactive"
        bare.run("systemctl", "start", "nginx.service", "dograh.target")
        bare.sh("until curl -sf http://localhost/api/v1/health >/dev/null; do sleep 0.2; done",
                timeout=60)
        assert versions_answering(bare) == {f"{deb_version(deb)}+upgrade1"}
    finally:
        purge(bare)


def test_a_capacity_warning_never_fails_configuration(
        bare: Container, deb: Path, build_deb: Callable[[str], Path]) -> None:
    bare.path("/etc/dograh").mkdir()
    bare.path("/etc/dograh/dograh.env").write_text("DOGRAH_WORKER_MEMORY_MB=65536\n")
    try:
        install = bare.install_deb(deb, "-o", "Dpkg::Options::=--force-confold")
        assert "warning: " in install.stdout + install.stderr
        assert "continuing because of --force" in install.stdout + install.stderr
        assert bare.run("curl", "-sf", "http://localhost/api/v1/health").returncode == 0
        newer = build_deb(f"{deb_version(deb)}+upgrade1")
        bare.install_deb(newer, "-o", "Dpkg::Options::=--force-confold")
        wait_for_deploy(bare)
        assert versions_answering(bare) == {f"{deb_version(deb)}+upgrade1"}
    finally:
        purge(bare)
