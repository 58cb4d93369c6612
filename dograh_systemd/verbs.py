"""dograhctl's changing verbs. Each reads top to bottom: finish what an interrupted
command left, plan against the record, check, carry out.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from . import (
    balance,
    devops_secret,
    files,
    front,
    operation,
    paths,
    plan,
    preflight,
    templates,
    units,
)
from .context import Context
from .errors import DograhError
from .operation import Outcome
from .plan import Request, ports_of
from .record import Fleet, Operation, Phase, Record
from .roles import Kind
from .templates import Member, dial_address
from .worker import contract

REBALANCE_AFTER = 60


def resume(ctx: Context, staged_too: bool = True) -> Record:
    """Finish the operation an interrupted command left, if any; the record after it.
    One staged for an edge is finished too, unless ``staged_too`` is False.

    Without a record (a fresh install, or the first command after an upgrade from
    a release that kept none) the fleet is read from what systemd runs.
    """
    return finish(ctx, staged_too)[0]


def finish(ctx: Context, staged_too: bool = True) -> tuple[Record, Outcome | None]:
    """``resume``, with what the finished operation did."""
    record = ctx.store.load()
    if record is None:
        record = Record(adopt(ctx))
        ctx.store.save(record)
    op = record.operation
    if op is None or (op.staged and not staged_too):
        return record, None
    ctx.report(f"finishing {'a staged' if op.staged else 'an interrupted'} {op.verb} (at its "
               f"{op.phase.value} phase)")
    outcome = operation.carry_out(ctx, op, resumed=True)
    return Record(outcome.operation.target), outcome


def scale(ctx: Context, api_workers: int | None, pool_workers: dict[str, int],
          force: bool, drain_timeout: float | None, singletons: frozenset[str] | None = None,
          stage: bool = False) -> Outcome:
    """Bring the fleet to the asked-for size, on the config's definitions. ``singletons``:
    the ones this host runs, when an edge decides; ``stage``: stop once the new units
    are READY (see operation.begin)."""
    record = resume(ctx)
    _make_secret(ctx)
    op = _plan(ctx, record.fleet, Request("scale", api_workers, pool_workers, drain_timeout,
                                          singletons))
    if op.roll:
        ctx.report("the unit files or the app's environment changed: every process of "
                   f"{', '.join(op.roll)} moves onto them, dropping no call")
    _preflight(ctx, op, force)
    return _finish(ctx, operation.begin(ctx, op, stage=stage))


def restart(ctx: Context, force: bool, drain_timeout: float | None,
            stage: bool = False) -> Outcome | None:
    """Replace every process with a fresh one on the current code, dropping no call.

    A fleet the admin stopped (systemctl stop dograh.target) is not started:
    its units are updated, and None says so.
    """
    record = resume(ctx)
    fleet = record.fleet
    api = ctx.settings.api.role
    if not fleet.of(api.name):
        raise DograhError("no API workers to restart; start some with: dograhctl scale")
    _make_secret(ctx)
    if not _running(ctx, fleet):
        render(ctx, Path("/"), dry_run=False)
        ctx.report("the fleet is stopped: its units are updated, and it stays stopped until: "
                   "systemctl start dograh.target")
        return None
    pools = {name: len(fleet.of(name)) for name, r in ctx.settings.roles.items()
             if r.role.kind is Kind.POOL and name in fleet.units}
    # A worker host keeps the singletons its edge placed there; a single host, the config's.
    singletons = frozenset(name for name, r in ctx.settings.roles.items()
                           if r.role.kind is Kind.SINGLETON and fleet.of(name)) \
        if ctx.settings.mode == "worker" else None
    op = _plan(ctx, fleet, Request("restart", len(fleet.of(api.name)), pools, drain_timeout,
                                   singletons))
    _preflight(ctx, op, force)
    return _finish(ctx, operation.begin(ctx, op, stage=stage))


def restart_in_background(ctx: Context, options: list[str]) -> None:
    """Run the deploy as a transient service and return at once."""
    ctx.systemd.run_detached(paths.DEPLOY_UNIT, "Dograh: deploy the current code, dropping "
                             "no call (dograhctl restart)",
                             [sys.executable, "-m", "dograh_systemd", "--config",
                              str(ctx.settings.config_path), "restart", *options])
    ctx.report(f"the deploy runs as {paths.DEPLOY_UNIT}; follow it with: "
               f"journalctl -f -u {paths.DEPLOY_UNIT}")


def rebalance(ctx: Context) -> dict[int, int]:
    """Re-weigh the upstream from the workers' live calls; nginx reloads only on a change."""
    fleet = resume(ctx).fleet
    live = live_calls(ctx, fleet)
    weights = balance.weights({m.port: live.get(m.port, 0) for m in fleet.upstream})
    target = replace(fleet, upstream=tuple(replace(m, weight=weights[m.port])
                                           for m in fleet.upstream))
    if target != fleet:
        installed = units.installed(ctx.settings)
        operation.begin(ctx, Operation(verb="rebalance", started=ctx.clock.time(),
                                       phase=Phase.START, target=target, previous=fleet,
                                       units=installed, previous_units=installed))
    _follow_up(ctx, target)
    return weights


def render(ctx: Context, root: Path, dry_run: bool) -> dict[Path, str]:
    """Render every file under ``root``. On the live root, only what moves no process:
    the nginx site, dograh.target and the units of roles that run nothing now; unit
    definitions that running processes use wait for scale or restart, which move
    the processes onto them."""
    live = root == Path("/") and not dry_run
    fleet = resume(ctx).fleet if live else _read_fleet(ctx)
    if live:
        front.prepare(ctx)
    site = front.read(ctx)
    unit_files = templates.render_units(ctx.settings, ctx.facts)
    nginx_files = templates.render_nginx(ctx.settings, fleet.upstream or _first_upstream(ctx),
                                         ctx.facts, site.certificate, site.default_server)
    changes = files.changed({**unit_files, **nginx_files}, root)
    if dry_run:
        for path, text in changes.items():
            ctx.report(files.unified_diff(path, files.read(files.under(root, path)), text))
        return changes
    if root != Path("/"):
        for path, text in changes.items():
            files.write_generated(files.under(root, path), text)
        return changes
    _make_secret(ctx)
    states = ctx.systemd.show(fleet.all_units())
    busy = {ctx.settings.role(name).role.unit_file for name, role_units in fleet.units.items()
            if any(states[unit].running for unit in role_units)}
    free = units.by_name({path: text for path, text in unit_files.items()
                          if path.name not in busy})
    units.install(ctx.systemd, free)
    definitions = {**fleet.definitions, **units.definitions(ctx.settings, free)}
    if definitions != fleet.definitions:
        ctx.store.save(Record(replace(fleet, definitions=definitions)))
    if fleet.upstream:
        # Reloaded even when no file of ours changed: the admin's snippets may have.
        front.apply(ctx, fleet.upstream, reload=True)
        front.certify(ctx, fleet.upstream)
    waiting = sorted(path.name for path in changes if path in unit_files and path.name in busy)
    if waiting:
        ctx.report(f"unit files that running processes use changed ({', '.join(waiting)}); "
                   "they move onto them with: dograhctl restart")
    return {path: text for path, text in changes.items() if path.name not in waiting}


def _make_secret(ctx: Context) -> None:
    """A Dograh checkout's API needs a DOGRAH_DEVOPS_SECRET: make one if it has none."""
    done = devops_secret.ensure(ctx.settings)
    if done:
        ctx.report(done)


def _running(ctx: Context, fleet: Fleet) -> bool:
    """Whether any unit of the fleet runs (or is on its way up or down)."""
    return any(state.running for state in ctx.systemd.show(fleet.all_units()).values())


def adopt(ctx: Context) -> Fleet:
    """The fleet systemd runs now, for a host that has no record yet."""
    settings, systemd = ctx.settings, ctx.systemd
    seen = set(systemd.listed("dograh-*")) | set(systemd.wanted_by("dograh.target"))
    states = systemd.show(sorted(seen))
    fleet_units = {}
    for name, role_settings in settings.roles.items():
        role = role_settings.role
        fleet_units[name] = tuple(sorted(
            unit for unit in seen if role.names(unit)
            and (states[unit].running or states[unit].enabled == "enabled")))
    api = ctx.settings.api.role
    address = dial_address(settings.host)
    upstream = tuple(Member(address, port) for port in sorted(ports_of(api, fleet_units[api.name])))
    installed = units.installed(settings)
    return Fleet(units={k: v for k, v in fleet_units.items() if v}, upstream=upstream,
                 definitions=units.definitions(settings, installed))


def live_calls(ctx: Context, fleet: Fleet) -> dict[int, int]:
    """Each running API worker's live calls, by port, from its Status line."""
    api = ctx.settings.api.role
    states = ctx.systemd.show(fleet.of(api.name))
    live = {}
    for unit, state in states.items():
        load = contract.parse_status(state.status) if state.ready else None
        live[int(api.instance_name(unit))] = load.calls if load else 0
    return live


def _read_fleet(ctx: Context) -> Fleet:
    record = ctx.store.load()
    return record.fleet if record else Fleet()


def _first_upstream(ctx: Context) -> tuple[Member, ...]:
    """What the first scale will put in nginx: the config's count, in the first band."""
    ports = list(ctx.settings.band_ports(0))[:ctx.settings.api_workers]
    return tuple(Member(dial_address(ctx.settings.host), port) for port in ports)


def _plan(ctx: Context, fleet: Fleet, request: Request) -> Operation:
    rendered = units.by_name(templates.render_units(ctx.settings, ctx.facts))
    return plan.operation(ctx.settings, fleet, request, rendered,
                          units.installed(ctx.settings),
                          units.definitions(ctx.settings, rendered), live_calls(ctx, fleet),
                          ctx.clock.time())


def _preflight(ctx: Context, op: Operation, force: bool) -> None:
    """Every check, before the first change."""
    ctx.nginx.test()
    front.prepare(ctx)
    api = ctx.settings.api.role
    new_ports = ports_of(api, op.target.of(api.name)) - ports_of(api, op.previous.of(api.name))
    for warning in (preflight.check_memory(len(new_ports), _memory_per_worker(ctx), force),
                    preflight.ephemeral_ports_warning(ctx.settings)):
        if warning:
            ctx.report(warning)
    preflight.check_ports_free(ctx.settings.host, new_ports)


def _memory_per_worker(ctx: Context) -> int:
    """Measured mean of the running API workers, else the configured estimate."""
    record = ctx.store.load()
    running = ctx.systemd.show(record.fleet.of(ctx.settings.api.role.name)) if record else {}
    measured = [state.memory for state in running.values() if state.memory]
    if measured:
        return sum(measured) // len(measured)
    return ctx.settings.worker_memory_mb * preflight.MIB


def _finish(ctx: Context, outcome: Outcome) -> Outcome:
    """After a local change: the site's certificate, and weights that settle (a worker
    host has no site; its edge does both)."""
    if ctx.settings.mode == "single":
        front.certify(ctx, outcome.operation.target.upstream)
        _follow_up(ctx, outcome.operation.target)
    return outcome


def _follow_up(ctx: Context, fleet: Fleet) -> None:
    """While weights are uneven, re-weigh again later; stop once the fleet is even."""
    if balance.is_even(fleet.weights()):
        ctx.systemd.cancel_later(paths.REBALANCE_UNIT)
        return
    ctx.systemd.run_later(paths.REBALANCE_UNIT, REBALANCE_AFTER,
                          "Dograh: re-weigh the nginx upstream from live calls",
                          [sys.executable, "-m", "dograh_systemd", "--config",
                           str(ctx.settings.config_path), "rebalance"])
    ctx.report(f"weights are re-derived from live calls in {REBALANCE_AFTER}s, until even")
