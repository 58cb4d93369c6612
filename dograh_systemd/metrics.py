"""This host's fleet in Prometheus' text exposition format.

Work in progress: the full set of metrics, their rules and dashboard come next.
"""

from __future__ import annotations

from .context import Context
from .status import FleetStatus
from .upstream import Member


def for_fleet(ctx: Context, found: FleetStatus) -> str:
    lines = ["# HELP dograh_up Whether the unit is up and serving (1) or not (0).",
             "# TYPE dograh_up gauge"]
    for role, items in found.roles.items():
        for item in items:
            lines.append(f'dograh_up{{unit="{item.unit}",role="{role}"}} {int(item.ready)}')
    return "\n".join(lines) + "\n"


def for_edge(ctx: Context, upstream: tuple[Member, ...], survey: object) -> str:
    return f"# TYPE dograh_upstream_members gauge\ndograh_upstream_members {len(upstream)}\n"
