"""The worker hosts of a cluster, and the edge's conversation with them over SSH.

Every host has the package and its own dograhctl; the edge runs it there as
root, with a key of the cluster's own (root-only, named by
DOGRAH_CLUSTER_KEY) and host keys pinned in /etc/dograh/cluster_known_hosts,
and reads the wire.HostReport it prints, whatever its exit code: a host with a
mismatch is still a host to read. No daemon and no port of our own: sshd,
which admins already run and audit. A host that does not answer within
seconds, or answers out of shape, is trouble for this command: it is named,
left out, and never holds up the others. A ``Survey`` keeps each host's
latest word through a command.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from . import command_lines, paths, schema, wire
from .config import Settings
from .context import Context
from .errors import DograhError
from .wire import HostReport, Trouble

# Seconds to reach a host, and to hear from it while it works.
CONNECT_TIMEOUT = 5
QUIET_TIMEOUT = 6
# How long a host may take to say how it is.
STATUS_TIMEOUT = 30
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
    private = ctx.files.is_private(key)
    if private is None:
        raise DograhError(f"{key}: no such key; make one with: ssh-keygen -t ed25519 -N '' "
                          f"-f {key}")
    if not private:
        raise DograhError(f"{key} must be a file only root can read (chmod 600 {key})")


@dataclass
class Survey:
    """What each worker host said: its report, or the trouble with it."""

    reports: dict[Host, HostReport] = field(default_factory=dict)
    trouble: dict[Host, Trouble] = field(default_factory=dict)
    # What each host's change did, for the summary.
    done: dict[str, str] = field(default_factory=dict)
    # Hosts whose dograhctl failed the change asked of them, and why.
    failed: dict[str, str] = field(default_factory=dict)

    def take(self, host: Host, answer: HostReport | Trouble) -> HostReport | None:
        """Keep ``answer`` as the host's latest word; its report, or None on trouble."""
        if isinstance(answer, Trouble):
            self.reports.pop(host, None)
            self.trouble[host] = answer
            return None
        self.trouble.pop(host, None)
        self.reports[host] = answer
        if answer.summary:
            self.done[host.name] = answer.summary
        return answer

    def running(self) -> dict[str, list[str]]:
        """The singletons each answering host runs, by its name."""
        return {host.name: list(report.singletons) for host, report in self.reports.items()}

    def releases(self) -> dict[str, dict[str, str]]:
        """Each answering host's releases and their states, by its name."""
        return {host.name: {r.id: r.state for r in report.releases}
                for host, report in self.reports.items()}

    def unreachable(self) -> dict[str, str]:
        """Why each host in trouble could not say, by its name."""
        return {host.name: trouble.why for host, trouble in self.trouble.items()}


def survey(ctx: Context) -> Survey:
    """Every host's report, asked of all at once."""
    found = Survey()
    ask_each(ctx, found, {host: command_lines.status() for host in hosts(ctx.settings)},
             STATUS_TIMEOUT)
    return found


def ask(ctx: Context, survey: Survey, host: Host, args: Sequence[str], timeout: float
        ) -> HostReport | None:
    """``dograhctl args`` on ``host``; its report, or None (and a warning) on trouble."""
    answer = survey.take(host, call(ctx, host, args, timeout))
    if answer is None:
        ctx.report(f"warning: {host} {survey.trouble[host].why}; it is left out")
    return answer


def ask_each(ctx: Context, survey: Survey, args: Mapping[Host, Sequence[str]],
             timeout: float) -> dict[Host, HostReport]:
    """``dograhctl args[host]`` on every host at once; the reports of those that answered
    (a warning names each of the others)."""
    answers = each(args, lambda host: call(ctx, host, args[host], timeout))
    done = {}
    for host, answer in answers.items():
        report = survey.take(host, answer)
        if report is None:
            ctx.report(f"warning: {host} {survey.trouble[host].why}; it is left out")
        else:
            done[host] = report
    return done


def call(ctx: Context, host: Host, args: Sequence[str], timeout: float) -> HostReport | Trouble:
    """``dograhctl ARGS --json`` on ``host``: its report, or the trouble with it."""
    settings = ctx.settings
    result = ctx.host.run(ssh(settings, host, command_lines.on_worker_host(args)),
                          timeout=timeout)
    if result.returncode == 255:  # ssh's own failure: the host is out of reach
        return Trouble(f"does not answer: {result.last_line}", answers=False)
    if result.returncode == 124:
        return Trouble(f"did not finish within {timeout:.0f}s", answers=False)
    if result.returncode != 0 and not result.stdout.strip():
        return Trouble(f"dograhctl failed there: "
                       f"{result.last_line.removeprefix('dograhctl: ')}", answers=True)
    try:
        return wire.read(result.stdout, settings.singletons)
    except schema.OutOfShape as exc:
        return Trouble(f"answers out of shape ({exc})", answers=True)


def ssh(settings: Settings, host: Host, argv: Sequence[str]) -> list[str]:
    """``argv`` run as root on ``host``, with the cluster's key and pinned host keys."""
    return ["ssh", "-i", str(settings.cluster_key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "ServerAliveInterval=2", "-o", f"ServerAliveCountMax={QUIET_TIMEOUT // 2}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={paths.CLUSTER_KNOWN_HOSTS}", "-o", "LogLevel=ERROR",
            # ssh hands the remote shell one string: every word quoted for it.
            f"root@{host.address}", " ".join(shlex.quote(word) for word in argv)]


def each(hosts: Iterable[Host], work: Callable[[Host], T]) -> dict[Host, T]:
    """``work`` on every host at once."""
    hosts = list(hosts)
    if not hosts:
        return {}
    with ThreadPoolExecutor(len(hosts)) as pool:
        return dict(zip(hosts, pool.map(work, hosts), strict=True))
