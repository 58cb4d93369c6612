"""What a scale must change: the difference between the fleet that runs and the one asked for.

Pure data, no side effects: ``scale`` applies it, tests check it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import BAND_OFFSET, MAX_API_WORKERS, MAX_ARQ_WORKERS, Settings
from .errors import DograhError
from .names import SINGLETONS, api_unit, arq_unit


@dataclass(frozen=True)
class Fleet:
    api_ports: frozenset[int]
    arq_indices: frozenset[int]
    singletons: frozenset[str]


@dataclass(frozen=True)
class Plan:
    current: Fleet
    desired: Fleet

    @property
    def api_to_start(self) -> list[str]:
        return [api_unit(p) for p in sorted(self.desired.api_ports - self.current.api_ports)]

    @property
    def api_to_stop(self) -> list[str]:
        return [api_unit(p) for p in sorted(self.current.api_ports - self.desired.api_ports)]

    @property
    def arq_to_start(self) -> list[str]:
        return [arq_unit(i) for i in sorted(self.desired.arq_indices - self.current.arq_indices)]

    @property
    def arq_to_stop(self) -> list[str]:
        return [arq_unit(i) for i in sorted(self.current.arq_indices - self.desired.arq_indices)]

    @property
    def singletons_to_start(self) -> list[str]:
        return sorted(self.desired.singletons - self.current.singletons)

    @property
    def singletons_to_stop(self) -> list[str]:
        return sorted(self.current.singletons - self.desired.singletons)

    @property
    def to_start(self) -> list[str]:
        return self.api_to_start + self.arq_to_start + self.singletons_to_start

    @property
    def to_stop(self) -> list[str]:
        return self.api_to_stop + self.arq_to_stop + self.singletons_to_stop


def current_band(settings: Settings, current: Fleet) -> int:
    """The band of ports the fleet runs in: 1 once a deploy moved it up by BAND_OFFSET."""
    upper = settings.base_port + BAND_OFFSET
    return 1 if current.api_ports and min(current.api_ports) >= upper else 0


def desired_fleet(settings: Settings, current: Fleet, api_count: int | None,
                  arq_count: int | None, switch_band: bool = False) -> Fleet:
    """The fleet asked for.

    No API count means the config's FASTAPI_WORKERS. No ARQ count keeps the ARQ
    workers that are enabled, or takes ARQ_WORKERS when there are none yet; a
    bare ``dograhctl scale`` applies the config file's sizes to both. The API
    workers stay in the band they run in, or move to the other for a deploy.
    """
    if api_count is None:
        api_count = settings.fastapi_workers
        if arq_count is None:
            arq_count = settings.arq_workers
    if not 1 <= api_count <= MAX_API_WORKERS:
        raise DograhError(f"API worker count must be 1..{MAX_API_WORKERS}, not {api_count}")
    if arq_count is None:
        arq_count = len(current.arq_indices) if current.arq_indices else settings.arq_workers
    if not 0 <= arq_count <= MAX_ARQ_WORKERS:
        raise DograhError(f"ARQ worker count must be 0..{MAX_ARQ_WORKERS}, not {arq_count}")
    wanted = (settings.enable_ari_manager, settings.enable_campaign_orchestrator)
    singletons = {unit for unit, on in zip(SINGLETONS, wanted, strict=True) if on}
    band = current_band(settings, current)
    if switch_band:
        band = 1 - band
    return Fleet(api_ports=settings.api_ports(api_count, band),
                 arq_indices=frozenset(range(1, arq_count + 1)),
                 singletons=frozenset(singletons))
