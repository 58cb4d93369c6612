"""What a worker host tells its edge: one schema, written by the worker, read by the edge.

Every ``dograhctl`` command the edge runs on a worker host (over SSH, with
``--json``) prints one ``HostReport``: the API workers the edge should send to
(ports only; the address is the one DOGRAH_HOSTS gives the edge), their live
calls, the singletons running there, the host's units for status, any
operation in progress, and what the command did.

The edge trusts nothing of it that it did not check: the shape is strict (no
unknown field, every number an integer in its range, every port inside the
host's two bands, no control character in any text), and a reply out of
shape marks the host unhealthy: it is named by status and left out, and
nothing of it reaches nginx or the fleet record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from . import schema
from .config import BAND_OFFSET, MAX_BASE_PORT
from .record import ReleaseName
from .roles import MAX_API_WORKERS

FORMAT = 1
LIMIT = 1 << 20
# Printable text of a bounded length: status lines and messages for people.
_PLAIN = r"^[^\x00-\x1f\x7f]*$"
UNIT_STATES = ("active", "reloading", "inactive", "failed", "activating", "deactivating",
               "maintenance", "refreshing")


class Member(schema.Strict):
    port: schema.conint(strict=True, ge=1, le=65535)  # type: ignore[valid-type]
    ready: schema.StrictBool
    calls: schema.conint(strict=True, ge=0, le=10_000_000)  # type: ignore[valid-type]


class Unit(schema.Strict):
    unit: schema.constr(strict=True, regex=r"^dograh-[a-z0-9-]{1,60}(@[0-9]{1,5})?\.service$")  # type: ignore[valid-type]
    role: schema.constr(strict=True, regex=r"^[a-z][a-z0-9-]{0,60}$")  # type: ignore[valid-type]
    active: Literal[UNIT_STATES]  # type: ignore[valid-type]
    sub: schema.constr(strict=True, regex=r"^[a-z-]{0,32}$")  # type: ignore[valid-type]
    status: schema.constr(strict=True, max_length=300, regex=_PLAIN)  # type: ignore[valid-type]


class Operation(schema.Strict):
    verb: schema.constr(strict=True, regex=r"^[a-z]{1,20}$")  # type: ignore[valid-type]
    phase: Literal["start", "switch", "drain", "stop", "roll"]
    staged: schema.StrictBool
    # Another dograhctl is at it now (it holds the host's lock): leave it be.
    busy: schema.StrictBool


class Cut(schema.Strict):
    calls: schema.conint(strict=True, ge=0, le=10_000_000)  # type: ignore[valid-type]
    uncounted: schema.conlist(  # type: ignore[valid-type]
        schema.constr(strict=True, max_length=300, regex=_PLAIN), max_items=128)


class Release(schema.Strict):
    id: ReleaseName  # type: ignore[valid-type]
    state: Literal["building", "ready", "failed"]


class HostReport(schema.Strict):
    format: Literal[1]
    version: schema.constr(strict=True, regex=r"^[0-9][0-9A-Za-z.+~-]{0,40}$")  # type: ignore[valid-type]
    cpus: schema.conint(strict=True, ge=1, le=4096)  # type: ignore[valid-type]
    # The base ports its API workers' bands come from: the config's, and while its
    # workers move off another one, that one too.
    bases: schema.conlist(schema.conint(strict=True, ge=1024, le=MAX_BASE_PORT),  # type: ignore[valid-type]
                          min_items=1, max_items=2)
    members: schema.conlist(Member, max_items=2 * MAX_API_WORKERS)  # type: ignore[valid-type]
    singletons: schema.conlist(  # type: ignore[valid-type]
        schema.constr(strict=True, regex=r"^[a-z][a-z0-9-]{0,60}$"), max_items=32)
    units: schema.conlist(Unit, max_items=512)  # type: ignore[valid-type]
    operation: Operation | None
    mismatches: schema.conlist(  # type: ignore[valid-type]
        schema.constr(strict=True, max_length=500, regex=_PLAIN), max_items=128)
    summary: schema.constr(strict=True, max_length=2000, regex=_PLAIN) | None  # type: ignore[valid-type]
    cut: Cut | None
    # The release its processes run ("": the config's app), and those it has.
    release: ReleaseName  # type: ignore[valid-type]
    releases: schema.conlist(Release, max_items=256)  # type: ignore[valid-type]

    @schema.root_validator(skip_on_failure=True)
    def _ports_in_the_hosts_bands(cls, values: dict[str, Any]) -> dict[str, Any]:
        bands = [range(base + band * BAND_OFFSET, base + band * BAND_OFFSET + MAX_API_WORKERS)
                 for base in values["bases"] for band in (0, 1)]
        ports = [member.port for member in values["members"]]
        outside = [port for port in ports if not any(port in band for band in bands)]
        if outside:
            raise ValueError(f"port {outside[0]} is outside the host's worker bands "
                             f"({', '.join(f'{b[0]}-{b[-1]}' for b in bands)})")
        if len(set(ports)) != len(ports):
            raise ValueError("a port is listed twice")
        return values


@dataclass(frozen=True)
class Trouble:
    """Why a host's report cannot be used: it does not answer, or answers out of shape."""

    why: str
    answers: bool  # it answered, but not in shape (its dograhctl may be anything)


def read(text: str, singletons: Iterable[str]) -> HostReport:
    """A worker host's report; OutOfShape names what is wrong with it. ``singletons``:
    the singleton roles the edge knows."""
    report = schema.load(HostReport, text, LIMIT)
    unknown = sorted(set(report.singletons) - set(singletons))
    if unknown:
        raise schema.OutOfShape(f"singletons: {unknown[0]} is not a singleton")
    return report


def write(report: dict[str, Any]) -> str:
    """A report as the worker prints it, checked against the schema first."""
    return schema.parse(HostReport, report).json()
