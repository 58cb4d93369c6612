"""Desired against actual: every instance, the singletons, nginx's upstream, and where they disagree."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import nginx, systemd
from .config import Settings
from .names import (
    API_TEMPLATE,
    ARI_MANAGER,
    ARQ_TEMPLATE,
    CAMPAIGN_ORCHESTRATOR,
    SINGLETONS,
    api_unit,
    arq_unit,
    instance_of,
)


@dataclass(frozen=True)
class InstanceStatus:
    unit: str
    enabled: bool
    active: str
    sub: str
    pid: int
    memory: int | None
    status: str


@dataclass(frozen=True)
class FleetStatus:
    configured_api_workers: int
    api: list[InstanceStatus]
    arq: list[InstanceStatus]
    singletons: list[InstanceStatus]
    upstream: list[int]
    mismatches: list[str]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def collect(settings: Settings) -> FleetStatus:
    fleet = systemd.current_fleet()
    api_units = [api_unit(p) for p in sorted(fleet.api_ports)]
    arq_units = [arq_unit(i) for i in sorted(fleet.arq_indices)]
    states = systemd.show([*api_units, *arq_units, *SINGLETONS])
    enabled = ({api_unit(p) for p in systemd.enabled_instances(API_TEMPLATE)}
               | {arq_unit(i) for i in systemd.enabled_instances(ARQ_TEMPLATE)}
               | {u for u in SINGLETONS if states[u].enabled == "enabled"})

    def instance(unit: str) -> InstanceStatus:
        state = states[unit]
        return InstanceStatus(unit=unit, enabled=unit in enabled, active=state.active,
                              sub=state.sub, pid=state.pid, memory=state.memory,
                              status=state.status)

    upstream = sorted(nginx.upstream_weights())
    wanted_singletons = {ARI_MANAGER: settings.enable_ari_manager,
                         CAMPAIGN_ORCHESTRATOR: settings.enable_campaign_orchestrator}
    mismatches = []
    for unit in [*api_units, *arq_units]:
        mismatches += _instance_mismatches(instance(unit))
    ready_ports = {instance_of(u) for u in api_units if states[u].ready}
    for port in sorted(ready_ports - set(upstream)):
        mismatches.append(f"{api_unit(port)} is ready but not in the nginx upstream")
    for port in sorted(set(upstream) - ready_ports):
        mismatches.append(f"nginx upstream lists port {port} but no worker is ready there")
    for unit, wanted in wanted_singletons.items():
        if wanted and not states[unit].ready:
            mismatches.append(f"{unit} should run but is {states[unit].active}")
        if not wanted and states[unit].active in ("active", "activating"):
            mismatches.append(f"{unit} is disabled in the config but runs")
    return FleetStatus(
        configured_api_workers=settings.fastapi_workers,
        api=[instance(u) for u in api_units],
        arq=[instance(u) for u in arq_units],
        singletons=[instance(u) for u in SINGLETONS],
        upstream=upstream,
        mismatches=mismatches,
    )


def _instance_mismatches(item: InstanceStatus) -> list[str]:
    if item.enabled and item.active != "active":
        return [f"{item.unit} is enabled but {item.active} ({item.sub})"]
    if not item.enabled and item.active == "active":
        return [f"{item.unit} runs but is not enabled, so it will not come back at boot"]
    return []
