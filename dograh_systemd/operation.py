"""Carry an operation through, phase by phase, so that no interruption can break it.

    start   install the target's unit files, migrate, start what is new, wait for READY
    switch  nginx sends to the target's API workers, and to no other
    drain   leaving API workers finish their calls (up to the drain timeout)
    stop    leaving units stop; unit files no role uses any more go
    roll    the other roles' running processes restart onto new definitions

The record holds the operation from before its first change and learns each
phase as it begins. Every phase is idempotent, so the next command finishes an
interrupted operation by running it again from the phase recorded. A failure
before nginx switched rolls back to the previous fleet, unit files and nginx
files included; once nginx sends to the new workers, an operation only goes
forward. The switch is the mode's, handed in with the host's own units: a
single host's own nginx, or, on a worker host, its edge's, which this host
waits for (the operation stays staged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import drain, paths, rollout, units
from .context import Context
from .errors import DograhError
from .record import Fleet, Operation, Phase, Record
from .roles import Kind, role_of

ROLLBACK = "rollback"


@dataclass(frozen=True)
class Steps:
    """What the phase machine is lent by the mode it works for."""

    # Sends to the operation's target workers; False when that is not this host's to
    # do (the operation then waits, staged). Its last argument: the edge did it.
    switch: Callable[[Context, Operation, bool], bool]
    # The host's own units, enabled and started with the fleet (a firewall, a timer).
    host_units: tuple[str, ...]
    # Roles whose units another part of the host starts and stops (a cluster's
    # singletons, its agent's): never stopped as leaving.
    held: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Outcome:
    operation: Operation
    cut: drain.Cut
    # Stopped, as asked, once the new units were READY: the next command finishes it.
    staged: bool = False


def begin(ctx: Context, steps: Steps, op: Operation, stage: bool = False) -> Outcome:
    """Record ``op``, then carry it out; with ``stage``, only until the new units are READY."""
    ctx.store.save(Record(op.previous, op))
    return carry_out(ctx, steps, op, stage=stage)


def carry_out(ctx: Context, steps: Steps, op: Operation, stage: bool = False,
              switched: bool = False) -> Outcome:
    """Take the fleet from ``op.previous`` to ``op.target``, from ``op.phase`` on.

    ``stage`` stops once the new units are READY; ``switched`` says the edge's
    nginx sends to them now (it counts only for an operation that was READY,
    at its switch phase, before this command began).
    """
    if op.phase in (Phase.START, Phase.SWITCH):
        switched = switched and op.phase is Phase.SWITCH
        try:
            if op.phase is Phase.START:
                _start(ctx, op, steps.host_units)
                op = _advance(ctx, op, Phase.SWITCH)
            # A rollback goes back to what nginx (or the edge) sends to already.
            if stage or not steps.switch(ctx, op, switched or op.verb == ROLLBACK):
                if not op.staged:
                    op = _advance(ctx, op, Phase.SWITCH, staged=True)
                return Outcome(op, drain.Cut(), staged=True)
        except DograhError as failure:
            if op.verb == ROLLBACK:
                raise DograhError(f"{failure}; rolling back did not finish, the next "
                                  "dograhctl command tries again") from None
            _roll_back(ctx, steps, op)
            raise DograhError(f"{failure} (rolled back)") from None
        deadline = None if op.drain_timeout is None else ctx.clock.time() + op.drain_timeout
        op = _advance(ctx, op, Phase.DRAIN, drain_deadline=deadline, staged=False)
    cut = drain.Cut()
    if op.phase is Phase.DRAIN:
        if op.drain_timeout is not None and op.drain_deadline is not None:
            cut = drain.until_idle(ctx, _leaving(ctx, op, steps.held, Kind.API),
                                   op.drain_deadline, op.drain_timeout)
        op = _advance(ctx, op, Phase.STOP)
    if op.phase is Phase.STOP:
        _stop(ctx, op, steps.held)
        op = _advance(ctx, op, Phase.ROLL)
    if op.phase is Phase.ROLL:
        _roll(ctx, op)
    ctx.store.save(Record(op.target))
    return Outcome(op, cut)


def _advance(ctx: Context, op: Operation, phase: Phase, **changes: object) -> Operation:
    op = op.at(phase, **changes)
    ctx.store.save(Record(op.previous, op))
    return op


def _start(ctx: Context, op: Operation, host_units: tuple[str, ...]) -> None:
    """The target's unit files in place, migrations run, every target unit READY."""
    settings, systemd = ctx.settings, ctx.systemd
    units.install(ctx.host, op.units)
    wanted = op.target.all_units()
    systemd.enable([paths.TARGET, *host_units, *wanted])
    if op.verb == ROLLBACK:
        # The previous fleet ran before: start what is missing, expect nothing new.
        states = systemd.show(wanted)
        systemd.start_no_block(u for u in wanted if not states[u].running)
        return
    for name in op.roll:
        role = settings.role(name).role
        if role.kind is Kind.MIGRATION:
            ctx.report("running migrations")
            try:
                systemd.reload_or_restart(role.unit_file)
            except DograhError:
                why = systemd.journal_tail(role.unit_file)
                raise DograhError(f"migrations failed, the running fleet is unchanged; "
                                  f"journal: {why}") from None
    states = systemd.show(wanted)
    # New units, and any of the fleet's that died and stayed down; the host's
    # own units; and the target, so that "systemctl stop dograh.target" stops
    # what runs now.
    systemd.start_no_block([paths.TARGET, *host_units])
    rollout.start_and_wait(ctx, [unit for unit in wanted if not states[unit].ready])


def describe(fleet: Fleet) -> str:
    """Ports, with the weights that are not 1."""
    return "ports " + " ".join(f"{m.port}" + (f" (weight {m.weight})" if m.weight != 1 else "")
                               for m in sorted(fleet.upstream, key=lambda m: m.port))


def _stop(ctx: Context, op: Operation, held: frozenset[str]) -> None:
    leaving = _leaving(ctx, op, held)
    ctx.systemd.stop(leaving)
    ctx.systemd.disable(leaving)
    ctx.systemd.reset_failed(leaving)
    # Host units of another mode (this host was a worker host, say, and is not now).
    installed = units.installed(ctx.files, ctx.settings)
    for name in paths.HOST_UNITS:
        if name not in op.units and name in installed:
            ctx.systemd.discard(name)
            ctx.systemd.disable([name])
    units.prune(ctx.host, ctx.settings, op.units)


def _roll(ctx: Context, op: Operation) -> None:
    """Pool workers restart one at a time, each finishing its job first; a singleton
    stops before it starts, so it never runs twice. Units that started after the
    operation began already run the new definitions."""
    for name in op.roll:
        role = ctx.settings.role(name).role
        if role.kind not in (Kind.POOL, Kind.SINGLETON):
            continue
        for unit in op.target.of(name):
            if ctx.systemd.show([unit])[unit].since < op.started:
                ctx.report(f"restarting {unit}")
                ctx.systemd.restart(unit)


def _leaving(ctx: Context, op: Operation, held: frozenset[str], kind: Kind | None = None
             ) -> list[str]:
    """Units of the fleet's roles that systemd knows (loaded, running or enabled) or that
    were in the previous fleet, and that the target does not keep (of one kind, if
    given). Instances with names dograhctl never gives are left alone: the admin
    made them, and so are the units of ``held`` roles."""
    roles = tuple(r.role for name, r in ctx.settings.roles.items() if name not in held)
    seen = set(op.previous.all_units()) | set(units.on_host(ctx.host, roles))
    candidates = [unit for unit in sorted(seen - set(op.target.all_units()))
                  if (role := role_of(unit, roles)) and role.names(unit)
                  and (kind is None or role.kind is kind)]
    states = ctx.systemd.show(candidates)
    return [unit for unit in candidates if states[unit].load == "loaded"
            or states[unit].running or states[unit].enabled == "enabled"]


def _roll_back(ctx: Context, steps: Steps, failed: Operation) -> None:
    """Back to the fleet that ran before, on its own unit files and nginx files."""
    back = Operation(verb=ROLLBACK, started=ctx.clock.time(), phase=Phase.START,
                     target=failed.previous, previous=failed.target,
                     units=failed.previous_units, previous_units=failed.units,
                     nginx=failed.previous_nginx, previous_nginx=failed.nginx)
    begin(ctx, steps, back)
