"""An edge: a front door of a cluster's worker hosts, one command for all of them.

An edge runs the public nginx with one least_conn upstream over every ready API
worker of every worker host (one hop, balanced per worker). The cluster's state
is etcd's: each worker host's agent registers the host on its lease, and this
edge's agent renders the upstream from those registrations whenever one
changes (a host whose lease ends leaves it within the lease's TTL, one that
registers again joins it), then says which revision its nginx sends by (the
worker hosts wait for that before their old workers drain). No edge keeps state
the others lack; two edges render the same upstream.

The verbs here write what the worker hosts should run (desired/NAME: API
workers, a release, a restart) and follow their registrations until each has
carried it out: ``scale`` asks every host at once, ``restart``, ``deploy`` and
``rollback`` one host after another; ``release make`` pins one commit and every
host builds it.

The edge trusts nothing it did not derive itself: names and addresses come
from DOGRAH_HOSTS, and a registration is read through the strict wire schema;
one out of shape, or none (an ended lease), leaves that host out and holds up
no other. Singletons are no edge's business: the worker hosts elect them by
lease, where DOGRAH_SINGLETON_HOSTS lets them run.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import (
    balance,
    capacity,
    doctor,
    etcd,
    floating,
    front,
    metrics,
    nginx,
    paths,
    placement,
    releases,
    status,
    templates,
    units,
    wire,
)
from ..cluster import agent, members
from ..cluster import state as cluster_state
from ..cluster.edge import EdgeDuty
from ..cluster.keys import Keys
from ..cluster.state import Snapshot
from ..cluster.survey import Survey
from ..config import Settings
from ..context import Context
from ..errors import DograhError
from ..host import lock
from ..host.files import Files, unified_diff
from ..host.lock import Busy
from ..record import Fleet, Record
from ..roles import MAX_API_WORKERS
from ..upstream import Member, Route
from .mode import Answer, Change, Mode, ReleaseRequest

# How long a host may take to start new workers and say so, besides its drain.
START_TIMEOUT = 300
# How often the verbs look at the registrations while they follow a change.
FOLLOW_EVERY = 1.0


class Edge(Mode):
    host_units = (paths.AGENT_UNIT, *Mode.host_units)
    holds_lock = False

    # -- the verbs ---------------------------------------------------------------------

    def scale(self, ctx: Context, change: Change) -> Answer:
        """API workers spread over the registered hosts by their CPUs (a host given with
        --host gets its own count); every host at once."""
        if not members.joined(ctx):
            # A fresh install, before its cluster: the edge itself is ready for it.
            self.prepare(ctx)
            return Answer("this edge has joined no cluster yet; its own units are in place. "
                          "Create its etcd (dograhctl etcd create) or join it (dograhctl etcd "
                          "join FILE), then: dograhctl scale")
        view = self.begin(ctx, change)
        total = ctx.settings.api_workers if change.api_workers is None else change.api_workers
        counts = placement.spread(total, change.per_host,
                                  {host.name: report.cpus
                                   for host, report in view.survey.reports.items()})
        if not sum(counts.values()):
            raise DograhError("a layout of zero API workers is refused: nothing would answer "
                              "the site; nothing was asked of any host")
        self.place_singletons(view)
        asked = view.ask({name: {"api": count} for name, count in counts.items()}, change)
        return self.answer(view, self.follow(view, asked, change), "")

    def restart(self, ctx: Context, change: Change) -> Answer:
        """Every host onto the current code and settings, one after another."""
        view = self.begin(ctx, change)
        outcome: dict[str, str] = {}
        for host, report in list(view.survey.reports.items()):
            asked = view.ask({host.name: {"restart": report.restarted + 1}}, change)
            outcome.update(self.follow(view, asked, change))
        return self.answer(view, outcome, "restarted: ")

    def deploy(self, ctx: Context, change: Change, release: str | None) -> Answer:
        """Host by host onto the release every host has ready, dropping no call; when one
        host lacks it, none moves."""
        view = self.begin(ctx, change)
        if release == "":
            release = placement.newest_everywhere(view.survey.releases())
            if release is None:
                raise DograhError("no release is ready on every host; make one with: "
                                  "dograhctl release make")
        if release is not None:
            missing = placement.lacking(release, view.survey.releases(),
                                        view.survey.unreachable())
            if missing:
                raise DograhError(f"release {release} is not ready on {'; '.join(missing)}; "
                                  "no host moved")
        outcome: dict[str, str] = {}
        for host in list(view.survey.reports):
            asked = view.ask({host.name: {"release": release or ""}}, change)
            outcome.update(self.follow(view, asked, change))
        return self.answer(view, outcome, "deployed: ")

    def rollback(self, ctx: Context, change: Change) -> Answer:
        """Host by host back onto the release each ran before."""
        view = self.begin(ctx, change)
        outcome: dict[str, str] = {}
        for host, report in list(view.survey.reports.items()):
            if not report.previous_release:
                view.failed[host.name] = "it ran no other release before this one"
                continue
            asked = view.ask({host.name: {"release": report.previous_release,
                                          "unknown_migrations": change.unknown_migrations}},
                             change)
            outcome.update(self.follow(view, asked, change))
        return self.answer(view, outcome, "rolled back: ")

    def make_release(self, ctx: Context, request: ReleaseRequest) -> Answer:
        """The same release, under the same name and at one commit, made by every worker
        host; one host that cannot make it fails the command, before anything moves."""
        settings = ctx.settings
        source = request.source or settings.source
        if not source:
            raise DograhError("no source to make a release from: give one, or set "
                              "DOGRAH_SOURCE")
        view = self.view(ctx)
        release_id = request.id or releases.new_id(ctx)
        if release_id in view.snapshot.releases:
            raise DograhError(f"release {release_id} exists already")
        ref = settings.source_ref if request.ref is None else request.ref
        commit = releases.resolve(ctx, source, ref)
        layout = request.layout or settings.source_layout
        build = {"format": 1, "source": source, "ref": ref, "commit": commit,
                 "layout": layout, "app": releases.app_of(settings, layout, request.app)}
        view.client.put(view.keys.release(release_id), wire.write(wire.Build, build))
        ctx.report(f"release {release_id}" + (f" (commit {commit[:12]})" if commit else "")
                   + f": made by {', '.join(h.name for h in view.survey.reports)}")
        self.prune_releases(view)
        made = self.wait(view, lambda survey: {
            host.name: state for host, report in survey.reports.items()
            if (state := next((r.state for r in report.releases if r.id == release_id),
                              "missing")) in ("ready", "failed")},
            set(h.name for h in view.survey.reports), releases.BUILD_TIMEOUT + 120)
        missing = placement.lacking(release_id, view.survey.releases(),
                                    view.survey.unreachable())
        if missing or set(made.values()) != {"ready"}:
            raise DograhError(f"release {release_id} is not ready on "
                              f"{'; '.join(missing) or 'every host'}; nothing was deployed")
        return Answer(f"release {release_id} is ready on {len(made)} host(s)",
                      self.releases_data(view.survey))

    def releases(self, ctx: Context) -> Answer:
        survey = self.view(ctx).survey
        lines = []
        for host, report in survey.reports.items():
            lines.append(f"Host {host}: runs {report.release or 'its config app, in place'}")
            lines += [f"  {release.id:20} {release.state:8} {release.commit[:12]}"
                      for release in report.releases]
        lines += [f"Host {host}: {trouble.why}" for host, trouble in survey.trouble.items()]
        return Answer("\n".join(lines), self.releases_data(survey))

    @staticmethod
    def releases_data(survey: Survey) -> object:
        return {"hosts": {host.name: {"release": report.release,
                                      "releases": [r.dict() for r in report.releases]}
                          for host, report in survey.reports.items()},
                "down": survey.unreachable()}

    def resume(self, ctx: Context, switched: bool) -> Answer:
        """Nothing is left for an edge to finish (each host's agent finishes its own
        changes); the upstream is rendered from the registrations again."""
        view = self.view(ctx)
        self.prepare(ctx)
        with ctx.host.lock(ctx.report, lock.WAIT):
            done = self.switch_to(ctx, view.survey)
        return Answer(done or "nothing to finish: each host's agent finishes its own changes")

    def rebalance(self, ctx: Context) -> Answer:
        """The upstream from the registrations now, weighed again by their live calls."""
        view = self.view(ctx)
        self.prepare(ctx)
        with ctx.host.lock(ctx.report, lock.WAIT):
            done = self.switch_to(ctx, view.survey, reweigh=True)
        return Answer(done or f"{len(recorded_upstream(ctx))} API workers behind the edge, "
                      "weights as they were")

    def status(self, ctx: Context) -> Answer:
        """Every host's registration, the upstream, the singletons' holders, the edges,
        and where they disagree."""
        view = self.view(ctx)
        survey, snapshot = view.survey, view.snapshot
        mismatches = [f"{host.name} {trouble.why}" for host, trouble in survey.trouble.items()]
        for host, report in survey.reports.items():
            mismatches += [f"{host.name}: {line}" for line in report.mismatches]
            if report.failed:
                mismatches.append(f"{host.name}: {report.failed}")
        running = survey.running()
        leaders = {}
        for role in ctx.settings.enabled_singletons:
            where = [host for host, roles in running.items() if role in roles]
            holder = snapshot.holder(role)
            leaders[role] = {"holder": holder, "revision": snapshot.fencing_token(role),
                             "runs_on": where}
            if len(where) > 1:
                mismatches.append(f"{role} runs on {len(where)} hosts ({', '.join(where)}), "
                                  "not one")
            elif not where and not holder:
                mismatches.append(f"{role} runs nowhere: no host that may run it holds it "
                                  "(DOGRAH_SINGLETON_HOSTS)")
        upstream = recorded_upstream(ctx)
        ready = {(host.address, m.port) for host, report in survey.reports.items()
                 for m in report.members if m.ready}
        listed = {(m.address, m.port) for m in upstream}
        mismatches += [f"the upstream lists {a}:{p}, which is not ready"
                       for a, p in sorted(listed - ready)]
        mismatches += [f"{a}:{p} is ready but not in the upstream"
                       for a, p in sorted(ready - listed)]
        door = front_door(ctx.settings, snapshot)
        mismatches += door.pop("mismatches")
        generations = [asdict(g) for g in nginx.old_generations(ctx.host)]
        data = {"hosts": {host.name: report.dict() for host, report in survey.reports.items()},
                "down": survey.unreachable(), "edges": snapshot.live_edges(),
                "leaders": leaders, "upstream": [m.endpoint for m in upstream],
                "front": door, "mismatches": mismatches, "nginx_generations": generations}
        text = status_text(survey, snapshot, leaders, upstream, mismatches,
                           status.generations_text(ctx.settings, generations), door)
        return Answer(text, data, 1 if mismatches else 0)

    def metrics(self, ctx: Context) -> str:
        upstream = recorded_upstream(ctx)
        try:
            survey: Survey | None = self.view(ctx).survey
        except DograhError:
            survey = None  # etcd does not answer: the edge's own metrics still count
        out = metrics.for_edge(ctx, upstream, survey, capacity.measure_front(ctx))
        generations = [asdict(g) for g in nginx.old_generations(ctx.host)]
        return metrics.with_front(metrics.with_site(out, ctx, generations), ctx).text()

    def checks(self, ctx: Context) -> list[doctor.Check]:
        return [doctor.for_cluster(ctx), *doctor.for_site(ctx)]

    def render(self, ctx: Context, root: Path, dry_run: bool) -> dict[Path, str]:
        """The edge's own units and its site, with the upstream it recorded."""
        upstream = recorded_upstream(ctx)
        routes = self.routes(ctx.settings)
        if root == Path("/") and not dry_run:
            front.prepare(ctx)
        rendered = dict(self.unit_files(ctx))
        if ctx.settings.front_addresses:
            rendered.update(templates.render_keepalived(ctx.settings))
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
            self.floating_address(ctx)
        return changes

    def routes(self, settings: Settings, survey: Survey | None = None) -> tuple[Route, ...]:
        """A routed singleton (Dograh's UI) is reached on the worker host that runs it (as
        it registers, else the first that may)."""
        addresses = dict(settings.hosts)
        found = []
        for r in settings.routed:
            name = r.role.name
            running = [host.name for host, report in (survey.reports.items() if survey else ())
                       if name in report.singletons]
            where = running or list(settings.singleton_hosts_for(name))
            if where:
                found.append(Route(r.role.route, r.role.title,
                                   f"{addresses[where[0]]}:{r.role.route_port}"))
        return tuple(found)

    def duty(self, ctx: Context, refresh: Callable[[], Context]) -> tuple[etcd.Client, EdgeDuty]:
        client = members.client(ctx)
        return client, EdgeDuty(ctx, client, Keys(ctx.settings.cluster),
                                lambda snapshot: self.follow_registrations(refresh(), snapshot))

    # -- steps -------------------------------------------------------------------------

    def check_options(self, ctx: Context, change: Change) -> None:
        if change.pools:
            self.refuse("--arq", "is each worker host's own: ARQ_WORKERS in its config")
        if change.stage:
            self.refuse("--stage", "is for one host: a worker host stages its own changes")
        names = {name for name, _ in ctx.settings.hosts}
        for name in sorted(change.per_host):
            if name not in names:
                raise DograhError(f"{name} is not in DOGRAH_HOSTS")

    def view(self, ctx: Context) -> View:
        """The cluster as it stands: one snapshot of etcd, read through the roster."""
        return View(ctx, members.client(ctx), Keys(ctx.settings.cluster))

    def begin(self, ctx: Context, change: Change) -> View:
        """A changing command's start: its options, the edge itself, the cluster."""
        self.check_options(ctx, change)
        self.prepare(ctx)
        return self.view(ctx)

    def prepare(self, ctx: Context) -> None:
        """Before the first change: nginx is sound, the site's certificate is ready, and
        the edge's own units are in place."""
        with ctx.host.lock(ctx.report, lock.WAIT):
            ctx.nginx.test()
            front.prepare(ctx)
            self.edge_units(ctx)
            self.floating_address(ctx)

    def floating_address(self, ctx: Context) -> None:
        """keepalived for the floating address, as the config says."""
        done = floating.apply(ctx)
        if done:
            ctx.report(done)
            self.restart_agent(ctx)

    def standing(self, settings: Settings) -> templates.Standing:
        return templates.Standing(host_units=self.host_units, agent_watchdog=agent.WATCHDOG)

    def unit_files(self, ctx: Context) -> dict[Path, str]:
        rendered = templates.render_units(ctx.settings, ctx.facts, self.standing(ctx.settings))
        names = {paths.TARGET, *self.host_units}
        return {path: text for path, text in rendered.items() if path.name in names}

    def edge_units(self, ctx: Context) -> None:
        """The edge's own units: dograh.target, the agent and the metrics timer. An agent
        whose unit changed starts again on it (its sandbox is the unit's)."""
        changed = units.install(ctx.host, units.by_name(self.unit_files(ctx)))
        ctx.systemd.enable([paths.TARGET, *self.started_units])
        ctx.systemd.start_no_block([paths.TARGET, *self.started_units])
        if paths.AGENT_UNIT in changed:
            self.restart_agent(ctx)

    def restart_agent(self, ctx: Context) -> None:
        """The edge's agent on what it reads at its start (its unit, the floating
        address); nginx keeps its upstream meanwhile."""
        if ctx.systemd.is_active(paths.AGENT_UNIT):
            ctx.systemd.restart_no_block(paths.AGENT_UNIT)

    def place_singletons(self, view: View) -> None:
        """Where each singleton the config enables may run, for the worker hosts' agents:
        DOGRAH_SINGLETON_HOSTS, else every host in DOGRAH_HOSTS' order."""
        settings = view.ctx.settings
        hosts = {role: list(settings.singleton_hosts_for(role))
                 for role in settings.enabled_singletons}
        text = wire.write(wire.Placement, {"format": 1, "hosts": hosts})
        if view.snapshot.placement is None or view.snapshot.placement.value.decode() != text:
            view.client.put(view.keys.placement, text)
            view.ctx.report("singletons may run on: " + "; ".join(
                f"{role} {', '.join(names) or 'none'}" for role, names in hosts.items()))

    def prune_releases(self, view: View) -> None:
        """The releases every host makes: the newest DOGRAH_KEEP_RELEASES, the one just
        made among them (``view``'s snapshot, read before, lacks it)."""
        keep = view.ctx.settings.keep_releases
        for release_id in sorted(view.snapshot.releases)[:1 - keep or None]:
            view.client.delete(view.keys.release(release_id))

    def follow(self, view: View, asked: Mapping[str, int], change: Change) -> dict[str, str]:
        """Wait until every host ``asked`` has carried out its generation; what each did."""
        drain = change.drain_timeout if change.drain_given else None
        timeout = START_TIMEOUT + (view.ctx.settings.drain_timeout if drain is None
                                   else drain) + START_TIMEOUT
        done = self.wait(view, lambda survey: {
            host.name: report.failed or "done" for host, report in survey.reports.items()
            if host.name in asked and report.generation >= asked[host.name]
            and report.operation is None}, set(asked), timeout)
        for name, outcome in done.items():
            if outcome != "done":
                view.failed[name] = outcome
        return {name: outcome for name, outcome in done.items() if outcome == "done"}

    def wait(self, view: View, finished: Callable[[Survey], dict[str, str]], hosts: set[str],
             timeout: float) -> dict[str, str]:
        """Follow the registrations until each of ``hosts`` is ``finished`` (or left out:
        its lease ended); each one's outcome."""
        ctx = view.ctx
        deadline = ctx.clock.monotonic() + timeout
        said: dict[str, str] = {}
        while True:
            view.refresh()
            outcome = {name: text for name, text in finished(view.survey).items()
                       if name in hosts}
            gone = {name for name in hosts if name in view.survey.unreachable()}
            for host, report in view.survey.reports.items():
                op = report.operation
                doing = f"{op.verb} at its {op.phase} phase" if op else ""
                if host.name in hosts and doing and said.get(host.name) != doing:
                    ctx.report(f"{host}: {doing}")
                    said[host.name] = doing
            if set(outcome) | gone >= hosts:
                return outcome
            if ctx.clock.monotonic() >= deadline:
                raise DograhError(f"{', '.join(sorted(hosts - set(outcome) - gone))} did not "
                                  f"finish within {timeout:.0f}s; they go on by themselves "
                                  "(follow them with: dograhctl status)")
            ctx.clock.sleep(FOLLOW_EVERY)

    def follow_registrations(self, ctx: Context, snapshot: Snapshot) -> str:
        """The agent's turn: the upstream from ``snapshot``'s registrations."""
        try:
            with ctx.host.lock(ctx.report, 0):
                return self.switch_to(ctx, Survey.of(ctx.settings, snapshot))
        except Busy:
            raise DograhError("another dograhctl is at work here; the next cycle tries "
                              "again") from None

    def switch_to(self, ctx: Context, survey: Survey, reweigh: bool = False) -> str:
        """nginx sends to exactly the registered hosts' ready workers, weighed by their
        live calls when the members change (or ``reweigh``); what changed, if anything.
        With no ready worker anywhere, the upstream stays as it was."""
        ready = [(host, member) for host, report in survey.reports.items()
                 for member in report.members if member.ready]
        if not ready:
            raise DograhError("no worker host has a ready API worker to send to"
                              + "".join(f"; {host} {trouble.why}"
                                        for host, trouble in survey.trouble.items()))
        recorded = recorded_upstream(ctx)
        same = {(m.address, m.port) for m in recorded} == {(h.address, m.port)
                                                            for h, m in ready}
        if same and not reweigh:
            upstream = recorded  # the weights stay: nginx keeps its own, exact counts
        else:
            weights = balance.weights({(host.address, m.port): m.calls for host, m in ready})
            upstream = tuple(sorted((Member(host.address, m.port,
                                            weights[(host.address, m.port)])
                                     for host, m in ready), key=lambda m: (m.address, m.port)))
        changed = front.apply(ctx, upstream, self.routes(ctx.settings, survey))
        if upstream != recorded:
            ctx.store.save(Record(Fleet(upstream=upstream)))
        return "nginx upstream dograh_api: " + " ".join(m.endpoint for m in upstream) \
            if changed or upstream != recorded else ""

    def answer(self, view: View, done: Mapping[str, str], verb: str) -> Answer:
        upstream = recorded_upstream(view.ctx)
        failed = "".join(f"; {name} did not move ({why})" for name, why in view.failed.items())
        left_out = "".join(f"; {name} is left out ({why})"
                           for name, why in view.survey.unreachable().items())
        text = (f"{verb}{len(upstream)} API workers behind the edge"
                + (f" ({', '.join(sorted(done))} carried it out)" if done else "")
                + failed + left_out)
        data = {"upstream": [m.endpoint for m in upstream], "done": sorted(done),
                "failed": view.failed, "down": view.survey.unreachable()}
        return Answer(text, data, 1 if view.failed else 0)


class View:
    """One edge command's view of its cluster: a client, the latest snapshot read
    through the roster, and the hosts that failed what they were asked."""

    def __init__(self, ctx: Context, client: etcd.Client, keys: Keys) -> None:
        self.ctx = ctx
        self.client = client
        self.keys = keys
        self.failed: dict[str, str] = {}
        self.refresh()

    def refresh(self) -> None:
        try:
            self.snapshot = cluster_state.read(self.client, self.keys)
        except etcd.Unavailable as exc:
            raise DograhError(f"the cluster's etcd does not answer ({exc}); nothing was "
                              "changed") from None
        self.survey = Survey.of(self.ctx.settings, self.snapshot)

    def ask(self, changes: Mapping[str, Mapping[str, Any]], change: Change) -> dict[str, int]:
        """Each host's desired state, ``changes`` on top of what it was asked before, one
        generation on; the generation each host must reach."""
        asked = {}
        for name, fields in changes.items():
            kv = self.snapshot.desired.get(name)
            before = self.snapshot.desired_for(name)
            desired = before.dict() if before else {
                "format": 1, "generation": 0, "api": 0, "release": None,
                "unknown_migrations": False, "restart": 0}
            desired.update(fields)
            desired["generation"] += 1
            desired["drain"] = {"timeout": int(change.drain_timeout) if change.drain_given
                                and change.drain_timeout is not None else None,
                                "stop_at_once": change.drain_given
                                and change.drain_timeout is None}
            if desired["api"] > MAX_API_WORKERS:
                raise DograhError(f"{name}: {desired['api']} API workers is more than "
                                  f"{MAX_API_WORKERS}")
            text = wire.write(wire.Desired, desired)
            try:
                written = self.client.replace(self.keys.desired(name), text,
                                              kv.mod_revision if kv else 0)
            except etcd.Unavailable as exc:
                raise DograhError(f"the cluster's etcd does not answer ({exc})") from None
            if not written:
                raise DograhError(f"another edge changed what {name} is asked meanwhile; "
                                  "run the command again")
            asked[name] = desired["generation"]
        self.refresh()
        return asked


def recorded_upstream(ctx: Context) -> tuple[Member, ...]:
    record = ctx.store.load()
    return record.fleet.upstream if record else ()


def front_door(settings: Settings, snapshot: Snapshot) -> dict[str, Any]:
    """Which live edge holds the floating address, since when, which stand by, and what
    is wrong with that (nobody, or a split: more than one)."""
    if not settings.front_addresses:
        return {"mismatches": []}
    edges = snapshot.front()
    holders = {name: edge.since for name, edge in edges.items() if edge.holds}
    addresses = " ".join(settings.front_addresses)
    mismatches = []
    if not holders:
        mismatches.append(f"no live edge holds the floating address {addresses} (see: "
                          "journalctl -u keepalived on each edge)")
    elif len(holders) > 1:
        mismatches.append(f"{' and '.join(holders)} all hold {addresses}: a split (VRRP "
                          "between them is cut; calls go on through each, see README)")
    return {"addresses": list(settings.front_addresses), "held_by": holders,
            "standing_by": sorted(set(edges) - set(holders)), "mismatches": mismatches}


def status_text(survey: Survey, snapshot: Snapshot, leaders: Mapping[str, Any],
                upstream: tuple[Member, ...], mismatches: list[str],
                generations: list[str], door: Mapping[str, Any]) -> str:
    lines = []
    for host, report in survey.reports.items():
        lines.append(f"Host {host}:" + (f" runs release {report.release}"
                                        if report.release else ""))
        lines += [f"  {unit.unit:40} {unit.active}/{unit.sub:9} {unit.status}"
                  for unit in report.units]
    lines += [f"Host {host}: DOWN ({trouble.why})" if not trouble.answers
              else f"Host {host}: UNHEALTHY ({trouble.why})"
              for host, trouble in survey.trouble.items()]
    for role, leader in leaders.items():
        holder = leader["holder"] or "nobody"
        lines.append(f"Singleton {role}: held by {holder} (revision {leader['revision']})")
    lines.append("Edges alive: " + (", ".join(snapshot.live_edges()) or "none"))
    if door.get("addresses"):
        held = ", ".join(f"{name} since {_utc(since)}" for name, since in door["held_by"].items())
        lines.append(f"Floating address {' '.join(door['addresses'])}: held by "
                     f"{held or 'nobody'}" + (f"; {', '.join(door['standing_by'])} "
                                              "standing by" if door["standing_by"] else ""))
    lines.append("nginx upstream dograh_api: " + (" ".join(m.endpoint for m in upstream)
                                                   or "(none)"))
    lines += generations
    lines += ["Mismatches:", *(f"  {line}" for line in mismatches)] if mismatches \
        else ["No mismatches."]
    return "\n".join(lines)


def _utc(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
