"""The .deb's whole life, on Debian 12 and 13: install, upgrade, remove, purge.

Like piuparts: the file tree after purge is compared with the tree before
install, and anything left behind fails the test.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import SUITES
from .container import Container, package_relations
from .test_fleet import answering_ports, main_pid, units

pytestmark = pytest.mark.system

# Debian keeps system users on purge (their uid may own files elsewhere).
KEPT_ON_PURGE = {"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow",
                 "/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-",
                 "/etc/subuid", "/etc/subgid"}
# Logs, caches and runtime state that installing any package changes.
NOT_COMPARED = ["/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/log",
                "/var/cache", "/var/lib/apt", "/var/lib/dpkg", "/var/lib/systemd",
                "/var/lib/nginx", "/root", "/etc/ld.so.cache"]


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
        assert ct.run("dograhctl", "--version").stdout.strip() == "dograhctl, version 0.1.0"

        # The admin scales and edits the config.
        ct.run("dograhctl", "scale", "3")
        env = ct.path("/etc/dograh/dograh.env")
        env.write_text(env.read_text() + "\n# kept by the admin\nDOGRAH_WORKER_MEMORY_MB=350\n")
        old_pids = {main_pid(ct, f"dograh-api@{p}.service") for p in range(8000, 8003)}

        # Upgrade: same scale, config kept, workers on the new code, nginx valid.
        newer = build_deb("0.1.0+upgrade1")
        ct.install_deb(newer)
        # The restart moved the workers to the other band of ports, as a deploy does.
        assert units(ct, "dograh-api@*") == [f"dograh-api@{p}.service" for p in (8100, 8101, 8102)]
        assert "# kept by the admin" in env.read_text()
        assert stat(ct, "/etc/dograh/dograh.env") == "root:dograh 640"
        new_pids = {main_pid(ct, f"dograh-api@{p}.service") for p in range(8100, 8103)}
        assert not new_pids & old_pids
        versions = ct.sh("for i in 1 2 3 4 5 6; do curl -sf http://localhost/api/v1/worker;"
                         " echo; done").stdout
        assert {json.loads(line)["version"] for line in versions.splitlines()} == {
            "0.1.0+upgrade1"}
        assert set(answering_ports(ct, 6)) == {8100, 8101, 8102}
        nginx_is_valid_and_running(ct)

        # Remove: every unit stops, the site leaves nginx, nginx keeps running.
        ct.run("apt-get", "remove", "-y", "dograh-systemd")
        assert units(ct, "dograh-*") == []
        assert units(ct, "dograh-*", state="failed") == []
        assert "dograh" not in ct.run("ls", "/etc/nginx/sites-enabled").stdout
        nginx_is_valid_and_running(ct)
        assert ct.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                      "http://localhost/api/v1/health", check=False).stdout == "404"
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


def test_lintian_is_clean(deb: Path) -> None:
    result = subprocess.run(["lintian", "--fail-on", "error,warning", "--pedantic", str(deb)],
                            capture_output=True, text=True)
    tags = [line for line in result.stdout.splitlines() if re.match(r"^[EWIP]: ", line)]
    assert result.returncode == 0 and tags == [], result.stdout + result.stderr
    overrides = Path(__file__).resolve().parents[2] / "debian/dograh-systemd.lintian-overrides"
    lines = overrides.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert i > 0 and lines[i - 1].startswith("#"), f"override without a reason: {line}"
