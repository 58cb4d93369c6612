"""What the hosts of a cluster tell each other through etcd: one schema for each kind of
value, written by one side, checked by the other.

    HostReport  a worker host's registration (hosts/NAME, on its agent's lease): the
                API workers an edge should send to (ports only; the address is the
                one the edge's roster gives), their live calls, the singletons it
                runs, its units for status, any operation at work, its releases, and
                the last desired state it carried out
    Desired     what an edge asks of a worker host (desired/NAME): API workers, the
                release, a restart, how long a drain may take
    Build       a release every host makes (releases/ID): pinned to one commit
    Placement   where each singleton may run, in order of preference (singletons)
    Ack         the revision of the cluster's state an edge's nginx sends by (acks/NAME)
    Edge        an edge's presence (edges/NAME, on its agent's lease): the floating
                addresses its interface carries, and since when

Nothing is trusted that was not checked: the shape is strict (no unknown field, every
number an integer in its range, every port inside the host's two bands, no control
character in any text), and a value out of shape is named by status and left out;
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

FORMAT = 2
LIMIT = 1 << 20
# Printable text of a bounded length: status lines and messages for people. \Z, not $,
# which would let a trailing newline through (pydantic matches from the start only).
_PLAIN = r"^[^\x00-\x1f\x7f]*\Z"
_NAME = r"^[a-z][a-z0-9-]{0,60}\Z"
_HOST = r"^[a-z0-9][a-z0-9-]{0,62}\Z"
UNIT_STATES = ("active", "reloading", "inactive", "failed", "activating", "deactivating",
               "maintenance", "refreshing")
Count = schema.conint(strict=True, ge=0, le=10_000_000)
Serial = schema.conint(strict=True, ge=0, le=1 << 62)


class Member(schema.Strict):
    port: schema.conint(strict=True, ge=1, le=65535)  # type: ignore[valid-type]
    ready: schema.StrictBool
    calls: Count  # type: ignore[valid-type]


class Unit(schema.Strict):
    unit: schema.constr(strict=True, regex=r"^dograh-[a-z0-9-]{1,60}(@[0-9]{1,5})?\.service\Z")  # type: ignore[valid-type]
    role: schema.constr(strict=True, regex=_NAME)  # type: ignore[valid-type]
    active: Literal[UNIT_STATES]  # type: ignore[valid-type]
    sub: schema.constr(strict=True, regex=r"^[a-z-]{0,32}\Z")  # type: ignore[valid-type]
    status: schema.constr(strict=True, max_length=300, regex=_PLAIN)  # type: ignore[valid-type]


class Operation(schema.Strict):
    verb: schema.constr(strict=True, regex=r"^[a-z]{1,20}\Z")  # type: ignore[valid-type]
    phase: Literal["start", "switch", "drain", "stop", "roll"]
    staged: schema.StrictBool
    # Another dograhctl is at it now (it holds the host's lock): leave it be.
    busy: schema.StrictBool


class Release(schema.Strict):
    id: ReleaseName  # type: ignore[valid-type]
    state: Literal["building", "ready", "failed"]
    commit: schema.constr(strict=True, regex=r"^[0-9a-f]{0,64}\Z")  # type: ignore[valid-type]


class HostReport(schema.Strict):
    format: Literal[2]
    version: schema.constr(strict=True, regex=r"^[0-9][0-9A-Za-z.+~-]{0,40}\Z")  # type: ignore[valid-type]
    cpus: schema.conint(strict=True, ge=1, le=4096)  # type: ignore[valid-type]
    # The base ports its API workers' bands come from: the config's, and while its
    # workers move off another one, that one too.
    bases: schema.conlist(schema.conint(strict=True, ge=1024, le=MAX_BASE_PORT),  # type: ignore[valid-type]
                          min_items=1, max_items=2)
    members: schema.conlist(Member, max_items=2 * MAX_API_WORKERS)  # type: ignore[valid-type]
    singletons: schema.conlist(schema.constr(strict=True, regex=_NAME), max_items=32)  # type: ignore[valid-type]
    units: schema.conlist(Unit, max_items=512)  # type: ignore[valid-type]
    operation: Operation | None
    mismatches: schema.conlist(  # type: ignore[valid-type]
        schema.constr(strict=True, max_length=500, regex=_PLAIN), max_items=128)
    # The release its processes run ("": the config's app), the one before, and those
    # it has.
    release: ReleaseName  # type: ignore[valid-type]
    previous_release: ReleaseName  # type: ignore[valid-type]
    releases: schema.conlist(Release, max_items=256)  # type: ignore[valid-type]
    # The last desired generation it carried out, the restart it carried out last, and
    # why carrying out the last one failed ("" when it did not).
    generation: Serial  # type: ignore[valid-type]
    restarted: Serial  # type: ignore[valid-type]
    failed: schema.constr(strict=True, max_length=2000, regex=_PLAIN)  # type: ignore[valid-type]

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


class Drain(schema.Strict):
    # None: the host's own DRAIN_TIMEOUT; otherwise the admin's, in seconds, or no
    # drain at all (``stop_at_once``).
    timeout: schema.conint(strict=True, ge=0, le=86400) | None  # type: ignore[valid-type]
    stop_at_once: schema.StrictBool


class Desired(schema.Strict):
    format: Literal[1]
    generation: Serial  # type: ignore[valid-type]
    api: schema.conint(strict=True, ge=0, le=MAX_API_WORKERS)  # type: ignore[valid-type]
    # None: as it is; "": the config's app, in place; else that release.
    release: ReleaseName | None  # type: ignore[valid-type]
    # Roll back over migrations the older release does not know.
    unknown_migrations: schema.StrictBool
    restart: Serial  # type: ignore[valid-type]
    drain: Drain


class Build(schema.Strict):
    format: Literal[1]
    source: schema.constr(strict=True, max_length=1000, regex=_PLAIN)  # type: ignore[valid-type]
    ref: schema.constr(strict=True, max_length=200, regex=_PLAIN)  # type: ignore[valid-type]
    commit: schema.constr(strict=True, regex=r"^[0-9a-f]{0,64}\Z")  # type: ignore[valid-type]
    layout: Literal["dograh", "app"]
    app: schema.constr(strict=True, regex=r"^([A-Za-z_][\w.]*:[A-Za-z_][\w.]*)?\Z")  # type: ignore[valid-type]


class Placement(schema.Strict):
    format: Literal[1]
    # Per singleton, the hosts that may run it, the preferred first.
    hosts: dict[schema.constr(strict=True, regex=_NAME),  # type: ignore[valid-type]
                schema.conlist(schema.constr(strict=True, regex=_HOST), max_items=256)]  # type: ignore[valid-type]


class Ack(schema.Strict):
    format: Literal[1]
    revision: Serial  # type: ignore[valid-type]


class Leader(schema.Strict):
    """A singleton's leader key: its holder, and the placement's revision it took the key
    under (a newer placement may ask it to give the key up)."""

    format: Literal[1]
    host: schema.constr(strict=True, regex=_HOST)  # type: ignore[valid-type]
    placed: Serial  # type: ignore[valid-type]


class Edge(schema.Strict):
    format: Literal[1]
    holds: schema.conlist(schema.constr(strict=True, max_length=64,  # type: ignore[valid-type]
                                        regex=r"^[0-9a-f.:]+/[0-9]{1,3}\Z"), max_items=2)
    since: schema.confloat(allow_inf_nan=False, ge=0)  # type: ignore[valid-type]


@dataclass(frozen=True)
class Trouble:
    """Why a host's registration cannot be used: there is none (its lease ended), or it
    is out of shape."""

    why: str
    answers: bool  # it registered, but out of shape (its agent may be anything)


def read(text: str | bytes, singletons: Iterable[str]) -> HostReport:
    """A worker host's registration; OutOfShape names what is wrong with it.
    ``singletons``: the singleton roles this host knows."""
    report = schema.load(HostReport, text, LIMIT)
    unknown = sorted(set(report.singletons) - set(singletons))
    if unknown:
        raise schema.OutOfShape(f"singletons: {unknown[0]} is not a singleton")
    return report


def write(model: type[schema.Strict], data: dict[str, Any]) -> str:
    """``data`` as the writer sends it, checked against ``model`` first."""
    return schema.parse(model, data).json(sort_keys=True)  # type: ignore[no-any-return]
