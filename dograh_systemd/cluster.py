"""The edge: one front door for the API workers of several hosts, one command for all.

The edge runs the public nginx with one least_conn upstream over every ready
API worker of every worker host (one hop, balanced per worker). Each host
runs its own dograhctl; the edge calls it over SSH (``remote``) and keeps the
order of operations across hosts that one host keeps alone:

    scale    every host stages its new size (new workers start, READY); the
             edge's upstream switches to the staged workers of all hosts; each
             host then finishes: its leaving workers drain by the app's own
             count and stop
    restart  host by host: a new band, READY, the edge switches, the old band
             drains and stops, then the next host
    rebalance  the upstream follows the hosts that answer (a host that stopped
             answering leaves it, one that is back joins), weighed by live calls;
             dograh-cluster.timer runs it every 15 s

A singleton runs on the host DOGRAH_SINGLETON_HOSTS names; moving it stops
it on the old host before the new one starts it. A host that does not answer
is reported, left out of the upstream, and holds up no other host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import balance, front, paths, remote, templates, units
from .context import Context
from .errors import DograhError
from .record import Fleet, Record
from .remote import Host, HostDown
from .roles import Kind
from .templates import Member

STATUS_TIMEOUT = 30
START_TIMEOUT = 300


@dataclass
class ClusterOutcome:
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # what each host printed
    down: dict[str, str] = field(default_factory=dict)              # host -> why
    upstream: tuple[Member, ...] = ()


def scale(ctx: Context, total: int | None, explicit: Mapping[str, int],
          drain_timeout: float | None) -> ClusterOutcome:
    """Spread ``total`` API workers over the hosts that answer, by their CPUs (a host
    named in ``explicit`` gets its own count), and the singletons where they belong."""
    settings = ctx.settings
    _prepare(ctx)
    outcome = ClusterOutcome()
    alive = _alive(ctx, outcome, settle=True)
    counts = _spread(total if total is not None else settings.api_workers, explicit, alive)
    placed = {host.name: sorted(role for role, r in settings.roles.items()
                                if r.role.kind is Kind.SINGLETON and r.count
                                and settings.singleton_host(role) == host.name)
              for host in alive}
    drain = ["--no-drain"] if drain_timeout is None else [f"--drain-timeout={drain_timeout:.0f}"]
    singletons = [role for role, r in settings.roles.items() if r.role.kind is Kind.SINGLETON]
    # A singleton that moves stops where it ran before any host starts it.
    for host, state in alive.items():
        moving = [role for role in singletons
                  if _runs(state, role) and role not in placed[host.name]]
        if moving:
            ctx.report(f"{host}: stopping {', '.join(moving)} before another host starts it")
            remote.call(settings, host, ["scale", str(len(state["members"])), "--singletons",
                                         ",".join(placed[host.name]), *drain, "--json"],
                        timeout=START_TIMEOUT)
    staged = _each(ctx, outcome, alive, lambda host: [
        "scale", str(counts[host.name]), "--singletons", ",".join(placed[host.name]),
        *drain, "--stage", "--json"])
    _switch(ctx, outcome, {host: result["members"] for host, result in staged.items()})
    _each(ctx, outcome, staged, lambda host: ["resume", "--json"],
          timeout=(drain_timeout or 0) + START_TIMEOUT)
    front.certify(ctx, outcome.upstream)
    return outcome


def restart(ctx: Context, drain_timeout: float | None) -> ClusterOutcome:
    """Every host onto the current code, one after another, dropping no call."""
    _prepare(ctx)
    outcome = ClusterOutcome()
    alive = _alive(ctx, outcome, settle=True)
    members = {host: state["members"] for host, state in alive.items()}
    drain = ["--no-drain"] if drain_timeout is None else [f"--drain-timeout={drain_timeout:.0f}"]
    for host in alive:
        if not members[host]:
            continue
        ctx.report(f"{host}: deploying")
        staged = remote.call(ctx.settings, host, ["restart", *drain, "--stage", "--json"],
                             timeout=START_TIMEOUT)
        members[host] = staged["members"]
        _switch(ctx, outcome, members)
        outcome.hosts[host.name] = remote.call(ctx.settings, host, ["resume", "--json"],
                                               timeout=(drain_timeout or 0) + START_TIMEOUT)
    front.certify(ctx, outcome.upstream)
    return outcome


def rebalance(ctx: Context) -> ClusterOutcome:
    """The upstream from the hosts that answer now, weighed by their live calls."""
    outcome = ClusterOutcome()
    alive = _alive(ctx, outcome, settle=False)
    _switch(ctx, outcome, {host: state["members"] for host, state in alive.items()})
    return outcome


def status(ctx: Context) -> dict[str, Any]:
    """Every host's status, the edge's upstream, and where they disagree."""
    outcome = ClusterOutcome()
    alive = _alive(ctx, outcome, settle=False)
    mismatches = [f"{name} does not answer: {why}" for name, why in outcome.down.items()]
    for host, state in alive.items():
        mismatches += [f"{host.name}: {line}" for line in state["mismatches"]]
    for role, role_settings in ctx.settings.roles.items():
        if role_settings.role.kind is not Kind.SINGLETON or not role_settings.count:
            continue
        where = [host.name for host, state in alive.items() if _runs(state, role)]
        if len(where) != 1 and not outcome.down:
            mismatches.append(f"{role} runs on {len(where)} hosts ({', '.join(where) or 'none'})"
                              ", not exactly one")
    record = ctx.store.load()
    upstream = record.fleet.upstream if record else ()
    ready = {(m["address"], m["port"]) for state in alive.values() for m in state["members"]
             if m["ready"]}
    listed = {(m.address, m.port) for m in upstream}
    mismatches += [f"the upstream lists {a}:{p}, which is not ready" for a, p in sorted(listed - ready)]
    mismatches += [f"{a}:{p} is ready but not in the upstream" for a, p in sorted(ready - listed)]
    return {"hosts": {host.name: state for host, state in alive.items()},
            "down": outcome.down, "upstream": [m.endpoint for m in upstream],
            "mismatches": mismatches}


# -- steps ------------------------------------------------------------------------

def _alive(ctx: Context, outcome: ClusterOutcome, settle: bool) -> dict[Host, dict[str, Any]]:
    """Each answering host's status; with ``settle``, an operation an interrupted
    command left on a host is finished first (its staged workers in the upstream)."""
    states = remote.each(remote.hosts(ctx.settings), lambda host: remote.call(
        ctx.settings, host, ["status", "--json"], timeout=STATUS_TIMEOUT))
    alive: dict[Host, dict[str, Any]] = {}
    for host, state in states.items():
        if isinstance(state, HostDown):
            outcome.down[host.name] = str(state)
            ctx.report(f"warning: {state}; it is left out")
        else:
            alive[host] = state
    pending = [host for host, state in alive.items() if state["operation"]]
    if settle and pending:
        _switch(ctx, outcome, {host: state["members"] for host, state in alive.items()})
        for host in pending:
            ctx.report(f"{host}: finishing its interrupted {alive[host]['operation']}")
            remote.call(ctx.settings, host, ["resume", "--json"], timeout=START_TIMEOUT * 10)
        return _alive(ctx, outcome, settle=False)
    return alive


def _each(ctx: Context, outcome: ClusterOutcome, hosts: Mapping[Host, Any],
          args: Any, timeout: float = START_TIMEOUT) -> dict[Host, dict[str, Any]]:
    """``dograhctl args(host)`` on every host at once; hosts that fail are reported."""
    results = remote.each(list(hosts), lambda host: remote.call(ctx.settings, host, args(host),
                                                                timeout=timeout))
    done = {}
    for host, result in results.items():
        if isinstance(result, HostDown):
            outcome.down[host.name] = str(result)
            ctx.report(f"warning: {result}")
        else:
            outcome.hosts[host.name] = result
            done[host] = result
    return done


def _switch(ctx: Context, outcome: ClusterOutcome,
            members: Mapping[Host, list[dict[str, Any]]]) -> None:
    """The edge's nginx sends to exactly these hosts' ready workers, weighed by their
    live calls; the fleet record keeps the upstream."""
    ready = [m for host_members in members.values() for m in host_members if m["ready"]]
    if not ready:
        raise DograhError("no worker host has a ready API worker to send to")
    weights = balance.weights({(m["address"], m["port"]): m["calls"] for m in ready})
    upstream = tuple(Member(m["address"], m["port"], weights[(m["address"], m["port"])])
                     for m in sorted(ready, key=lambda m: (m["address"], m["port"])))
    record = ctx.store.load() or Record(Fleet())
    if front.apply(ctx, upstream) or record.fleet.upstream != upstream:
        ctx.report("nginx upstream dograh_api: "
                   + " ".join(member.endpoint for member in upstream))
    ctx.store.save(Record(Fleet(units={}, upstream=upstream)))
    outcome.upstream = upstream


def _prepare(ctx: Context) -> None:
    """Before the first change: nginx is sound, the site's certificate is ready, the SSH
    key is root's alone, and the edge's own units are in place."""
    ctx.nginx.test()
    front.prepare(ctx)
    remote.check_key(ctx.settings.cluster_key)
    _edge_units(ctx)


def _edge_units(ctx: Context) -> None:
    """The edge's own units: dograh.target and the timer that follows the hosts."""
    rendered = templates.render_units(ctx.settings, ctx.facts)
    names = {paths.TARGET, *templates.HOST_UNITS["edge"]}
    units.install(ctx.systemd, units.by_name({p: t for p, t in rendered.items()
                                               if p.name in names}))
    ctx.systemd.enable(sorted(names))
    ctx.systemd.start_no_block([paths.TARGET, paths.CLUSTER_TIMER])


def _spread(total: int, explicit: Mapping[str, int],
            alive: Mapping[Host, dict[str, Any]]) -> dict[str, int]:
    """API workers per host: as given, the rest in proportion to each host's CPUs."""
    unknown = set(explicit) - {host.name for host in alive}
    if unknown:
        raise DograhError(f"no answering host named {', '.join(sorted(unknown))}")
    counts = dict(explicit)
    free = [host for host in alive if host.name not in explicit]
    left = max(0, total - sum(explicit.values())) if free else 0
    cpus = {host.name: int(alive[host]["cpus"]) for host in free}
    shares = {name: left * n / max(1, sum(cpus.values())) for name, n in cpus.items()}
    counts.update({name: int(share) for name, share in shares.items()})
    for name in sorted(shares, key=lambda n: shares[n] - int(shares[n]), reverse=True):
        if sum(counts[n] for n in shares) >= left:
            break
        counts[name] += 1
    return counts


def _runs(state: Mapping[str, Any], role: str) -> bool:
    return any(item["active"] in ("active", "activating", "reloading")
               for item in state["roles"].get(role, []))
