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

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import (
    balance,
    front,
    metrics,
    nginx,
    paths,
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
from ..record import Fleet, Operation, Record
from ..remote import Host
from ..roles import Kind
from ..upstream import Member, Route
from ..wire import HostReport, Trouble
from . import Answer, Change, Mode, ReleaseRequest

STATUS_TIMEOUT = 30
START_TIMEOUT = 300


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

    def running(self, role: str) -> list[Host]:
        return [host for host, report in self.reports.items() if role in report.singletons]


class Edge(Mode):
    host_units = (paths.CLUSTER_UNIT, paths.CLUSTER_TIMER, *Mode.host_units)
    runs_workers = False

    # -- the verbs ---------------------------------------------------------------------

    def scale(self, ctx: Context, change: Change) -> Answer:
        """Spread the API workers over the hosts that answer, by their CPUs (a host given
        with --host gets its own count), and the singletons where they belong."""
        settings = ctx.settings
        survey = self.begin(ctx, change)
        total = settings.api_workers if change.api_workers is None else change.api_workers
        counts = spread(total, change.per_host, survey.reports)
        placed = self.placement(ctx, survey, change.gone, refuse=True)
        drain = drain_args(change.drain_timeout)
        # A singleton that moves stops where it ran before any host starts it.
        for host, report in list(survey.reports.items()):
            moving = sorted(set(report.singletons) - placed[host.name])
            if moving:
                ctx.report(f"{host}: stopping {', '.join(moving)} before another host starts it")
                self.change(ctx, survey, {host: keep_args(host, report, placed, drain)},
                            change.drain_timeout)
        self.confirm_stopped(survey, placed)
        self.change(ctx, survey, {host: ["scale", str(counts[host.name]), "--singletons",
                                         ",".join(sorted(placed[host.name])), *drain]
                                  for host in list(survey.reports)}, change.drain_timeout)
        front.certify(ctx, recorded_upstream(ctx))
        return self.answer(ctx, survey)

    def restart(self, ctx: Context, change: Change) -> Answer:
        """Every host onto the current code, one after another, dropping no call."""
        survey = self.begin(ctx, change)
        self.one_by_one(ctx, survey, change, ["restart"], "deploying")
        front.certify(ctx, recorded_upstream(ctx))
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
        survey = self.survey(ctx)
        release_id = request.id or releases.new_id(ctx)
        ref = settings.source_ref if request.ref is None else request.ref
        args = ["release", "make", source, "--ref", ref, "--id", release_id,
                "--layout", request.layout or settings.source_layout,
                *(["--app", request.app] if request.app else [])]
        ctx.report(f"making release {release_id} on {', '.join(h.name for h in survey.reports)}")
        self.each(ctx, survey, {host: args for host in survey.reports},
                  releases.BUILD_TIMEOUT + 120)
        missing = self.lacking(survey, release_id)
        if missing:
            raise DograhError(f"release {release_id} is not ready on {'; '.join(missing)}; "
                              "nothing was deployed")
        return Answer(f"release {release_id} is ready on {len(survey.reports)} host(s)",
                      self.releases_data(survey))

    def releases(self, ctx: Context) -> Answer:
        survey = self.survey(ctx)
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
            common = set.intersection(*({r.id for r in report.releases if r.state == "ready"}
                                        for report in survey.reports.values())) \
                if survey.reports else set()
            if not common:
                raise DograhError("no release is ready on every host; make one with: "
                                  "dograhctl release make")
            release = max(common)
        if release is not None:
            missing = self.lacking(survey, release)
            if missing:
                raise DograhError(f"release {release} is not ready on {'; '.join(missing)}; "
                                  "no host moved")
        self.one_by_one(ctx, survey, change, ["deploy", release or "--in-place"],
                        f"deploying {release or 'its config app, in place'}")
        return self.answer(ctx, survey, "deployed: ")

    def rollback(self, ctx: Context, change: Change) -> Answer:
        """Host by host back onto the release each ran before."""
        survey = self.begin(ctx, change)
        self.one_by_one(ctx, survey, change,
                        ["rollback", *(["--force"] if change.unknown_migrations else [])],
                        "rolling back")
        return self.answer(ctx, survey, "rolled back: ")

    @staticmethod
    def lacking(survey: Survey, release: str) -> list[str]:
        """The hosts that do not have ``release`` ready, and why."""
        missing = [f"{host.name} ({trouble.why})" for host, trouble in survey.trouble.items()]
        missing += [f"{host.name} (it is {state})" for host, report in survey.reports.items()
                    if (state := next((r.state for r in report.releases if r.id == release),
                                      "missing")) != "ready"]
        return missing

    @staticmethod
    def releases_data(survey: Survey) -> object:
        return {"hosts": {host.name: {"release": report.release,
                                      "releases": [r.dict() for r in report.releases]}
                          for host, report in survey.reports.items()},
                "down": {host.name: trouble.why for host, trouble in survey.trouble.items()}}

    def resume(self, ctx: Context, switched: bool) -> Answer:
        """Finish what interrupted commands left on the hosts."""
        survey = self.survey(ctx)
        self.settle(ctx, survey)
        return self.answer(ctx, survey)

    def rebalance(self, ctx: Context) -> Answer:
        """The upstream from the hosts that answer now, weighed by their live calls; what a
        host staged on its own is finished, and singletons go where they belong."""
        self.edge_units(ctx)
        survey = self.survey(ctx)
        self.settle(ctx, survey, background=True)
        placed = self.placement(ctx, survey, frozenset(), refuse=False)
        for host, report in list(survey.reports.items()):
            if set(report.singletons) != placed[host.name]:
                ctx.report(f"{host}: singletons {', '.join(sorted(placed[host.name])) or 'none'}"
                           f" (were {', '.join(sorted(report.singletons)) or 'none'})")
                drain = drain_args(ctx.settings.drain_timeout)
                self.change(ctx, survey, {host: keep_args(host, report, placed, drain)},
                            ctx.settings.drain_timeout, background=True)
        self.switch_to(ctx, survey)
        return self.answer(ctx, survey)

    def status(self, ctx: Context) -> Answer:
        """Every host's report, the edge's upstream, and where they disagree."""
        survey = self.survey(ctx)
        mismatches = [f"{host.name} {trouble.why}" for host, trouble in survey.trouble.items()]
        for host, report in survey.reports.items():
            mismatches += [f"{host.name}: {line}" for line in report.mismatches]
        for role in enabled_singletons(ctx.settings):
            where = [host.name for host in survey.running(role)]
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
                "down": {host.name: trouble.why for host, trouble in survey.trouble.items()},
                "upstream": [m.endpoint for m in upstream], "mismatches": mismatches,
                "nginx_generations": generations}
        text = status_text(survey, upstream, mismatches,
                           status.generations_text(ctx.settings, generations))
        return Answer(text, data, 1 if mismatches else 0)

    def metrics(self, ctx: Context) -> str:
        return metrics.for_edge(ctx, recorded_upstream(ctx), self.survey(ctx))

    def render(self, ctx: Context, root: Path, dry_run: bool) -> dict[Path, str]:
        """The edge's own units and its site, with the upstream it recorded."""
        upstream = recorded_upstream(ctx)
        if root == Path("/") and not dry_run:
            front.prepare(ctx)
        rendered = {path: text for path, text in self.unit_files(ctx).items()}
        if upstream:
            rendered.update(front.render(ctx, upstream))
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
                front.install(ctx, front.render(ctx, upstream), reload=True)
                front.certify(ctx, upstream)
        return changes

    def switch(self, ctx: Context, op: Operation, switched: bool) -> bool:
        raise DograhError("an edge runs no fleet of its own to switch")

    def routes(self, settings: Settings) -> tuple[Route, ...]:
        """A routed singleton (Dograh's UI) is reached on the worker host that runs it."""
        addresses = dict(settings.hosts)
        return tuple(Route(r.role.route, r.role.title,
                           f"{addresses[host]}:{r.role.route_port}")
                     for name, r in settings.roles.items()
                     if r.role.route and r.count and (host := settings.singleton_host(name)))

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
        survey = self.survey(ctx)
        self.settle(ctx, survey)
        return survey

    def one_by_one(self, ctx: Context, survey: Survey, change: Change, args: list[str],
                   doing: str) -> None:
        """``dograhctl args`` on each host that runs something, one host after another:
        staged, switched to, finished; a host lost on the way holds up no other."""
        for host in list(survey.reports):
            if host in survey.reports and survey.reports[host].units:
                ctx.report(f"{host}: {doing}")
                self.change(ctx, survey, {host: [*args, *drain_args(change.drain_timeout)]},
                            change.drain_timeout)
                trouble = survey.trouble.get(host)
                if trouble and trouble.answers:
                    # It answered but did not move (a refusal, a failure): the command
                    # fails, and the host, read again, keeps serving what it served.
                    survey.failed[host.name] = trouble.why
                    self.call(ctx, survey, host, ["status"], STATUS_TIMEOUT)

    def prepare(self, ctx: Context) -> None:
        """Before the first change: nginx is sound, the site's certificate is ready, the SSH
        key is root's alone, and the edge's own units are in place."""
        ctx.nginx.test()
        front.prepare(ctx)
        remote.check_key(ctx)
        self.edge_units(ctx)

    def unit_files(self, ctx: Context) -> dict[Path, str]:
        rendered = templates.render_units(ctx.settings, ctx.facts, self.host_units)
        names = {paths.TARGET, *self.host_units}
        return {path: text for path, text in rendered.items() if path.name in names}

    def edge_units(self, ctx: Context) -> None:
        """The edge's own units: dograh.target and the timer that follows the hosts."""
        units.install(ctx.host, units.by_name(self.unit_files(ctx)))
        ctx.systemd.enable([paths.TARGET, *self.started_units])
        ctx.systemd.start_no_block([paths.TARGET, *self.started_units])

    def survey(self, ctx: Context) -> Survey:
        """Every host's report, all at once."""
        survey = Survey()
        answers = remote.each(remote.hosts(ctx.settings), lambda host: remote.call(
            ctx, host, ["status"], STATUS_TIMEOUT))
        for host, answer in answers.items():
            if survey.take(host, answer) is None:
                ctx.report(f"warning: {host} {answer.why}; it is left out")  # type: ignore[union-attr]
        return survey

    def settle(self, ctx: Context, survey: Survey, background: bool = False) -> None:
        """Finish what each host's interrupted or staged operation left: the edge sends
        to its READY workers first, then the host drains and stops the old ones (in
        the background, for the timer: a drain may last minutes)."""
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
                self.call(ctx, survey, host, ["resume"], START_TIMEOUT)
        self.switch_to(ctx, survey)
        self.each(ctx, survey, {host: ["resume", "--switched",
                                       *(["--background"] if background else [])]
                                for host in pending if host in survey.reports},
                  START_TIMEOUT * (1 if background else 10))

    def change(self, ctx: Context, survey: Survey, args: Mapping[Host, list[str]],
               drain_timeout: float | None, background: bool = False) -> None:
        """Each host stages ``args``; the edge sends to the staged workers; each host
        finishes (drains, stops; in the background, for the timer). A host lost on
        the way is left out."""
        staged = self.each(ctx, survey, args, START_TIMEOUT)
        waiting = [host for host, report in staged.items()
                   if report.operation and report.operation.staged]
        if not waiting:
            return
        self.switch_to(ctx, survey)
        self.each(ctx, survey, {host: ["resume", "--switched",
                                       *(["--background"] if background else [])]
                                for host in waiting},
                  START_TIMEOUT + (0 if background else drain_timeout or 0))

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
        if front.apply(ctx, upstream) or recorded_upstream(ctx) != upstream:
            ctx.report("nginx upstream dograh_api: "
                       + " ".join(member.endpoint for member in upstream))
        ctx.store.save(Record(Fleet(upstream=upstream)))

    def placement(self, ctx: Context, survey: Survey, gone: frozenset[str],
                  refuse: bool) -> dict[str, set[str]]:
        """The singletons each host should run. A start is refused (or, for the timer,
        put off) while a host that may run the singleton cannot be asked."""
        settings = ctx.settings
        for name in gone:
            host = next(h for h in remote.hosts(settings) if h.name == name)
            if host in survey.reports:
                raise DograhError(f"{host} answers: it is not gone (--host-is-gone is for a "
                                  "host that is dead for good)")
            survey.trouble.pop(host, None)  # what it ran is the admin's word: gone
        placed: dict[str, set[str]] = {host.name: set() for host in remote.hosts(settings)}
        for role in enabled_singletons(settings):
            host = settings.singleton_host(role)
            assert host is not None  # an edge has hosts
            where = next((h for h in survey.reports if h.name == host), None)
            if where is None:
                ctx.report(f"warning: {role} belongs on {host}, which is left out: it runs "
                           "nowhere until that host answers again")
                continue
            # A start is safe only while every host that could run it answered.
            if role not in survey.reports[where].singletons and survey.trouble:
                unknown = next(iter(survey.trouble))
                message = (f"{role} would start on {host}, but {unknown.name} does not answer "
                           "and may still run it (two must never run); bring it back, or if "
                           f"it is dead for good: --host-is-gone {unknown.name}")
                if refuse:
                    raise DograhError(message)
                ctx.report(f"warning: {message}")
                continue
            placed[host].add(role)
        return placed

    @staticmethod
    def confirm_stopped(survey: Survey, placed: Mapping[str, set[str]]) -> None:
        """Every host that answered runs no singleton it must not run any more."""
        for host, report in survey.reports.items():
            extra = set(report.singletons) - placed[host.name]
            if extra:
                raise DograhError(f"{host} still runs {', '.join(sorted(extra))}; nothing was "
                                  "started elsewhere")

    def call(self, ctx: Context, survey: Survey, host: Host, args: list[str],
             timeout: float) -> HostReport | None:
        answer = survey.take(host, remote.call(ctx, host, args, timeout))
        if answer is None:
            ctx.report(f"warning: {host} {survey.trouble[host].why}; it is left out")
        return answer

    def each(self, ctx: Context, survey: Survey, args: Mapping[Host, list[str]],
             timeout: float) -> dict[Host, HostReport]:
        """``dograhctl args[host]`` on every host at once; the hosts that answered."""
        answers = remote.each(args, lambda host: remote.call(ctx, host, args[host], timeout))
        done = {}
        for host, answer in answers.items():
            report = survey.take(host, answer)
            if report is None:
                ctx.report(f"warning: {host} {survey.trouble[host].why}; it is left out")
            else:
                done[host] = report
        return done

    def answer(self, ctx: Context, survey: Survey, verb: str = "") -> Answer:
        upstream = recorded_upstream(ctx)
        hosts = "; ".join(f"{name}: {text}" for name, text in survey.done.items())
        failed = "".join(f"; {name} did not move ({why})" for name, why in survey.failed.items())
        left_out = "".join(f"; {host.name} is left out ({trouble.why})"
                           for host, trouble in survey.trouble.items())
        text = (f"{verb}{len(upstream)} API workers behind the edge"
                + (f" ({hosts})" if hosts else "") + failed + left_out)
        data = {"upstream": [m.endpoint for m in upstream], "hosts": survey.done,
                "failed": survey.failed,
                "down": {host.name: trouble.why for host, trouble in survey.trouble.items()}}
        return Answer(text, data, 1 if survey.failed else 0)


def keep_args(host: Host, report: HostReport, placed: Mapping[str, set[str]],
              drain: list[str]) -> list[str]:
    """A host's own size, with the singletons placed on it."""
    return ["scale", str(len(report.members)), "--singletons",
            ",".join(sorted(placed[host.name])), *drain]


def drain_args(drain_timeout: float | None) -> list[str]:
    return ["--no-drain"] if drain_timeout is None else [f"--drain-timeout={drain_timeout:.0f}"]


def enabled_singletons(settings: Settings) -> list[str]:
    return [name for name, r in settings.roles.items()
            if r.role.kind is Kind.SINGLETON and r.count]


def recorded_upstream(ctx: Context) -> tuple[Member, ...]:
    record = ctx.store.load()
    return record.fleet.upstream if record else ()


def spread(total: int, explicit: Mapping[str, int],
           alive: Mapping[Host, HostReport]) -> dict[str, int]:
    """API workers per host: as given, the rest in proportion to each host's CPUs."""
    unknown = set(explicit) - {host.name for host in alive}
    if unknown:
        raise DograhError(f"no answering host named {', '.join(sorted(unknown))}")
    counts = dict(explicit)
    free = [host for host in alive if host.name not in explicit]
    left = max(0, total - sum(explicit.values())) if free else 0
    cpus = {host.name: alive[host].cpus for host in free}
    shares = {name: left * n / max(1, sum(cpus.values())) for name, n in cpus.items()}
    counts.update({name: int(share) for name, share in shares.items()})
    for name in sorted(shares, key=lambda n: shares[n] - int(shares[n]), reverse=True):
        if sum(counts[n] for n in shares) >= left:
            break
        counts[name] += 1
    return counts


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

