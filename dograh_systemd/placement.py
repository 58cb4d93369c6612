"""Where things run across hosts (pure): API workers spread over the hosts, each
singleton where it may and should run, and what a host lacks for a deploy.

Like plan.py for one host, this is policy only: it is handed what the hosts
said (by name) and says what should be, with no call to any host; the edge
carries it out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from .config import Settings
from .errors import DograhError


def spread(total: int, explicit: Mapping[str, int], cpus: Mapping[str, int]) -> dict[str, int]:
    """API workers per answering host (``cpus``: each one's CPUs): as ``explicit`` gives,
    the rest in proportion to each other host's CPUs, largest remainders first."""
    unknown = set(explicit) - set(cpus)
    if unknown:
        raise DograhError(f"no answering host named {', '.join(sorted(unknown))}")
    counts = dict(explicit)
    free = [name for name in cpus if name not in explicit]
    left = max(0, total - sum(explicit.values())) if free else 0
    total_cpus = max(1, sum(cpus[name] for name in free))
    shares = {name: left * cpus[name] / total_cpus for name in free}
    counts.update({name: int(share) for name, share in shares.items()})
    for name in sorted(shares, key=lambda n: shares[n] - int(shares[n]), reverse=True):
        if sum(counts[n] for n in shares) >= left:
            break
        counts[name] += 1
    return counts


@dataclass(frozen=True)
class Singletons:
    """The singletons each host should run, and those that may run nowhere new now."""

    placed: dict[str, set[str]]
    # Each enabled singleton that is kept from running, and why, in one line.
    held: list[str] = field(default_factory=list)
    # Of those, the ones that would start where no other host can be asked first.
    refused: list[str] = field(default_factory=list)


def singletons(settings: Settings, running: Mapping[str, Collection[str]],
               unreachable: Collection[str]) -> Singletons:
    """Where each singleton the config enables should run, on the host
    DOGRAH_SINGLETON_HOSTS gives it (else the first host). ``running``: what each host
    that answered runs; ``unreachable``: the hosts that did not, in the order met.

    Singletons have no leader election: a start (on a host that does not run it
    yet) is safe only while every host that could still run it answered.
    """
    placed: dict[str, set[str]] = {name: set() for name, _ in settings.hosts}
    held: list[str] = []
    refused: list[str] = []
    for role in settings.enabled_singletons:
        host = settings.singleton_host(role)
        assert host is not None  # a cluster has hosts
        if host not in running:
            held.append(f"{role} belongs on {host}, which is left out: it runs nowhere "
                        "until that host answers again")
            continue
        if role not in running[host] and unreachable:
            unknown = next(iter(unreachable))
            message = (f"{role} would start on {host}, but {unknown} does not answer and may "
                       "still run it (two must never run); bring it back, or if it is dead "
                       f"for good: --host-is-gone {unknown}")
            held.append(message)
            refused.append(message)
            continue
        placed[host].add(role)
    return Singletons(placed, held, refused)


def still_running(running: Mapping[str, Collection[str]], placed: Mapping[str, set[str]]
                  ) -> dict[str, list[str]]:
    """Per host, the singletons it runs that it must not run any more."""
    extra = {host: sorted(set(roles) - placed[host]) for host, roles in running.items()}
    return {host: roles for host, roles in extra.items() if roles}


def lacking(release: str, releases: Mapping[str, Mapping[str, str]],
            unreachable: Mapping[str, str]) -> list[str]:
    """The hosts that do not have ``release`` ready, each with why. ``releases``: each
    answering host's releases and their states; ``unreachable``: why each other host
    could not say."""
    missing = [f"{host} ({why})" for host, why in unreachable.items()]
    missing += [f"{host} (it is {state})" for host, states in releases.items()
                if (state := states.get(release, "missing")) != "ready"]
    return missing


def newest_everywhere(releases: Mapping[str, Mapping[str, str]]) -> str | None:
    """The newest release every answering host has ready, if there is one."""
    ready = [{name for name, state in states.items() if state == "ready"}
             for states in releases.values()]
    common = set.intersection(*ready) if ready else set()
    return max(common) if common else None
