"""The worker hosts of a cluster, reached from the edge over SSH.

Every host has the package and its own dograhctl; the edge runs it there as
root, with a key of the cluster's own (root-only, named by
DOGRAH_CLUSTER_KEY) and host keys pinned in /etc/dograh/cluster_known_hosts,
and reads the JSON it prints. No daemon and no port of our own: sshd, which
admins already run and audit. A host that does not answer within seconds is
down for this command, and never holds up the others.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import paths
from .config import Settings
from .errors import DograhError

# Seconds to reach a host, and to hear from it while it works.
CONNECT_TIMEOUT = 5
QUIET_TIMEOUT = 6
T = TypeVar("T")


@dataclass(frozen=True)
class Host:
    name: str
    address: str

    def __str__(self) -> str:
        return f"{self.name} ({self.address})"


class HostDown(DograhError):
    """A host did not answer: it is left out of this command."""


def hosts(settings: Settings) -> list[Host]:
    return [Host(name, address) for name, address in settings.hosts]


def check_key(key: Path) -> None:
    """The cluster's key opens every worker host as root: root's alone, or refused."""
    try:
        info = os.lstat(key)
    except FileNotFoundError:
        raise DograhError(f"{key}: no such key; make one with: ssh-keygen -t ed25519 -N '' "
                          f"-f {key}") from None
    if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        raise DograhError(f"{key} must be a file only root can read (chmod 600 {key})")


def call(settings: Settings, host: Host, args: Sequence[str],
         timeout: float = 120) -> dict[str, Any]:
    """``dograhctl ARGS --json`` on ``host``: what it printed, as JSON."""
    argv = ["ssh", "-i", str(settings.cluster_key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "ServerAliveInterval=2", "-o", f"ServerAliveCountMax={QUIET_TIMEOUT // 2}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={paths.CLUSTER_KNOWN_HOSTS}", "-o", "LogLevel=ERROR",
            # ssh hands the remote shell one string: every word quoted for it.
            f"root@{host.address}", " ".join(shlex.quote(word) for word in ["dograhctl", *args])]
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HostDown(f"{host} did not finish within {timeout:.0f}s") from None
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    if result.returncode == 255:  # ssh's own failure: the host is out of reach
        raise HostDown(f"{host} does not answer: {last}")
    if result.returncode != 0:
        raise DograhError(f"{host}: {last.removeprefix('dograhctl: ')}")
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise DograhError(f"{host}: dograhctl printed no JSON ({last})") from None


def each(hosts: Sequence[Host], work: Callable[[Host], T]) -> dict[Host, T | HostDown]:
    """``work`` on every host at once; a host that is down gives its HostDown."""
    def guarded(host: Host) -> T | HostDown:
        try:
            return work(host)
        except HostDown as down:
            return down

    with ThreadPoolExecutor(max(1, len(hosts))) as pool:
        return dict(zip(hosts, pool.map(guarded, hosts), strict=True))
