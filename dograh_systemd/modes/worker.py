"""A worker host: API workers on this host's own address, behind its cluster's edges.

The switch is the edges': every change here stops once the new workers are
READY (staged), and only once every live edge's nginx sends to them do the old
ones drain and stop (``resume --switched``, which this host's agent runs). So no
worker is stopped while an edge may still route to it, whoever started the
change: the edges (through the desired state the agent carries out), the admin
here, or the package's upgrade.

This host's agent (dograh-agent.service, cluster/worker.py) registers it in
etcd, runs the singletons it holds by lease (they are the agent's, not the
fleet's), and carries out what the edges ask; the firewall lets the edges alone
reach the worker ports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__, doctor, etcd, firewall, paths, releases, templates, wire
from ..cluster import agent, members
from ..cluster.keys import Keys
from ..cluster.worker import WorkerDuty
from ..config import Settings
from ..context import Context
from ..errors import DograhError
from ..operation import Outcome
from ..record import Fleet, Operation, Phase
from ..status import FleetStatus
from .local import LocalFleet, recorded
from .mode import Answer, Change


class WorkerHost(LocalFleet):
    host_units = (paths.FIREWALL_UNIT, paths.AGENT_UNIT, *LocalFleet.host_units)
    # Its edges spread the API workers: a worker host may run none, and their nginx
    # carries the calls.
    api_min = 0
    nginx_front = False

    def switch(self, ctx: Context, op: Operation, switched: bool) -> bool:
        """The edges' switch, once they said so; nothing to wait for when no API worker
        joins or leaves (they send to exactly these already)."""
        return switched or set(op.target.api_ports()) == set(op.previous.api_ports())

    def waiting(self, op: Operation) -> str:
        return (f"a staged {op.verb} waits for the edges to send to this host's new workers; "
                f"its agent finishes it once they do ({paths.AGENT_UNIT})")

    def singletons(self, ctx: Context, fleet: Fleet, change: Change) -> frozenset[str] | None:
        """None in the fleet: the agent runs those this host holds by lease."""
        return frozenset()

    def held_roles(self, settings: Settings) -> frozenset[str]:
        return frozenset(settings.singletons)

    def standing(self, settings: Settings) -> templates.Standing:
        # Its processes start only once its firewall lets the edges alone in; a routed
        # singleton listens where the edges reach it, and is the agent's to start; nginx
        # connects from the edges.
        return templates.Standing(host_units=self.host_units, firewall=paths.FIREWALL_UNIT,
                                  holder=paths.AGENT_UNIT, agent_watchdog=agent.WATCHDOG,
                                  route_host=settings.host,
                                  trusted_proxy=",".join(settings.edges))

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

    def checks(self, ctx: Context) -> list[doctor.Check]:
        return [doctor.for_cluster(ctx), *super().checks(ctx)]

    def rebalance(self, ctx: Context) -> Answer:
        raise DograhError("a worker host has no nginx upstream: its edges weigh it "
                          "(dograhctl rebalance there)")

    # -- its agent ------------------------------------------------------------------------

    def duty(self, ctx: Context, refresh: Callable[[], Context]
             ) -> tuple[etcd.Client, WorkerDuty]:
        settings = ctx.settings
        client = members.client(ctx)

        def registration() -> dict[str, Any]:
            now = refresh()
            return self.registration(now, self.collect(now))
        return client, WorkerDuty(ctx, client, Keys(settings.cluster), registration,
                                  [settings.role(name).role
                                   for name in settings.enabled_singletons])

    def registration(self, ctx: Context, found: FleetStatus) -> dict[str, Any]:
        """This host as its edges see it: wire.HostReport, but for what the agent adds
        (what it carried out)."""
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
        return {
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
            "release": serving.release, "previous_release": serving.previous_release,
            "releases": [{"id": r.id, "state": r.state, "commit": r.commit}
                         for r in releases.listing(ctx)]}
