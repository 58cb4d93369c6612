"""The worker hosts of a cluster, reached from the edge over SSH.

Every host has the package and its own dograhctl; the edge runs it there as
root, with a key of the cluster's own (root-only, named by
DOGRAH_CLUSTER_KEY) and host keys pinned in /etc/dograh/cluster_known_hosts,
and reads the wire.HostReport it prints, whatever its exit code: a host with a
mismatch is still a host to read. No daemon and no port of our own: sshd,
which admins already run and audit. A host that does not answer within
seconds, or answers out of shape, is trouble for this command: it is left
out, and never holds up the others.
"""

from __future__ import annotations

import shlex
import stat
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from . import paths, schema, wire
from .config import Settings
from .context import Context
from .errors import DograhError
from .roles import Kind
from .wire import HostReport, Trouble

# Seconds to reach a host, and to hear from it while it works.
CONNECT_TIMEOUT = 5
QUIET_TIMEOUT = 6
T = TypeVar("T")


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # from DOGRAH_HOSTS: the only address the edge ever dials

    def __str__(self) -> str:
        return f"{self.name} ({self.address})"


def hosts(settings: Settings) -> list[Host]:
    return [Host(name, address) for name, address in settings.hosts]


def check_key(ctx: Context) -> None:
    """The cluster's key opens every worker host as root: root's alone, or refused."""
    key = ctx.settings.cluster_key
    try:
        info = ctx.files.path(key).lstat()
    except FileNotFoundError:
        raise DograhError(f"{key}: no such key; make one with: ssh-keygen -t ed25519 -N '' "
                          f"-f {key}") from None
    if not stat.S_ISREG(info.st_mode) or info.st_uid != ctx.files.owner or info.st_mode & 0o077:
        raise DograhError(f"{key} must be a file only root can read (chmod 600 {key})")


def call(ctx: Context, host: Host, args: Sequence[str], timeout: float) -> HostReport | Trouble:
    """``dograhctl ARGS --json`` on ``host``: its report, or the trouble with it."""
    settings = ctx.settings
    argv = ["ssh", "-i", str(settings.cluster_key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "ServerAliveInterval=2", "-o", f"ServerAliveCountMax={QUIET_TIMEOUT // 2}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={paths.CLUSTER_KNOWN_HOSTS}", "-o", "LogLevel=ERROR",
            # ssh hands the remote shell one string: every word quoted for it.
            f"root@{host.address}",
            " ".join(shlex.quote(word) for word in ["dograhctl", *args, "--json"])]
    result = ctx.host.run(argv, timeout=timeout)
    if result.returncode == 255:  # ssh's own failure: the host is out of reach
        return Trouble(f"does not answer: {result.last_line}", answers=False)
    if result.returncode == 124:
        return Trouble(f"did not finish within {timeout:.0f}s", answers=False)
    if result.returncode != 0 and not result.stdout.strip():
        return Trouble(f"dograhctl failed there: "
                       f"{result.last_line.removeprefix('dograhctl: ')}", answers=True)
    try:
        return wire.read(result.stdout, singleton_roles(settings))
    except schema.OutOfShape as exc:
        return Trouble(f"answers out of shape ({exc})", answers=True)


def singleton_roles(settings: Settings) -> list[str]:
    return [name for name, r in settings.roles.items() if r.role.kind is Kind.SINGLETON]


def each(hosts: Iterable[Host], work: Callable[[Host], T]) -> dict[Host, T]:
    """``work`` on every host at once."""
    hosts = list(hosts)
    if not hosts:
        return {}
    with ThreadPoolExecutor(len(hosts)) as pool:
        return dict(zip(hosts, pool.map(work, hosts), strict=True))
