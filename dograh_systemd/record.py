"""The fleet record: what should run, where nginx sends, and any operation in progress.

One JSON file beside the generated files, written atomically by dograhctl
alone (Zulip keeps ``sharding.json`` beside its nginx map the same way). An
operation is recorded before its first change and advanced phase by phase,
so a command that was interrupted at any step is finished by the next one.
Every field is checked to its type and range when read: a damaged record is
one line, and a record written by a newer release is refused by name.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from . import paths, schema
from .errors import DograhError
from .host.files import Files
from .roles import API
from .upstream import Member

# 2: operations record the nginx files they switch to. 1 (0.2.0) reads as 2
# without them.
FORMAT = 2
READS = (1, 2)
# No fleet's record comes near this; a larger file is not one of ours.
LIMIT = 8 << 20


@dataclass(frozen=True)
class Fleet:
    """The units each role should run, nginx's upstream, and what the units run on."""

    units: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    upstream: tuple[Member, ...] = ()
    # Per role, a keyed digest of its unit file and the app's environment: when
    # the config's digest differs, the running processes are out of date.
    definitions: Mapping[str, str] = field(default_factory=dict)
    # The UVICORN_BASE_PORT the API workers' bands come from (0: not recorded yet).
    base_port: int = 0
    # The release the processes run ("": the config's app, in place), and the one
    # before it, which a rollback goes back to.
    release: str = ""
    previous_release: str = ""

    def of(self, role: str) -> tuple[str, ...]:
        return self.units.get(role, ())

    def all_units(self) -> list[str]:
        return [unit for units in self.units.values() for unit in units]

    def api_ports(self) -> list[int]:
        """The API workers' ports, in order (each one's instance name)."""
        return sorted(API.port(unit) for unit in self.of(API.name))

    def weights(self) -> dict[int, int]:
        return {member.port: member.weight for member in self.upstream}


class Phase(enum.Enum):
    START = "start"    # install the units, migrate, start the new ones and wait for READY
    SWITCH = "switch"  # nginx sends to the target's workers only
    DRAIN = "drain"    # leaving workers finish their calls
    STOP = "stop"      # leaving units stop
    ROLL = "roll"      # the other roles' running processes restart onto new definitions


@dataclass(frozen=True)
class Operation:
    verb: str
    started: float     # wall clock: units that started after it are already new
    phase: Phase
    target: Fleet
    previous: Fleet
    # Unit file name -> text, for the target and for a rollback to the previous fleet.
    units: Mapping[str, str]
    previous_units: Mapping[str, str]
    roll: tuple[str, ...] = ()  # roles whose running processes are replaced
    drain_timeout: float | None = None  # None: leaving workers stop at once
    drain_deadline: float | None = None
    # Stopped on purpose once the new units were READY: on a worker host, for its
    # edge to switch; status leaves it be, the next command (or the edge) finishes it.
    staged: bool = False
    # The nginx files (path -> text) the switch installs, and those it replaces:
    # resuming and rolling back use these, never a render of today's settings.
    nginx: Mapping[str, str] = field(default_factory=dict)
    previous_nginx: Mapping[str, str] = field(default_factory=dict)

    def at(self, phase: Phase, **changes: Any) -> Operation:
        return replace(self, phase=phase, **changes)


@dataclass(frozen=True)
class Record:
    fleet: Fleet
    operation: Operation | None = None


class Store:
    """The record on disk."""

    def __init__(self, files: Files) -> None:
        self.files = files
        self.path = paths.RECORD

    def load(self) -> Record | None:
        """The record, or None when there is none yet."""
        text = self.files.read(self.path)
        if text is None:
            return None
        try:
            data = schema.load(_Shape, text, LIMIT)
        except schema.OutOfShape as exc:
            raise DograhError(f"{self.path} is damaged ({exc}); move it away and dograhctl "
                              "rebuilds it from what runs") from None
        return Record(_fleet(data.fleet), _operation(data.operation) if data.operation else None)

    def save(self, record: Record) -> None:
        data = {"format": FORMAT, "fleet": _fleet_data(record.fleet),
                "operation": _operation_data(record.operation) if record.operation else None}
        self.files.write_atomic(self.path, schema.dumps(data))

    def remove(self) -> None:
        self.files.unlink(self.path)


# -- the file's shape ------------------------------------------------------------

UnitName = schema.constr(strict=True, regex=r"^dograh-[a-z0-9-]{1,60}(@[0-9]{1,5})?\.service\Z")
UnitFileName = schema.constr(strict=True,
                             regex=r"^dograh(-[a-z0-9-]{1,60}@?)?\.(service|target|timer)\Z")
RoleName = schema.constr(strict=True, regex=r"^[a-z][a-z0-9-]{0,60}\Z")
ReleaseName = schema.constr(strict=True, regex=r"^([0-9A-Za-z][0-9A-Za-z._+-]{0,80})?\Z")
Text = schema.constr(strict=True, max_length=1 << 20)
Seconds = schema.confloat(allow_inf_nan=False, ge=0)
NginxFile = Literal[tuple(str(p) for p in (paths.NGINX_SITE, paths.NGINX_UPSTREAM,  # type: ignore[valid-type]
                                          paths.NGINX_CAPACITY))]


class _Member(schema.Strict):
    address: schema.StrictStr
    port: schema.conint(strict=True, ge=1, le=65535)  # type: ignore[valid-type]
    weight: schema.conint(strict=True, ge=1, le=100)  # type: ignore[valid-type]

    @schema.validator("address")
    def _an_address(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))


class _Fleet(schema.Strict):
    units: dict[RoleName, schema.conlist(UnitName, max_items=256)]  # type: ignore[valid-type]
    upstream: schema.conlist(_Member, max_items=256)  # type: ignore[valid-type]
    definitions: dict[RoleName, schema.constr(strict=True, regex=r"^[0-9a-f]{16}\Z")]  # type: ignore[valid-type]
    base_port: schema.conint(strict=True, ge=0, le=65535) = 0  # type: ignore[valid-type]
    release: ReleaseName = ""  # type: ignore[valid-type]
    previous_release: ReleaseName = ""  # type: ignore[valid-type]


class _Operation(schema.Strict):
    verb: schema.constr(strict=True, regex=r"^[a-z]{1,20}\Z")  # type: ignore[valid-type]
    started: Seconds  # type: ignore[valid-type]
    phase: Literal[tuple(phase.value for phase in Phase)]  # type: ignore[valid-type]
    target: _Fleet
    previous: _Fleet
    units: dict[UnitFileName, Text]  # type: ignore[valid-type]
    previous_units: dict[UnitFileName, Text]  # type: ignore[valid-type]
    roll: schema.conlist(RoleName, max_items=64)  # type: ignore[valid-type]
    drain_timeout: Seconds | None  # type: ignore[valid-type]
    drain_deadline: Seconds | None  # type: ignore[valid-type]
    staged: schema.StrictBool
    # Absent from 0.2.0's operations (format 1): pydantic copies the default.
    nginx: dict[NginxFile, Text] = {}  # type: ignore[valid-type]  # noqa: RUF012
    previous_nginx: dict[NginxFile, Text] = {}  # type: ignore[valid-type]  # noqa: RUF012


class _Shape(schema.Strict):
    format: schema.StrictInt
    fleet: _Fleet
    operation: _Operation | None

    @schema.validator("format")
    def _a_format_this_release_reads(cls, value: int) -> int:
        if value > FORMAT:
            raise ValueError(f"written by a newer dograh-systemd (record format {value}; this "
                             f"one reads up to {FORMAT}): upgrade this host's package")
        if value not in READS:
            raise ValueError(f"format {value}, expected one of {READS}")
        return value


def _fleet_data(fleet: Fleet) -> dict[str, Any]:
    return {"units": {role: list(units) for role, units in fleet.units.items()},
            "upstream": [{"address": m.address, "port": m.port, "weight": m.weight}
                         for m in fleet.upstream],
            "definitions": dict(fleet.definitions), "base_port": fleet.base_port,
            "release": fleet.release, "previous_release": fleet.previous_release}


def _fleet(data: _Fleet) -> Fleet:
    return Fleet(units={role: tuple(units) for role, units in data.units.items()},
                 upstream=tuple(Member(m.address, m.port, m.weight) for m in data.upstream),
                 definitions=dict(data.definitions), base_port=data.base_port,
                 release=data.release, previous_release=data.previous_release)


def _operation_data(op: Operation) -> dict[str, Any]:
    return {"verb": op.verb, "started": op.started, "phase": op.phase.value,
            "target": _fleet_data(op.target), "previous": _fleet_data(op.previous),
            "units": dict(op.units), "previous_units": dict(op.previous_units),
            "roll": list(op.roll), "drain_timeout": op.drain_timeout,
            "drain_deadline": op.drain_deadline, "staged": op.staged,
            "nginx": dict(op.nginx), "previous_nginx": dict(op.previous_nginx)}


def _operation(data: _Operation) -> Operation:
    return Operation(verb=data.verb, started=data.started, phase=Phase(data.phase),
                     target=_fleet(data.target), previous=_fleet(data.previous),
                     units=dict(data.units), previous_units=dict(data.previous_units),
                     roll=tuple(data.roll), drain_timeout=data.drain_timeout,
                     drain_deadline=data.drain_deadline, staged=data.staged,
                     nginx=dict(data.nginx), previous_nginx=dict(data.previous_nginx))


def nginx_files(texts: Mapping[str, str]) -> dict[Path, str]:
    """Recorded nginx texts by the path they go to."""
    return {Path(path): text for path, text in texts.items()}
