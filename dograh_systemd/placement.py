"""Where things run across hosts (pure): API workers spread over the hosts, and what
a host lacks for a deploy. (Where each singleton runs is elected by lease:
cluster/election.py.)

Like plan.py for one host, this is policy only: it is handed what the hosts
registered (by name) and says what should be, with no call to any host; the
edge asks it of them.
"""

from __future__ import annotations

from collections.abc import Mapping

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
