"""The edge: one front door for the API workers of several hosts, one command for all.

The edge runs the public nginx with one least_conn upstream over every ready
API worker of every worker host (one hop, balanced per worker). Each host
runs its own dograhctl; the edge calls it over SSH (``remote``), reads its
wire.HostReport, and keeps the order of operations across hosts that one host
keeps alone:

    scale    every host stages its new size (new workers start, READY); the
             edge's upstream switches to the staged workers of all hosts; each
             host then finishes: its leaving workers drain by the app's own
             count and stop
    restart  host by host: a new band, READY, the edge switches, the old band
             drains and stops, then the next host
    rebalance  (dograh-cluster.timer, every 15 s) the upstream follows the hosts
             that answer, weighed by live calls; a change a host staged on its
             own (its admin's restart, its package's upgrade) is switched to and
             finished; singletons are put where they belong

The edge trusts nothing it did not derive itself: addresses come from
DOGRAH_HOSTS, and a host's report is read through the strict wire schema. A
host that does not answer, or answers out of shape, is trouble: it is named,
left out, and holds up no other host.

Singletons have no leader election, so the edge never starts one while a host
that may run it cannot be asked: it stops it where it must not run first
(confirmed by that host's report), and refuses a start while any host is in
trouble, unless the admin says that host is gone for good (``--host-is-gone``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from .. import (
    balance,
    command_lines,
    doctor,
    front,
    metrics,
    nginx,
    paths,
    placement,
    releases,
    remote,
    status,
    templates,
    units,
)
from ..config import Settings
from ..context import Context
from ..errors import DograhError
from ..host.files import Files, unified_diff
from ..record import Fleet, Record
from ..remote import Host, Survey
from ..upstream import Member, Route
from .mode import Answer, Change, Mode, ReleaseRequest

START_TIMEOUT = 300


class Edge(Mode):
    host_units = (paths.CLUSTER_UNIT, paths.CLUSTER_TIMER, *Mode.host_units)

    # -- the verbs ---------------------------------------------------------------------

    def scale(self, ctx: Context, change: Change) -> Answer:
        """Spread the API workers over the hosts that answer, by their CPUs (a host given
        with --host gets its own count), and the singletons where they belong."""
        settings = ctx.settings
        survey = self.begin(ctx, change)
        total = settings.api_workers if change.api_workers is None else change.api_workers
        counts = placement.spread(total, change.per_host,
                                  {host.name: report.cpus
                                   for host, report in survey.reports.items()})
        placed = self.place_singletons(ctx, survey, change.gone, refuse=True)
        # A singleton that moves stops where it ran before any host starts it.
        for host, moving in placement.still_running(survey.running(), placed).items():
            where = self.named(survey, host)
            ctx.report(f"{where}: stopping {', '.join(moving)} before another host starts it")
            self.change(ctx, survey, {where: command_lines.scale(
                len(survey.reports[where].members), placed[host], change.drain_timeout)},
                change.drain_timeout)
        still = placement.still_running(survey.running(), placed)
        if still:
            host, extra = next(iter(still.items()))
            raise DograhError(f"{self.named(survey, host)} still runs {', '.join(extra)}; "
                              "nothing was started elsewhere")
        self.change(ctx, survey, {host: command_lines.scale(counts[host.name],
                                                            placed[host.name],
                                                            change.drain_timeout)
                                  for host in list(survey.reports)}, change.drain_timeout)
        front.certify(ctx, recorded_upstream(ctx), self.routes(settings))
        return self.answer(ctx, survey)

    def restart(self, ctx: Context, change: Change) -> Answer:
        """Every host onto the current code, one after another, dropping no call."""
        survey = self.begin(ctx, change)
        self.one_by_one(ctx, survey, change, command_lines.restart(change.drain_timeout),
                        "deploying")
        front.certify(ctx, recorded_upstream(ctx), self.routes(ctx.settings))
        return self.answer(ctx, survey, "restarted: ")

    def make_release(self, ctx: Context, request: ReleaseRequest) -> Answer:
        """The same release, under the same name, built on every worker host at once;
        one host that cannot build it fails the command, before anything is deployed."""
        settings = ctx.settings
        source = request.source or settings.source
        if not source:
            raise DograhError("no source to make a release from: give one, or set "
                              "DOGRAH_SOURCE")
        remote.check_key(ctx)
        survey = remote.survey(ctx)
        release_id = request.id or releases.new_id(ctx)
        ref = settings.source_ref if request.ref is None else request.ref
        args = command_lines.release_make(source, ref, release_id,
                                          request.layout or settings.source_layout,
                                          request.app)
        ctx.report(f"making release {release_id} on {', '.join(h.name for h in survey.reports)}")
        remote.ask_each(ctx, survey, {host: args for host in survey.reports},
                        releases.BUILD_TIMEOUT + 120)
        missing = placement.lacking(release_id, survey.releases(), survey.unreachable())
        if missing:
            raise DograhError(f"release {release_id} is not ready on {'; '.join(missing)}; "
                              "nothing was deployed")
        return Answer(f"release {release_id} is ready on {len(survey.reports)} host(s)",
                      self.releases_data(survey))

    def releases(self, ctx: Context) -> Answer:
        survey = remote.survey(ctx)
        lines = []
        for host, report in survey.reports.items():
            lines.append(f"Host {host}: runs {report.release or 'its config app, in place'}")
            lines += [f"  {release.id:20} {release.state}" for release in report.releases]
        lines += [f"Host {host}: {trouble.why}" for host, trouble in survey.trouble.items()]
        return Answer("\n".join(lines), self.releases_data(survey))

    def deploy(self, ctx: Context, change: Change, release: str | None) -> Answer:
        """Host by host onto the release every host has ready, dropping no call; when one
        host lacks it, none moves."""
        survey = self.begin(ctx, change)
        if release == "":
            release = placement.newest_everywhere(survey.releases())
            if release is None:
                raise DograhError("no release is ready on every host; make one with: "
                                  "dograhctl release make")
        if release is not None:
            missing = placement.lacking(release, survey.releases(), survey.unreachable())
            if missing:
                raise DograhError(f"release {release} is not ready on {'; '.join(missing)}; "
                                  "no host moved")
        self.one_by_one(ctx, survey, change,
                        command_lines.deploy(release, change.drain_timeout),
                        f"deploying {release or 'its config app, in place'}")
        return self.answer(ctx, survey, "deployed: ")

    def rollback(self, ctx: Context, change: Change) -> Answer:
        """Host by host back onto the release each ran before."""
        survey = self.begin(ctx, change)
        self.one_by_one(ctx, survey, change,
                        command_lines.rollback(change.unknown_migrations, change.drain_timeout),
                        "rolling back")
        return self.answer(ctx, survey, "rolled back: ")

    @staticmethod
    def releases_data(survey: Survey) -> object:
        return {"hosts": {host.name: {"release": report.release,
                                      "releases": [r.dict() for r in report.releases]}
                          for host, report in survey.reports.items()},
                "down": survey.unreachable()}

    def resume(self, ctx: Context, switched: bool) -> Answer:
        """Finish what interrupted commands left on the hosts."""
        survey = remote.survey(ctx)
        self.settle(ctx, survey)
        return self.answer(ctx, survey)

    def rebalance(self, ctx: Context) -> Answer:
        """The upstream from the hosts that answer now, weighed by their live calls; what a
        host staged on its own is finished, and singletons go where they belong."""
        self.edge_units(ctx)
        survey = remote.survey(ctx)
        self.settle(ctx, survey, background=True)
        placed = self.place_singletons(ctx, survey, frozenset(), refuse=False)
        drain = ctx.settings.drain_timeout
        for host, report in list(survey.reports.items()):
            if set(report.singletons) != placed[host.name]:
                ctx.report(f"{host}: singletons {', '.join(sorted(placed[host.name])) or 'none'}"
                           f" (were {', '.join(sorted(report.singletons)) or 'none'})")
                self.change(ctx, survey, {host: command_lines.scale(
                    len(report.members), placed[host.name], drain)}, drain, background=True)
        self.switch_to(ctx, survey)
        return self.answer(ctx, survey)

    def status(self, ctx: Context) -> Answer:
        """Every host's report, the edge's upstream, and where they disagree."""
        survey = remote.survey(ctx)
        mismatches = [f"{host.name} {trouble.why}" for host, trouble in survey.trouble.items()]
        for host, report in survey.reports.items():
            mismatches += [f"{host.name}: {line}" for line in report.mismatches]
        running = survey.running()
        for role in ctx.settings.enabled_singletons:
            where = [host for host, roles in running.items() if role in roles]
            if len(where) != 1 and not (not where and survey.trouble):
                mismatches.append(f"{role} runs on {len(where)} hosts "
                                  f"({', '.join(where) or 'none'}), not exactly one")
        upstream = recorded_upstream(ctx)
        ready = {(host.address, m.port) for host, report in survey.reports.items()
                 for m in report.members if m.ready}
        listed = {(m.address, m.port) for m in upstream}
        mismatches += [f"the upstream lists {a}:{p}, which is not ready"
                       for a, p in sorted(listed - ready)]
        mismatches += [f"{a}:{p} is ready but not in the upstream"
                       for a, p in sorted(ready - listed)]
        generations = [asdict(g) for g in nginx.old_generations(ctx.host)]
        data = {"hosts": {host.name: report.dict() for host, report in survey.reports.items()},
                "down": survey.unreachable(),
                "upstream": [m.endpoint for m in upstream], "mismatches": mismatches,
                "nginx_generations": generations}
        text = status_text(survey, upstream, mismatches,
                           status.generations_text(ctx.settings, generations))
        return Answer(text, data, 1 if mismatches else 0)

    def metrics(self, ctx: Context) -> str:
        out = metrics.for_edge(ctx, recorded_upstream(ctx), remote.survey(ctx))
        generations = [asdict(g) for g in nginx.old_generations(ctx.host)]
        return metrics.with_site(out, ctx, generations).text()

    def checks(self, ctx: Context) -> list[doctor.Check]:
        return doctor.for_site(ctx)

    def render(self, ctx: Context, root: Path, dry_run: bool) -> dict[Path, str]:
        """The edge's own units and its site, with the upstream it recorded."""
        upstream = recorded_upstream(ctx)
        routes = self.routes(ctx.settings)
        if root == Path("/") and not dry_run:
            front.prepare(ctx)
        rendered = dict(self.unit_files(ctx))
        if upstream:
            rendered.update(front.render(ctx, upstream, routes))
        target = Files(root, ctx.files.owner, ctx.files.chown) if root != Path("/") else ctx.files
        changes = target.changed(rendered)
        if dry_run:
            for path, text in changes.items():
                ctx.report(unified_diff(path, target.read(path), text))
        elif root != Path("/"):
            for path, text in changes.items():
                target.write_generated(path, text)
        else:
            self.edge_units(ctx)
            if upstream:
                front.install(ctx, front.render(ctx, upstream, routes), reload=True)
                front.certify(ctx, upstream, routes)
        return changes

    def routes(self, settings: Settings) -> tuple[Route, ...]:
        """A routed singleton (Dograh's UI) is reached on the worker host that runs it."""
        addresses = dict(settings.hosts)
        return tuple(Route(r.role.route, r.role.title,
                           f"{addresses[host]}:{r.role.route_port}")
                     for r in settings.routed
                     if (host := settings.singleton_host(r.role.name)))

    # -- steps -------------------------------------------------------------------------

    def check_options(self, ctx: Context, change: Change) -> None:
        if change.singletons is not None:
            self.refuse("--singletons", "is what an edge passes its worker hosts")
        if change.pools:
            self.refuse("--arq", "is each worker host's own: ARQ_WORKERS in its config")
        if change.stage:
            self.refuse("--stage", "is for one host: an edge stages its hosts itself")
        names = {name for name, _ in ctx.settings.hosts}
        for name in sorted(set(change.per_host) | change.gone):
            if name not in names:
                raise DograhError(f"{name} is not in DOGRAH_HOSTS")

    def begin(self, ctx: Context, change: Change) -> Survey:
        """A changing command's start: its options, the edge itself, every host's word,
        and what interrupted commands left on them finished."""
        self.check_options(ctx, change)
        self.prepare(ctx)
        survey = remote.survey(ctx)
        self.settle(ctx, survey)
        return survey

    def one_by_one(self, ctx: Context, survey: Survey, change: Change, args: list[str],
                   doing: str) -> None:
        """``dograhctl args`` on each host that runs something, one host after another:
        staged, switched to, finished; a host lost on the way holds up no other."""
        for host in list(survey.reports):
            if host in survey.reports and survey.reports[host].units:
                ctx.report(f"{host}: {doing}")
                self.change(ctx, survey, {host: args}, change.drain_timeout)
                trouble = survey.trouble.get(host)
                if trouble and trouble.answers:
                    # It answered but did not move (a refusal, a failure): the command
                    # fails, and the host, read again, keeps serving what it served.
                    survey.failed[host.name] = trouble.why
                    remote.ask(ctx, survey, host, command_lines.status(),
                               remote.STATUS_TIMEOUT)

    def prepare(self, ctx: Context) -> None:
        """Before the first change: nginx is sound, the site's certificate is ready, the SSH
        key is root's alone, and the edge's own units are in place."""
        ctx.nginx.test()
        front.prepare(ctx)
        remote.check_key(ctx)
        self.edge_units(ctx)

    def unit_files(self, ctx: Context) -> dict[Path, str]:
        rendered = templates.render_units(ctx.settings, ctx.facts, self.standing(ctx.settings))
        names = {paths.TARGET, *self.host_units}
        return {path: text for path, text in rendered.items() if path.name in names}

    def edge_units(self, ctx: Context) -> None:
        """The edge's own units: dograh.target and the timer that follows the hosts."""
        units.install(ctx.host, units.by_name(self.unit_files(ctx)))
        ctx.systemd.enable([paths.TARGET, *self.started_units])
        ctx.systemd.start_no_block([paths.TARGET, *self.started_units])

    def settle(self, ctx: Context, survey: Survey, background: bool = False) -> None:
        """Finish what each host's interrupted or staged operation left (in the
        background, for the timer: a drain may last minutes)."""
        pending = [host for host, report in survey.reports.items()
                   if report.operation and not report.operation.busy]
        if not pending:
            return
        for host in pending:
            op = survey.reports[host].operation
            assert op is not None
            ctx.report(f"{host}: finishing its {'staged' if op.staged else 'interrupted'} "
                       f"{op.verb}")
            if op.phase == "start":
                # Not READY yet: the host carries it to READY, then waits for the switch.
                remote.ask(ctx, survey, host, command_lines.resume(), START_TIMEOUT)
        self.switch_and_finish(ctx, survey, pending, background,
                               START_TIMEOUT * (1 if background else 10))

    def change(self, ctx: Context, survey: Survey, args: Mapping[Host, Sequence[str]],
               drain_timeout: float | None, background: bool = False) -> None:
        """Each host stages ``args``, then the edge switches to them and they finish. A
        host lost on the way is left out."""
        staged = remote.ask_each(ctx, survey, args, START_TIMEOUT)
        waiting = [host for host, report in staged.items()
                   if report.operation and report.operation.staged]
        if waiting:
            self.switch_and_finish(ctx, survey, waiting, background,
                                   START_TIMEOUT + (0 if background else drain_timeout or 0))

    def switch_and_finish(self, ctx: Context, survey: Survey, hosts: Collection[Host],
                          background: bool, timeout: float) -> None:
        """The edge sends to the READY workers the ``hosts`` staged (and every other host's
        ready ones), then each of them drains and stops its leaving workers."""
        self.switch_to(ctx, survey)
        remote.ask_each(ctx, survey, {host: command_lines.resume(switched=True,
                                                                 background=background)
                                      for host in hosts if host in survey.reports}, timeout)

    def switch_to(self, ctx: Context, survey: Survey) -> None:
        """The edge's nginx sends to exactly the answering hosts' ready workers, weighed by
        their live calls; the fleet record keeps the upstream."""
        ready = [(host, member) for host, report in survey.reports.items()
                 for member in report.members if member.ready]
        if not ready:
            raise DograhError("no worker host has a ready API worker to send to"
                              + "".join(f"; {host} {trouble.why}"
                                        for host, trouble in survey.trouble.items()))
        weights = balance.weights({(host.address, m.port): m.calls for host, m in ready})
        upstream = tuple(sorted((Member(host.address, m.port, weights[(host.address, m.port)])
                                 for host, m in ready), key=lambda m: (m.address, m.port)))
        if (front.apply(ctx, upstream, self.routes(ctx.settings))
                or recorded_upstream(ctx) != upstream):
            ctx.report("nginx upstream dograh_api: "
                       + " ".join(member.endpoint for member in upstream))
        ctx.store.save(Record(Fleet(upstream=upstream)))

    def place_singletons(self, ctx: Context, survey: Survey, gone: frozenset[str],
                         refuse: bool) -> dict[str, set[str]]:
        """The singletons each host should run. A start is refused (or, for the timer,
        put off) while a host that may run the singleton cannot be asked."""
        for name in gone:
            host = next(h for h in remote.hosts(ctx.settings) if h.name == name)
            if host in survey.reports:
                raise DograhError(f"{host} answers: it is not gone (--host-is-gone is for a "
                                  "host that is dead for good)")
            survey.trouble.pop(host, None)  # what it ran is the admin's word: gone
        found = placement.singletons(ctx.settings, survey.running(),
                                     [host.name for host in survey.trouble])
        if refuse and found.refused:
            raise DograhError(found.refused[0])
        for line in found.held:
            ctx.report(f"warning: {line}")
        return found.placed

    @staticmethod
    def named(survey: Survey, name: str) -> Host:
        return next(host for host in survey.reports if host.name == name)

    def answer(self, ctx: Context, survey: Survey, verb: str = "") -> Answer:
        upstream = recorded_upstream(ctx)
        hosts = "; ".join(f"{name}: {text}" for name, text in survey.done.items())
        failed = "".join(f"; {name} did not move ({why})" for name, why in survey.failed.items())
        left_out = "".join(f"; {name} is left out ({why})"
                           for name, why in survey.unreachable().items())
        text = (f"{verb}{len(upstream)} API workers behind the edge"
                + (f" ({hosts})" if hosts else "") + failed + left_out)
        data = {"upstream": [m.endpoint for m in upstream], "hosts": survey.done,
                "failed": survey.failed, "down": survey.unreachable()}
        return Answer(text, data, 1 if survey.failed else 0)


def recorded_upstream(ctx: Context) -> tuple[Member, ...]:
    record = ctx.store.load()
    return record.fleet.upstream if record else ()


def status_text(survey: Survey, upstream: tuple[Member, ...], mismatches: list[str],
                generations: list[str]) -> str:
    lines = []
    for host, report in survey.reports.items():
        lines.append(f"Host {host}:")
        lines += [f"  {unit.unit:40} {unit.active}/{unit.sub:9} {unit.status}"
                  for unit in report.units]
    lines += [f"Host {host}: DOWN ({trouble.why})" if not trouble.answers
              else f"Host {host}: UNHEALTHY ({trouble.why})"
              for host, trouble in survey.trouble.items()]
    lines.append("nginx upstream dograh_api: " + (" ".join(m.endpoint for m in upstream)
                                                   or "(none)"))
    lines += generations
    lines += ["Mismatches:", *(f"  {line}" for line in mismatches)] if mismatches \
        else ["No mismatches."]
    return "\n".join(lines)
