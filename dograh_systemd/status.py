"""dograhctl status on a host that runs a fleet: the record, what systemd runs and what
nginx has, and where they differ. It reads and never writes: an operation an
interrupted command left is named, with the command that finishes it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field

from . import capacity, nginx, paths, units
from .config import Settings
from .context import Context
from .record import Fleet, Record
from .roles import role_of
from .worker import contract
from .worker.contract import Load

MIB = 1024 * 1024


@dataclass(frozen=True)
class InstanceStatus:
    unit: str
    enabled: bool
    active: str
    sub: str
    pid: int
    memory: int | None
    status: str
    restarts: int
    since: float = 0.0  # wall clock of its last start
    # From its Status line, while it serves: None before it published one.
    calls: int | None = None
    lag_p95_ms: int | None = None
    load: Load | None = None

    @property
    def ready(self) -> bool:
        return self.active in ("active", "reloading")


@dataclass(frozen=True)
class FleetStatus:
    configured: dict[str, int]
    roles: dict[str, list[InstanceStatus]]
    upstream: list[int]
    # The release the processes run ("": the config's app, in place), and the one before.
    release: str
    previous_release: str
    operation: str | None
    # The last deploy run in the background (dograh-deploy.service), if any.
    deploy: str | None
    # Calls this host can hold, and what bounds them.
    capacity: dict[str, object]
    # nginx worker processes earlier reloads left, still holding calls.
    nginx_generations: list[dict[str, float]] = field(default_factory=list)
    # Record, systemd and nginx disagree: exit 1.
    mismatches: list[str] = field(default_factory=list)
    # The config asks for something the fleet does not run yet.
    pending: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def instance(self, role: str, unit: str) -> InstanceStatus | None:
        return next((item for item in self.roles.get(role, []) if item.unit == unit), None)


def collect(ctx: Context, record: Record, rendered: Mapping[str, str], waiting: str,
            more: Iterable[str] = (), held: Collection[str] = (), front: bool = True
            ) -> FleetStatus:
    """``record`` against systemd, and against the unit files the config ``rendered``;
    ``waiting`` names what a staged operation waits for, ``more`` are the mode's own
    mismatches; the units of ``held`` roles are listed, never a mismatch (another part
    of the host runs them: a cluster's agent); this host's nginx carries its calls when
    it is their ``front``."""
    settings, systemd = ctx.settings, ctx.systemd
    fleet = record.fleet
    roles = tuple(r.role for r in settings.roles.values())
    wanted = set(systemd.wanted_by(paths.TARGET))
    seen = set(units.on_host(ctx.host, roles)) | set(fleet.all_units())
    states = systemd.show(sorted(u for u in seen if role_of(u, roles)))
    mismatches: list[str] = []
    if record.operation:
        op = record.operation
        busy = ctx.host.lock_holder()
        if busy:
            mismatches.append(f"a {op.verb} is at work, in its {op.phase.value} phase ({busy})")
        elif op.staged:
            mismatches.append(waiting)
        else:
            mismatches.append(f"an interrupted {op.verb} stopped at its {op.phase.value} phase; "
                              "finish it with: dograhctl resume (as root)")
    deploy = _deploy(ctx)
    if deploy and deploy.startswith("failed"):
        mismatches.append(f"the last deploy {deploy}")

    def instance(unit: str) -> InstanceStatus:
        state = states[unit]
        load = contract.parse_status(state.status) if state.ready else None
        return InstanceStatus(unit=unit, enabled=unit in wanted, active=state.active,
                              sub=state.sub, pid=state.pid,
                              memory=state.memory or (state.pid and ctx.host.machine.rss(
                                  state.pid)) or None,
                              status=state.status, restarts=state.restarts,
                              since=state.since, calls=load.calls if load else None,
                              lag_p95_ms=load.lag_p95_ms if load else None, load=load)

    # While an operation is at work, its new units may run and its leaving ones may
    # still; what both keep must run.
    op = record.operation
    keep = {name: set(fleet.of(name)) & set(op.target.of(name)) if op else set(fleet.of(name))
            for name in settings.roles}
    known = {name: set(fleet.of(name)) | (set(op.target.of(name)) if op else set())
             for name in settings.roles}
    listing: dict[str, list[InstanceStatus]] = {}
    for name, role_settings in settings.roles.items():
        role = role_settings.role
        mine = sorted((u for u in states if role.owns(u)), key=_order)
        listing[name] = [instance(u) for u in mine]
        for item in listing[name] if name not in held else ():
            if item.unit in known[name] and item.unit not in keep[name]:
                continue  # coming or going with the operation
            if item.unit in keep[name]:
                if not item.enabled:
                    mismatches.append(f"{item.unit} is not enabled, so it will not come back "
                                      "at boot")
                if not item.ready:
                    mismatches.append(f"{item.unit} should run but is {item.active} "
                                      f"({item.sub})")
            elif states[item.unit].running or item.enabled:
                how = "runs" if item.active != "inactive" else "is enabled"
                mismatches.append(f"{item.unit} {how} but is not part of the fleet "
                                  f"({paths.RECORD})")
    mismatches += more
    return FleetStatus(
        configured={name: r.count for name, r in settings.roles.items()},
        roles=listing, upstream=sorted(m.port for m in fleet.upstream),
        release=fleet.release, previous_release=fleet.previous_release,
        operation=f"{record.operation.verb} ({record.operation.phase.value})"
        if record.operation else None,
        deploy=deploy, capacity=_capacity(ctx, fleet, front), mismatches=mismatches,
        pending=_pending(ctx, record, rendered),
        nginx_generations=[asdict(g) for g in nginx.old_generations(ctx.host)])


def text(settings: Settings, fleet: FleetStatus) -> str:
    """``status`` for people."""
    lines = ["Configured: " + ", ".join(f"{name} {count}"
                                        for name, count in fleet.configured.items())]
    if fleet.release:
        lines.append(f"Release: {fleet.release}"
                     + (f" (before it: {fleet.previous_release})" if fleet.previous_release
                        else ""))
    for name, items in fleet.roles.items():
        lines.append(f"{settings.role(name).role.title} ({name}):")
        for item in items:
            memory = f"{item.memory / MIB:.0f}M" if item.memory else "-"
            enabled = "enabled" if item.enabled else "disabled"
            lines.append(f"  {item.unit:40} {item.active}/{item.sub:9} {enabled:8} "
                         f"pid {item.pid or '-':<7} {memory:>6}  {item.status}")
        if not items:
            lines.append("  (none)")
    lines.append("nginx upstream dograh_api: " + (" ".join(map(str, fleet.upstream)) or "(none)"))
    if fleet.deploy:
        lines.append(f"Last deploy ({paths.DEPLOY_UNIT}): {fleet.deploy}")
    lines += generations_text(settings, fleet.nginx_generations)
    lines.append(f"Capacity: {fleet.capacity['text']}")
    if fleet.capacity["short_of_memory"]:
        lines.append(f"  warning: the fleet cannot use this host's memory; "
                     f"{fleet.capacity['short_of_memory']}")
    for title, found in (("Pending", fleet.pending), ("Mismatches", fleet.mismatches)):
        if found:
            lines += [f"{title}:", *(f"  {line}" for line in found)]
    if not fleet.mismatches:
        lines.append("No mismatches.")
    return "\n".join(lines)


def generations_text(settings: Settings, generations: list[dict[str, float]]) -> list[str]:
    timeout = nginx.shutdown_timeout(settings.drain_timeout)
    return [nginx.Generation(**g).describe(timeout) for g in generations]  # type: ignore[arg-type]


def _capacity(ctx: Context, fleet: Fleet, front: bool) -> dict[str, object]:
    ceiling = capacity.measure(ctx, fleet, front)
    return {"calls": ceiling.calls, "bound_by": ceiling.bound_by, "nginx": ceiling.nginx,
            "open_files": ceiling.open_files, "memory": ceiling.memory,
            "front": front, "text": ceiling.describe(),
            "short_of_memory": ceiling.short_of_memory}


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


def _pending(ctx: Context, record: Record, rendered: Mapping[str, str]) -> list[str]:
    return [f"{name}: its unit file or the app's environment changed since its processes "
            "started; they move onto it with: dograhctl restart"
            for name in units.behind(ctx.files, ctx.settings, record.fleet, rendered)]


def _order(unit: str) -> tuple[int, str]:
    """Numbered instances in numeric order."""
    name = unit.rsplit("@", 1)[-1].removesuffix(".service")
    return (int(name), unit) if name.isdigit() else (1 << 30, unit)
