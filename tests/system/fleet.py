"""What the system tests share: dograhctl in a container, what systemd and nginx
say about the fleet, and a settled fleet for a test to start from."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import time

from bench.testbed.container import Container

from .load import live_calls

NGINX_FILES = ["/etc/nginx/sites-available/dograh", "/etc/nginx/dograh/upstream.conf"]


def dograhctl(ct: Container, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return ct.run("dograhctl", *args, check=check, timeout=180)


def units(ct: Container, pattern: str, state: str = "active") -> list[str]:
    out = ct.run("systemctl", "list-units", "--plain", "--no-legend", "--full",
                 f"--state={state}", pattern).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def main_pid(ct: Container, unit: str) -> int:
    return int(ct.run("systemctl", "show", "-p", "MainPID", "--value", unit).stdout)


def upstream_ports(ct: Container) -> set[int]:
    text = ct.path("/etc/nginx/dograh/upstream.conf").read_text()
    return {int(p) for p in re.findall(r"^\s*server 127\.0\.0\.1:(\d+)", text, re.M)}


def answering_ports(ct: Container, requests: int) -> collections.Counter[int]:
    """Which workers answer ``requests`` requests sent through nginx."""
    script = (f"for i in $(seq {requests}); do "
              "curl -sf http://localhost/api/v1/worker || exit 1; echo; done")
    out = ct.sh(script).stdout
    return collections.Counter(json.loads(line)["port"] for line in out.splitlines())


def api(ports: range) -> list[str]:
    return [f"dograh-api@{p}.service" for p in ports]


def snapshot(ct: Container) -> dict[str, object]:
    """Everything a failed command must leave as it was."""
    wants = ct.path("/etc/systemd/system/dograh.target.wants")
    running = units(ct, "dograh-*.service")
    return {
        "enabled": sorted(p.name for p in wants.iterdir()) if wants.exists() else [],
        "running": {unit: main_pid(ct, unit) for unit in running},
        "nginx": {f: ct.path(f).read_text() for f in NGINX_FILES},
        "sites": sorted(p.name for p in ct.path("/etc/nginx/sites-enabled").iterdir()),
    }


def api_ports(ct: Container) -> list[int]:
    return [int(re.search(r"@(\d+)", u).group(1)) for u in units(ct, "dograh-api@*")]


def reset(ct: Container, workers: int) -> None:
    """A settled fleet of ``workers`` in the lower band, whatever earlier tests left:
    no live calls, and upstream weights back to 1."""
    dograhctl(ct, "scale", str(workers), "--no-drain")
    if api_ports(ct)[0] >= 8100:
        dograhctl(ct, "restart", "--no-drain")
    ports = list(range(8000, 8000 + workers))
    assert api_ports(ct) == ports
    deadline = time.monotonic() + 30
    while any(live_calls(ct, port)[0] for port in ports):
        assert time.monotonic() < deadline, "calls of an earlier test did not end"
        time.sleep(0.2)
    assert "weights even" in dograhctl(ct, "rebalance").stdout
