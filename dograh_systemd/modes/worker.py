"""A worker host: API workers on this host's own address, behind its edge's nginx.

The switch is the edge's: every change here stops once the new workers are
READY (staged), and only the edge, having sent its traffic to them, lets the
old ones drain and stop (``resume --switched``). So no worker is stopped while
the edge may still route to it, whoever started the change: the edge, the
admin here, or the package's upgrade. The edge's dograh-cluster.timer
finishes a change staged here within 15 s.

Every answer the edge reads is a wire.HostReport; the firewall lets the edge
alone reach the worker ports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import __version__, firewall, paths, releases, templates, wire
from ..config import Settings
from ..context import Context
from ..errors import DograhError
from ..operation import Outcome
from ..record import Fleet, Operation, Phase
from ..status import FleetStatus
from .local import LocalFleet, recorded, summary
from .mode import Answer, Change


class WorkerHost(LocalFleet):
    host_units = (paths.FIREWALL_UNIT, *LocalFleet.host_units)
    # Its edge spreads the API workers: a worker host may run none.
    api_min = 0

    def switch(self, ctx: Context, op: Operation, switched: bool) -> bool:
        return switched

    def waiting(self, op: Operation) -> str:
        return (f"a staged {op.verb} waits for the edge to send to this host's new workers; "
                "the edge's dograh-cluster.timer finishes it within 15 s (or run on the "
                "edge: dograhctl rebalance)")

    def singletons(self, ctx: Context, fleet: Fleet, change: Change) -> frozenset[str] | None:
        """Where the edge placed them; until it says, the ones that run here now."""
        if change.singletons is not None:
            return change.singletons
        return frozenset(role for role in ctx.settings.singletons if fleet.of(role))

    def standing(self, settings: Settings) -> templates.Standing:
        # Its processes start only once its firewall lets the edge alone in; a routed
        # singleton listens where the edge reaches it; nginx connects from the edge.
        assert settings.edge is not None  # what makes this host a worker host
        return templates.Standing(host_units=self.host_units, firewall=paths.FIREWALL_UNIT,
                                  route_host=settings.host, trusted_proxy=settings.edge)

    def preflight(self, ctx: Context, op: Operation, force: bool) -> None:
        firewall.apply(ctx, self.standing(ctx.settings),
                       {*op.previous.api_ports(), *op.target.api_ports()})
        super().preflight(ctx, op, force)

    def site_files(self, ctx: Context, fleet: Fleet) -> dict[Path, str]:
        return templates.render_firewall(ctx.settings, self.standing(ctx.settings),
                                         fleet.api_ports())

    def apply_site(self, ctx: Context, fleet: Fleet) -> None:
        firewall.apply(ctx, self.standing(ctx.settings), fleet.api_ports())
        self.drop_site(ctx)

    def after(self, ctx: Context, outcome: Outcome) -> None:
        firewall.apply(ctx, self.standing(ctx.settings), outcome.operation.target.api_ports())
        self.drop_site(ctx)

    @staticmethod
    def drop_site(ctx: Context) -> None:
        """A host that served its own site before it joined an edge serves none now."""
        if ctx.files.is_generated(paths.NGINX_SITE):
            warning = ctx.nginx.remove_site()
            if warning:
                ctx.report(warning)

    def mismatches(self, ctx: Context) -> list[str]:
        if not ctx.host.machine.is_root() or firewall.in_place(ctx):
            return []
        return ["the firewall's nftables table inet dograh is missing: the worker ports are "
                f"open to the network; put it back with: systemctl restart {paths.FIREWALL_UNIT}"]

    def rebalance(self, ctx: Context) -> Answer:
        raise DograhError("a worker host has no nginx upstream: its edge weighs it "
                          "(dograhctl rebalance there)")

    # -- what the edge reads ----------------------------------------------------------

    def status_data(self, ctx: Context, found: FleetStatus) -> object:
        return self.report(ctx, found, None)

    def report_data(self, ctx: Context, outcome: Outcome | None) -> object:
        return self.report(ctx, self.collect(ctx), outcome)

    def releases_data(self, ctx: Context) -> object:
        return self.report(ctx, self.collect(ctx), None)

    def report(self, ctx: Context, found: FleetStatus, outcome: Outcome | None
               ) -> dict[str, Any]:
        """This host as its edge sees it: wire.HostReport."""
        record = recorded(ctx)
        op = record.operation
        # Where the edge should send: the new workers once they are READY.
        serving = op.target if op and op.phase is not Phase.START else record.fleet
        api = ctx.settings.api.role
        members = []
        for member in serving.upstream:
            item = found.instance(api.name, api.instance(member.port))
            members.append({"port": member.port, "ready": bool(item and item.ready),
                            "calls": (item.calls or 0) if item else 0})
        singletons = [role for role in ctx.settings.singletons
                      if any(item.active in ("active", "activating", "deactivating",
                                              "reloading") for item in found.roles[role])]
        report = {
            "format": wire.FORMAT, "version": __version__,
            "cpus": ctx.host.machine.cpus(),
            "bases": sorted({ctx.settings.base_port, serving.base_port} - {0}),
            "members": members, "singletons": singletons,
            "units": [{"unit": item.unit, "role": role, "active": item.active,
                       "sub": item.sub, "status": item.status[:300]}
                      for role, items in found.roles.items() for item in items],
            "operation": {"verb": op.verb, "phase": op.phase.value, "staged": op.staged,
                          "busy": ctx.host.lock_holder() is not None} if op else None,
            "mismatches": [line[:500] for line in found.mismatches],
            "summary": None, "cut": None, "release": serving.release,
            "releases": [{"id": r.id, "state": r.state} for r in releases.listing(ctx)]}
        if outcome is not None:
            report["summary"] = summary(ctx.settings, outcome)
            report["cut"] = {"calls": outcome.cut.calls,
                             "uncounted": list(outcome.cut.uncounted)}
        return report
