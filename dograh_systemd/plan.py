"""What a command must change: the fleet asked for, against the fleet recorded.

Pure data, no side effects: the operation it returns is carried out by
``operation.carry_out``, and tests check it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import balance
from .config import Settings
from .errors import DograhError
from .record import Fleet, Operation, Phase
from .roles import Kind
from .upstream import Member, dial_address


@dataclass(frozen=True)
class Request:
    verb: str                       # "scale", "restart", or "deploy" (another release)
    api_workers: int | None = None  # None: the config's FASTAPI_WORKERS
    # Per pool role, its count; a role left out keeps the count it has (or
    # takes the config's when it has none yet, or when api_workers is None too).
    pool_workers: Mapping[str, int] | None = None
    drain_timeout: float | None = None  # None: leaving workers stop at once
    # The singletons this host runs (else the config's switches decide).
    singletons: frozenset[str] | None = None
    # The fewest API workers this host may run (a worker host may run none: its
    # edge spreads them).
    api_min: int = 1


def operation(settings: Settings, current: Fleet, request: Request,
              units: Mapping[str, str], installed: Mapping[str, str],
              definitions: Mapping[str, str], live_calls: Mapping[int, int],
              now: float) -> Operation:
    """The operation that takes ``current`` to what ``request`` asks for.

    ``units``: the unit files the config renders, by name; ``installed``: those
    on disk now; ``definitions``: what each role runs on, per the config;
    ``live_calls``: the running API workers' calls, by port.
    """
    roll = _rolling_roles(settings, current, request, definitions)
    target = _target(settings, current, request, roll, definitions, live_calls)
    return Operation(verb=request.verb, started=now, phase=Phase.START, target=target,
                     previous=current, units=dict(units), previous_units=dict(installed),
                     roll=roll, drain_timeout=request.drain_timeout)


def _rolling_roles(settings: Settings, current: Fleet, request: Request,
                   definitions: Mapping[str, str]) -> tuple[str, ...]:
    """Roles whose running processes must be replaced: all of them for a deploy; for a
    scale, those whose definition changed, so no fleet runs two definitions at once."""
    rolling = [name for name, role_settings in settings.roles.items()
               if role_settings.role.kind is not Kind.MIGRATION and current.of(name)
               and role_settings.count
               and (request.verb in ("restart", "deploy")
                    or current.definitions.get(name) != definitions.get(name))]
    migration = [name for name, role_settings in settings.roles.items()
                 if role_settings.role.kind is Kind.MIGRATION and role_settings.count]
    # New code or definitions may need the new schema: migrations run first.
    return tuple(migration + rolling) if rolling else ()


def _target(settings: Settings, current: Fleet, request: Request, roll: tuple[str, ...],
            definitions: Mapping[str, str], live_calls: Mapping[int, int]) -> Fleet:
    units: dict[str, tuple[str, ...]] = {}
    upstream: tuple[Member, ...] = ()
    for name, role_settings in settings.roles.items():
        role = role_settings.role
        if role.kind is Kind.API:
            count = role_settings.count if request.api_workers is None else request.api_workers
            _check_count(role.title, count, request.api_min, role.count_max)
            ports = _api_ports(settings, set(current.api_ports()), count, name in roll)
            units[name] = tuple(role.instance(port) for port in ports)
            upstream = _upstream(settings, current, ports, live_calls)
        elif role.kind is Kind.POOL:
            count = _pool_count(current, request, name, role_settings.count)
            _check_count(role.title, count, role.count_min, role.count_max)
            units[name] = tuple(role.instance(index) for index in range(1, count + 1))
        else:
            units[name] = (role.unit_file,) if _runs(settings, request, name) else ()
    release = settings.release.id if settings.release else ""
    return Fleet(units=units, upstream=upstream, definitions=dict(definitions),
                 base_port=settings.base_port, release=release,
                 previous_release=current.previous_release if release == current.release
                 else current.release)


def _runs(settings: Settings, request: Request, name: str) -> bool:
    """Whether a singleton (or the migration) runs here: as the request places it, else
    as the config switches it."""
    role_settings = settings.role(name)
    if role_settings.role.kind is Kind.SINGLETON and request.singletons is not None:
        return name in request.singletons
    return bool(role_settings.count)


def _check_count(title: str, count: int, low: int, high: int) -> None:
    if not low <= count <= high:
        raise DograhError(f"{title} count must be {low}..{high}, not {count}")


def _pool_count(current: Fleet, request: Request, name: str, configured: int) -> int:
    asked = (request.pool_workers or {}).get(name)
    if asked is not None:
        return asked
    if request.api_workers is not None and name in current.units:
        return len(current.of(name))
    return configured


def _api_ports(settings: Settings, running: set[int], count: int, new_band: bool) -> list[int]:
    """The first ``count`` ports of the band the workers run in, or, for a deploy
    (or a base port that moved), of a band none of them runs in."""
    bands = [band for band in (0, 1) if running and running <= set(settings.band_ports(band))]
    if bands and not new_band:
        return list(settings.band_ports(bands[0]))[:count]
    for band in (0, 1):
        ports = list(settings.band_ports(band))[:count]
        if running.isdisjoint(ports):
            return ports
    raise DograhError(f"UVICORN_BASE_PORT={settings.base_port} puts both bands of ports on "
                      "the running workers' ports; move it by at least 200, or back")


def _upstream(settings: Settings, current: Fleet, ports: list[int],
              live_calls: Mapping[int, int]) -> tuple[Member, ...]:
    """Members for ``ports``. With the same members the weights stay, so nginx is
    not reloaded and keeps its own, exact counts; new members are weighed from the
    workers' live calls, so a reload does not hide the calls old workers hold."""
    address = dial_address(settings.host)
    same = {(m.address, m.port) for m in current.upstream} == {(address, p) for p in ports}
    if same:
        return tuple(sorted(current.upstream, key=lambda m: m.port))
    weights = balance.weights({port: live_calls.get(port, 0) for port in ports})
    return tuple(Member(address, port, weights[port]) for port in ports)
