"""A fleet of units on this host: what a single host and a worker host share.

Each changing verb reads top to bottom: finish what an interrupted command
left, plan against the record, check, carry out. The mode's own part (whose
nginx switches, which singletons run here, what the site is) comes from the
subclass.
"""

from __future__ import annotations

import datetime
from abc import abstractmethod
from dataclasses import replace
from pathlib import Path

from .. import (
    app_secrets,
    doctor,
    metrics,
    operation,
    paths,
    plan,
    preflight,
    releases,
    status,
    templates,
    units,
)
from ..config import Settings
from ..context import Context
from ..errors import DograhError
from ..host import lock
from ..host.files import Files, unified_diff
from ..operation import Outcome
from ..plan import Request
from ..record import Fleet, Operation, Record
from ..upstream import Member, dial_address
from ..worker import contract
from .mode import Answer, Change, Mode, ReleaseRequest


class LocalFleet(Mode):
    # The fewest API workers this host may run.
    api_min = 1
    # This host's own nginx carries its calls (a worker host's edges carry them).
    nginx_front = True

    # -- the verbs ---------------------------------------------------------------------

    def scale(self, ctx: Context, change: Change) -> Answer:
        self.check_options(change)
        record = self.settled(ctx)
        self.make_secret(ctx)
        op = self.plan(ctx, record.fleet, Request(
            "scale", change.api_workers, change.pools, change.drain_timeout,
            self.singletons(ctx, record.fleet, change), self.api_min))
        if op.roll:
            ctx.report("the unit files or the app's environment changed: every process of "
                       f"{', '.join(op.roll)} moves onto them, dropping no call")
        self.preflight(ctx, op, change.force)
        return self.done(ctx, operation.begin(ctx, self.steps(ctx.settings), op,
                                              stage=change.stage))

    def restart(self, ctx: Context, change: Change) -> Answer:
        """A fleet the admin stopped (systemctl stop dograh.target) is not started:
        its units are updated, and it stays stopped."""
        return self.replace_every_process(ctx, change, "restart", ctx)

    def deploy(self, ctx: Context, change: Change, release: str | None) -> Answer:
        target = None
        if release is not None:
            target = releases.described(ctx, release) if release else releases.newest_ready(ctx)
            if target.state != "ready":
                raise DograhError(f"release {target.id} is {target.state}, not ready"
                                  + (f": {target.why}" if target.why else ""))
        onto = replace(ctx, settings=releases.settings_for(ctx, target))
        return self.replace_every_process(ctx, change, "deploy", onto)

    def rollback(self, ctx: Context, change: Change) -> Answer:
        fleet = self.settled(ctx).fleet
        if not fleet.previous_release:
            raise DograhError("there is no release to roll back to: the fleet ran no other "
                              "release before this one")
        newer = releases.described(ctx, fleet.release) if fleet.release else None
        older = releases.described(ctx, fleet.previous_release)
        unknown = releases.unknown_migrations(newer, older) if newer else []
        if unknown and not change.unknown_migrations:
            raise DograhError(f"release {newer.id if newer else ''} ran migrations that "
                              f"{older.id} does not know ({', '.join(unknown)}): {older.id} "
                              "may not run against the database as it is now; roll back "
                              "anyway with: dograhctl rollback --force")
        if unknown:
            ctx.report(f"warning: {older.id} does not know the migrations "
                       f"{', '.join(unknown)}; rolling back because of --force")
        return self.deploy(ctx, change, older.id)

    def make_release(self, ctx: Context, request: ReleaseRequest) -> Answer:
        settings = ctx.settings
        source = request.source or settings.source
        if not source:
            raise DograhError("no source to make a release from: give one, or set "
                              "DOGRAH_SOURCE")
        release_id = request.id or releases.new_id(ctx)
        layout = request.layout or settings.source_layout
        with ctx.host.lock(ctx.report, 0, paths.RELEASES_LOCK):
            release = releases.make(ctx, source, settings.source_ref if request.ref is None
                                    else request.ref, layout,
                                    releases.app_of(settings, layout, request.app), release_id)
        with ctx.host.lock(ctx.report, lock.WAIT):
            self.prune(ctx)
        return Answer(f"release {release.id} is ready: {release.version} from {source}, "
                      f"{release.size // (1 << 20)} MiB"
                      + "".join(f"; note: {note}" for note in release.notes),
                      self.releases_data(ctx))

    def releases(self, ctx: Context) -> Answer:
        fleet = recorded(ctx).fleet
        busy = releases.in_use(ctx)
        lines = []
        for release in releases.listing(ctx):
            marks = [mark for mark, applies in (("current", release.id == fleet.release),
                                                ("previous", release.id == fleet.previous_release),
                                                ("in use", release.id in busy)) if applies]
            built = datetime.datetime.fromtimestamp(release.built, datetime.UTC)
            lines.append(f"{release.id:20} {release.version:24} {release.state:8} "
                         f"{built:%Y-%m-%d %H:%M}Z {release.size / (1 << 20):7.1f} MiB  "
                         f"{release.source}{'@' + release.ref if release.ref else ''}"
                         + (f"  ({', '.join(marks)})" if marks else "")
                         + (f"\n  {release.why}" if release.why else "")
                         + "".join(f"\n  note: {note}" for note in release.notes))
        lines += [f"{name:20} damaged: {why}" for name, why in releases.damaged(ctx).items()]
        return Answer("\n".join(lines) or "no releases yet (dograhctl release make)",
                      self.releases_data(ctx))

    def prune(self, ctx: Context) -> None:
        """Releases past DOGRAH_KEEP_RELEASES go, never one that runs or ran last."""
        fleet = recorded(ctx).fleet
        removed = releases.prune(ctx, ctx.settings.keep_releases,
                                 {fleet.release, fleet.previous_release})
        if removed:
            ctx.report(f"removed release(s) {', '.join(removed)} (DOGRAH_KEEP_RELEASES="
                       f"{ctx.settings.keep_releases})")

    def releases_data(self, ctx: Context) -> object:
        return [release.__dict__ for release in releases.listing(ctx)]

    def replace_every_process(self, ctx: Context, change: Change, verb: str,
                              onto: Context) -> Answer:
        """Every process replaced by one on ``onto``'s settings (a restart: the same;
        a deploy: another release's), dropping no call."""
        self.check_options(change)
        fleet = self.settled(ctx).fleet
        if not fleet.all_units():
            raise DograhError("nothing runs to restart; start the fleet with: dograhctl scale")
        self.make_secret(onto)
        if not any(state.running for state in ctx.systemd.show(fleet.all_units()).values()):
            if verb == "deploy":
                raise DograhError("the fleet is stopped: start it (systemctl start "
                                  "dograh.target) before a deploy")
            self.render(ctx, Path("/"), dry_run=False)
            ctx.report("the fleet is stopped: its units are updated, and it stays stopped "
                       "until: systemctl start dograh.target")
            return Answer("the fleet is stopped; its units are updated",
                          self.report_data(ctx, None))
        pools = {name: len(fleet.of(name)) for name in onto.settings.pools if name in fleet.units}
        op = self.plan(onto, fleet, Request(verb, len(fleet.api_ports()), pools,
                                            change.drain_timeout,
                                            self.singletons(onto, fleet, change), self.api_min))
        self.preflight(onto, op, change.force)
        answer = self.done(onto, operation.begin(onto, self.steps(onto.settings), op,
                                                 stage=change.stage),
                           {"restart": "restarted: ", "deploy": "deployed: "}[verb])
        if verb == "deploy" and not answer.text.startswith("staged"):
            self.prune(onto)
        return answer

    def resume(self, ctx: Context, switched: bool) -> Answer:
        _, outcome = self.finish(ctx, switched)
        if outcome is None:
            return Answer("nothing to finish", self.report_data(ctx, None))
        return self.done(ctx, outcome)

    def status(self, ctx: Context) -> Answer:
        found = self.collect(ctx)
        return Answer(status.text(ctx.settings, found), self.status_data(ctx, found),
                      1 if found.mismatches else 0)

    def metrics(self, ctx: Context) -> str:
        return metrics.for_fleet(ctx, self.collect(ctx)).text()

    def checks(self, ctx: Context) -> list[doctor.Check]:
        return doctor.for_workers(ctx, units.by_name(self.unit_files(ctx)), self.nginx_front)

    def collect(self, ctx: Context) -> status.FleetStatus:
        record = recorded(ctx)
        waiting = self.waiting(record.operation) if record.operation else ""
        return status.collect(ctx, record, units.by_name(self.unit_files(ctx)), waiting,
                              self.mismatches(ctx), self.held_roles(ctx.settings),
                              front=self.nginx_front)

    def render(self, ctx: Context, root: Path, dry_run: bool) -> dict[Path, str]:
        """Every generated file under ``root``. On the live root, only what moves no
        process: the site, dograh.target and the units of roles that run nothing now;
        unit definitions that running processes use wait for scale or restart, which
        move the processes onto them."""
        live = root == Path("/") and not dry_run
        fleet = self.settled(ctx).fleet if live else recorded(ctx).fleet
        if live:
            self.prepare_site(ctx)
        unit_files = self.unit_files(ctx)
        other = self.site_files(ctx, fleet)
        target = Files(root, ctx.files.owner, ctx.files.chown) if root != Path("/") else ctx.files
        changes = target.changed({**unit_files, **other})
        if dry_run:
            for path, text in changes.items():
                ctx.report(unified_diff(path, target.read(path), text))
            return changes
        if not live:
            for path, text in changes.items():
                target.write_generated(path, text)
            return changes
        self.make_secret(ctx)
        states = ctx.systemd.show(fleet.all_units())
        busy = {ctx.settings.role(name).role.unit_file for name, role_units in fleet.units.items()
                if any(states[unit].running for unit in role_units)}
        free = units.by_name({path: text for path, text in unit_files.items()
                              if path.name not in busy})
        units.install(ctx.host, free)
        definitions = {**fleet.definitions, **self.definitions(ctx, free)}
        if definitions != fleet.definitions:
            ctx.store.save(Record(replace(fleet, definitions=definitions)))
        self.apply_site(ctx, fleet)
        waiting = sorted(path.name for path in changes if path in unit_files and path.name in busy)
        if waiting:
            ctx.report(f"unit files that running processes use changed ({', '.join(waiting)}); "
                       "they move onto them with: dograhctl restart")
        return {path: text for path, text in changes.items() if path.name not in waiting}

    # -- what the modes fill in --------------------------------------------------------

    @abstractmethod
    def switch(self, ctx: Context, op: Operation, switched: bool) -> bool:
        """Send to ``op``'s target workers; False when that is not this host's to do
        (the operation then waits, staged). ``switched``: the edge did it."""

    def check_options(self, change: Change) -> None:
        """Options that belong to another mode are refused."""
        if change.per_host:
            self.refuse("--host", "is for an edge (a host with DOGRAH_HOSTS)")

    def held_roles(self, settings: Settings) -> frozenset[str]:
        """Roles whose units another part of this host starts and stops (a cluster's
        singletons, which its agent holds by lease): the fleet leaves them be."""
        return frozenset()

    def singletons(self, ctx: Context, fleet: Fleet, change: Change) -> frozenset[str] | None:
        """The singletons this host runs; None: as the config switches them."""
        return None

    def preflight(self, ctx: Context, op: Operation, force: bool) -> None:
        """Every check, before the first change: memory and free ports."""
        new_ports = set(op.target.api_ports()) - set(op.previous.api_ports())
        machine = ctx.host.machine
        for warning in (preflight.check_memory(machine, len(new_ports),
                                               self.memory_per_worker(ctx), force),
                        preflight.ephemeral_ports_warning(machine, ctx.settings)):
            if warning:
                ctx.report(warning)
        preflight.check_ports_free(machine, ctx.settings.host, new_ports)

    def nginx_files(self, ctx: Context, fleet: Fleet) -> dict[Path, str]:
        """The nginx files a switch to ``fleet`` installs (none where nginx is not ours)."""
        return {}

    def prepare_site(self, ctx: Context) -> None:
        """What the site needs before a render changes it."""

    def site_files(self, ctx: Context, fleet: Fleet) -> dict[Path, str]:
        """Generated files beside the units: the nginx site, or a worker host's firewall."""
        return {}

    def apply_site(self, ctx: Context, fleet: Fleet) -> None:
        """``render``'s last step on the live root: the site (or firewall) into service."""

    def after(self, ctx: Context, outcome: Outcome) -> None:
        """What follows a finished change on this host."""

    def mismatches(self, ctx: Context) -> list[str]:
        """This mode's own differences between what should be and what is."""
        return []

    def status_data(self, ctx: Context, found: status.FleetStatus) -> object:
        return found.as_dict()

    def report_data(self, ctx: Context, outcome: Outcome | None) -> object:
        """What ``--json`` prints after a change."""
        if outcome is None:
            return {"staged": False, "summary": None, "cut": None}
        return {"staged": outcome.staged, "summary": summary(ctx.settings, outcome),
                "cut": {"calls": outcome.cut.calls, "uncounted": list(outcome.cut.uncounted)},
                "upstream": [m.endpoint for m in outcome.operation.target.upstream]}

    def waiting(self, op: Operation) -> str:
        """Why a staged operation still waits, and what finishes it."""
        return f"a staged {op.verb} waits at its switch; finish it with: dograhctl resume"

    # -- shared steps ------------------------------------------------------------------

    def settled(self, ctx: Context) -> Record:
        """The record once what an interrupted command left is finished; an operation
        that stays staged (it waits for an edge) stops the command here."""
        record, outcome = self.finish(ctx)
        if outcome is not None:
            if outcome.staged:
                raise DograhError(self.waiting(outcome.operation))
            self.after(ctx, outcome)
        return record

    def finish(self, ctx: Context, switched: bool = False) -> tuple[Record, Outcome | None]:
        """Carry forward the recorded operation, if any; the record after it.

        Without a record (a fresh install, or the first command after an upgrade from
        a release that kept none) the fleet is read from what systemd runs.
        """
        record = ctx.store.load()
        if record is None:
            record = Record(self.adopt(ctx))
            ctx.store.save(record)
        op = record.operation
        if op is None:
            return record, None
        ctx.report(f"finishing {'a staged' if op.staged else 'an interrupted'} {op.verb} "
                   f"(at its {op.phase.value} phase)")
        outcome = operation.carry_out(ctx, self.steps(ctx.settings), op, switched=switched)
        if outcome.staged:
            return Record(op.previous, outcome.operation), outcome
        return Record(outcome.operation.target), outcome

    def done(self, ctx: Context, outcome: Outcome, verb: str = "") -> Answer:
        """The answer to a change; what follows it on this host, once it is finished."""
        text = summary(ctx.settings, outcome)
        if outcome.staged:
            return Answer(f"staged: {text}; {self.waiting(outcome.operation)}",
                          self.report_data(ctx, outcome))
        self.after(ctx, outcome)
        return Answer(verb + text, self.report_data(ctx, outcome))

    def steps(self, settings: Settings) -> operation.Steps:
        """What the phase machine is lent: this mode's switch, the host's own units, and
        the roles it leaves be."""
        return operation.Steps(self.switch, self.started_units, self.held_roles(settings))

    def plan(self, ctx: Context, fleet: Fleet, request: Request) -> Operation:
        rendered = units.by_name(self.unit_files(ctx))
        op = plan.operation(ctx.settings, fleet, request, rendered,
                            units.installed(ctx.files, ctx.settings),
                            self.definitions(ctx, rendered), live_calls(ctx, fleet),
                            ctx.clock.time())
        return self.with_nginx(ctx, op)

    def with_nginx(self, ctx: Context, op: Operation) -> Operation:
        """``op`` with the nginx files its switch installs, and those they replace."""
        nginx = self.nginx_files(ctx, op.target)
        return replace(op, nginx={str(path): text for path, text in nginx.items()},
                       previous_nginx={str(path): text for path in nginx
                                       if (text := ctx.files.read(path)) is not None})

    def unit_files(self, ctx: Context) -> dict[Path, str]:
        return templates.render_units(ctx.settings, ctx.facts, self.standing(ctx.settings))

    def definitions(self, ctx: Context, texts: dict[str, str]) -> dict[str, str]:
        return units.definitions(ctx.files, ctx.settings, texts,
                                 units.make_digest_key(ctx.files))

    def adopt(self, ctx: Context) -> Fleet:
        """The fleet systemd runs now, for a host that has no record yet."""
        settings = ctx.settings
        seen = units.on_host(ctx.host, (r.role for r in settings.roles.values()))
        states = ctx.systemd.show(seen)
        fleet_units = {}
        held = self.held_roles(settings)
        for name, role_settings in settings.roles.items():
            if name in held:
                continue
            role = role_settings.role
            fleet_units[name] = tuple(unit for unit in seen if role.names(unit) and (
                states[unit].running or states[unit].enabled == "enabled"))
        found = Fleet(units={k: v for k, v in fleet_units.items() if v})
        address = dial_address(settings.host)
        upstream = tuple(Member(address, port) for port in found.api_ports())
        installed = units.installed(ctx.files, settings)
        return replace(found, upstream=upstream, definitions=self.definitions(ctx, installed))

    def memory_per_worker(self, ctx: Context) -> int:
        """Measured mean of the running API workers, else the configured estimate."""
        record = ctx.store.load()
        running = ctx.systemd.show(record.fleet.of(ctx.settings.api.role.name)) if record else {}
        measured = [memory for state in running.values()
                    if (memory := state.memory or (state.pid and ctx.host.machine.rss(state.pid)))]
        if measured:
            return sum(measured) // len(measured)
        return ctx.settings.worker_memory_mb * preflight.MIB

    @staticmethod
    def make_secret(ctx: Context) -> None:
        """A Dograh layout's API needs its secrets: make those it has none of."""
        done = app_secrets.ensure(ctx.files, ctx.settings)
        if done:
            ctx.report(done)


def live_calls(ctx: Context, fleet: Fleet) -> dict[int, int]:
    """Each running API worker's live calls, by port, from its Status line."""
    api = ctx.settings.api.role
    live = {}
    for unit, state in ctx.systemd.show(fleet.of(api.name)).items():
        load = contract.parse_status(state.status) if state.ready else None
        live[api.port(unit)] = load.calls if load else 0
    return live


def summary(settings: Settings, outcome: Outcome) -> str:
    """What a change left running, in one line."""
    op = outcome.operation
    fleet, before = op.target, set(op.previous.all_units())
    ports = fleet.api_ports()
    parts = [f"{len(ports)} API workers" + (f" (ports {ports[0]}-{ports[-1]})" if ports else "")]
    parts += [f"{len(fleet.of(name))} {settings.role(name).role.title.removeprefix('Dograh ')}s"
              for name in settings.pools]
    singletons = [unit for name in settings.singletons for unit in fleet.of(name)]
    started = len(set(fleet.all_units()) - before)
    stopped = len(before - set(fleet.all_units()))
    text = (", ".join(parts) + ", singletons: " + (", ".join(singletons) or "none")
            + f" (started {started}, stopped {stopped})")
    if fleet.release:
        text += f", release {fleet.release}"
    if outcome.cut.calls:
        text += f"; the drain timeout cut {outcome.cut.calls} live call(s)"
    if outcome.cut.uncounted:
        text += (f"; {len(outcome.cut.uncounted)} worker(s) stopped while their app could not "
                 "count its calls")
    return text


def recorded(ctx: Context) -> Record:
    """The record as it stands, or an empty fleet before the first command."""
    return ctx.store.load() or Record(Fleet())

