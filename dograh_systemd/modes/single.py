"""A single host: this host's nginx in front of its own workers.

The switch is this host's: nginx takes the nginx files the operation recorded
when it was planned. After a change the site gets its ACME certificate, and
while the upstream's weights are uneven a transient timer re-weighs them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .. import balance, command_lines, doctor, front, metrics, operation, paths, templates, units
from ..config import Settings
from ..context import Context
from ..operation import Outcome
from ..record import Fleet, Operation, Phase, nginx_files
from ..upstream import Member, Route, dial_address
from .local import LocalFleet, live_calls, recorded
from .mode import Answer

# While weights are uneven, the upstream is weighed again this many seconds later.
REBALANCE_AFTER = 60


class SingleHost(LocalFleet):

    def switch(self, ctx: Context, op: Operation, switched: bool) -> bool:
        if op.target.upstream:
            # An operation recorded by 0.2.0 kept no nginx files: they are rendered now.
            texts = nginx_files(op.nginx) or front.render(ctx, op.target.upstream,
                                                          self.routes(ctx.settings))
            if front.install(ctx, texts):
                ctx.report("nginx upstream dograh_api: " + operation.describe(op.target))
        return True

    def nginx_files(self, ctx: Context, fleet: Fleet) -> dict[Path, str]:
        return front.render(ctx, fleet.upstream, self.routes(ctx.settings)) \
            if fleet.upstream else {}

    def preflight(self, ctx: Context, op: Operation, force: bool) -> None:
        ctx.nginx.test()
        front.prepare(ctx)
        super().preflight(ctx, op, force)

    def prepare_site(self, ctx: Context) -> None:
        front.prepare(ctx)

    def site_files(self, ctx: Context, fleet: Fleet) -> dict[Path, str]:
        return front.render(ctx, fleet.upstream or first_upstream(ctx.settings),
                            self.routes(ctx.settings))

    def apply_site(self, ctx: Context, fleet: Fleet) -> None:
        if fleet.upstream:
            routes = self.routes(ctx.settings)
            # Reloaded even when no file of ours changed: the admin's snippets may have.
            front.install(ctx, front.render(ctx, fleet.upstream, routes), reload=True)
            front.certify(ctx, fleet.upstream, routes)

    def after(self, ctx: Context, outcome: Outcome) -> None:
        front.certify(ctx, outcome.operation.target.upstream, self.routes(ctx.settings))
        follow_up(ctx, outcome.operation.target)

    def metrics(self, ctx: Context) -> str:
        found = self.collect(ctx)
        return metrics.with_site(metrics.for_fleet(ctx, found), ctx,
                                 found.nginx_generations).text()

    def checks(self, ctx: Context) -> list[doctor.Check]:
        return super().checks(ctx) + doctor.for_site(ctx)

    def mismatches(self, ctx: Context) -> list[str]:
        fleet = recorded(ctx).fleet
        if not fleet.upstream:
            return []
        rendered = templates.render_nginx(ctx.settings, fleet.upstream, ctx.facts)
        if ctx.files.read(paths.NGINX_UPSTREAM) != rendered[paths.NGINX_UPSTREAM]:
            return [f"{paths.NGINX_UPSTREAM} differs from the fleet record; "
                    "dograhctl rebalance rewrites it"]
        return []

    def rebalance(self, ctx: Context) -> Answer:
        """Re-weigh the upstream from the workers' live calls; nginx reloads only on a change."""
        fleet = self.settled(ctx).fleet
        live = live_calls(ctx, fleet)
        weights = balance.weights({m.port: live.get(m.port, 0) for m in fleet.upstream})
        target = replace(fleet, upstream=tuple(replace(m, weight=weights[m.port])
                                               for m in fleet.upstream))
        if target != fleet:
            installed = units.installed(ctx.files, ctx.settings)
            operation.begin(ctx, self.steps(ctx.settings), self.with_nginx(ctx, Operation(
                verb="rebalance", started=ctx.clock.time(), phase=Phase.START, target=target,
                previous=fleet, units=installed, previous_units=installed)))
        follow_up(ctx, target)
        state = "even" if balance.is_even(weights) else "uneven"
        return Answer(f"{len(weights)} API workers, weights {state}")

    def routes(self, settings: Settings) -> tuple[Route, ...]:
        return tuple(Route(r.role.route, r.role.title, f"127.0.0.1:{r.role.route_port}")
                     for r in settings.routed)


def first_upstream(settings: Settings) -> tuple[Member, ...]:
    """What the first scale will put in nginx: the config's count, in the first band."""
    ports = list(settings.band_ports(0))[:settings.api_workers]
    return tuple(Member(dial_address(settings.host), port) for port in ports)


def follow_up(ctx: Context, fleet: Fleet) -> None:
    """While weights are uneven, re-weigh again later; stop once the fleet is even."""
    if balance.is_even(fleet.weights()):
        ctx.systemd.cancel_later(paths.REBALANCE_UNIT)
        return
    ctx.systemd.run_later(paths.REBALANCE_UNIT, REBALANCE_AFTER,
                          "Dograh: re-weigh the nginx upstream from live calls",
                          command_lines.here(ctx.settings.config_path,
                                             command_lines.rebalance()))
    ctx.report(f"weights are re-derived from live calls in {REBALANCE_AFTER}s, until even")

