"""dograhctl status: the record, what systemd runs and what nginx has, and where they differ."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from . import capacity, files, paths, templates, units
from .context import Context
from .record import Fleet, Phase, Record
from .roles import role_of
from .systemd import UnitState
from .worker import contract


@dataclass(frozen=True)
class InstanceStatus:
    unit: str
    enabled: bool
    active: str
    sub: str
    pid: int
    memory: int | None
    status: str
    calls: int | None = None
    lag_p95_ms: int | None = None


@dataclass(frozen=True)
class FleetStatus:
    configured: dict[str, int]
    roles: dict[str, list[InstanceStatus]]
    upstream: list[int]
    operation: str | None
    # The last deploy run in the background (dograh-deploy.service), if any.
    deploy: str | None
    # Calls this host can hold, and what bounds them.
    capacity: dict[str, object]
    # The API workers nginx should send to (an edge reads them from a worker
    # host), with their live calls; and this host's CPUs.
    members: list[dict[str, object]] = field(default_factory=list)
    cpus: int = 0
    # Record, systemd and nginx disagree: exit 1.
    mismatches: list[str] = field(default_factory=list)
    # The config asks for something the fleet does not run yet.
    pending: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def collect(ctx: Context, busy: str | None = None) -> FleetStatus:
    """``busy``: the dograhctl at work right now, if one holds the lock."""
    settings, systemd = ctx.settings, ctx.systemd
    record = ctx.store.load() or Record(Fleet())
    fleet = record.fleet
    roles = tuple(r.role for r in settings.roles.values())
    wanted = set(systemd.wanted_by(paths.TARGET))
    seen = set(systemd.listed("dograh-*")) | wanted | set(fleet.all_units())
    states = systemd.show(sorted(u for u in seen if role_of(u, roles)))
    mismatches: list[str] = []
    if record.operation:
        op = record.operation
        mismatches.append(f"a {op.verb} is at work, in its {op.phase.value} phase ({busy})"
                          if busy else
                          f"an interrupted {op.verb} stopped at its {op.phase.value} phase; "
                          "any changing dograhctl command (as root) finishes it")
    deploy = _deploy(ctx)
    if deploy and deploy.startswith("failed"):
        mismatches.append(f"the last deploy {deploy}")

    def instance(unit: str) -> InstanceStatus:
        state = states[unit]
        load = contract.parse_status(state.status) if state.ready else None
        return InstanceStatus(unit=unit, enabled=unit in wanted, active=state.active,
                              sub=state.sub, pid=state.pid, memory=state.memory,
                              status=state.status, calls=load.calls if load else None,
                              lag_p95_ms=load.lag_p95_ms if load else None)

    listing: dict[str, list[InstanceStatus]] = {}
    for name, role_settings in settings.roles.items():
        role = role_settings.role
        mine = sorted((u for u in states if role.owns(u)), key=_order)
        listing[name] = [instance(u) for u in mine]
        for item in listing[name]:
            if item.unit in fleet.of(name):
                if not item.enabled:
                    mismatches.append(f"{item.unit} is not enabled, so it will not come back "
                                      "at boot")
                if item.active not in ("active", "reloading"):
                    mismatches.append(f"{item.unit} should run but is {item.active} "
                                      f"({item.sub})")
            elif item.active in ("active", "activating", "reloading") or item.enabled:
                how = "runs" if item.active != "inactive" else "is enabled"
                mismatches.append(f"{item.unit} {how} but is not part of the fleet "
                                  f"({paths.RECORD})")
    if fleet.upstream and settings.mode == "single":
        rendered = templates.render_nginx(settings, fleet.upstream, ctx.facts)
        if files.read(paths.NGINX_UPSTREAM) != rendered[paths.NGINX_UPSTREAM]:
            mismatches.append(f"{paths.NGINX_UPSTREAM} differs from the fleet record; "
                              "dograhctl rebalance rewrites it")
    return FleetStatus(
        configured={name: r.count for name, r in settings.roles.items()},
        roles=listing, upstream=sorted(m.port for m in fleet.upstream),
        operation=f"{record.operation.verb} ({record.operation.phase.value})"
        if record.operation else None,
        deploy=deploy, capacity=_capacity(ctx, fleet), mismatches=mismatches,
        pending=_pending(ctx, record), members=_members(ctx, record, states),
        cpus=os.cpu_count() or 1)


def _members(ctx: Context, record: Record, states: dict[str, UnitState]) -> list[dict[str, object]]:
    """Where nginx should send: the new workers once an operation has them READY."""
    op = record.operation
    serving = op.target if op and op.phase is not Phase.START else record.fleet
    api = ctx.settings.api.role
    members = []
    for member in serving.upstream:
        state = states.get(api.instance(member.port))
        load = contract.parse_status(state.status) if state and state.ready else None
        members.append({"address": member.address, "port": member.port,
                        "weight": member.weight, "ready": bool(state and state.ready),
                        "calls": load.calls if load else 0})
    return members


def _capacity(ctx: Context, fleet: Fleet) -> dict[str, object]:
    ceiling = capacity.measure(ctx, fleet)
    return {"calls": ceiling.calls, "bound_by": ceiling.bound_by, "nginx": ceiling.nginx,
            "open_files": ceiling.open_files, "memory": ceiling.memory,
            "text": ceiling.describe(), "short_of_memory": ceiling.short_of_memory}


def _deploy(ctx: Context) -> str | None:
    """How the last background deploy went, while systemd remembers it."""
    state = ctx.systemd.show([paths.DEPLOY_UNIT])[paths.DEPLOY_UNIT]
    if state.load != "loaded" or state.active == "inactive":
        return None
    if state.active == "failed":
        return f"failed (see: journalctl -u {paths.DEPLOY_UNIT})"
    if state.sub == "exited":
        return "finished"
    return f"running (follow it with: journalctl -f -u {paths.DEPLOY_UNIT})"


def _pending(ctx: Context, record: Record) -> list[str]:
    """Roles whose running processes run other definitions than the config renders."""
    rendered = units.by_name(templates.render_units(ctx.settings, ctx.facts))
    definitions = units.definitions(ctx.settings, rendered)
    return [f"{name}: its unit file or the app's environment changed since its processes "
            "started; they move onto it with: dograhctl restart"
            for name, digest in definitions.items()
            if record.fleet.of(name) and record.fleet.definitions.get(name) != digest]


def _order(unit: str) -> tuple[int, str]:
    """Numbered instances in numeric order."""
    name = unit.rsplit("@", 1)[-1].removesuffix(".service")
    return (int(name), unit) if name.isdigit() else (1 << 30, unit)
