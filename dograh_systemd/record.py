"""The fleet record: what should run, where nginx sends, and any operation in progress.

One JSON file beside the generated files, written atomically by dograhctl
alone (Zulip keeps ``sharding.json`` beside its nginx map the same way). An
operation is recorded before its first change and advanced phase by phase,
so a command that was interrupted at any step is finished by the next one.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import files, paths
from .errors import DograhError
from .templates import Member

FORMAT = 1


@dataclass(frozen=True)
class Fleet:
    """The units each role should run, nginx's upstream, and what the units run on."""

    units: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    upstream: tuple[Member, ...] = ()
    # Per role, a digest of its unit file and the app's environment: when the
    # config's digest differs, the running processes are out of date.
    definitions: Mapping[str, str] = field(default_factory=dict)

    def of(self, role: str) -> tuple[str, ...]:
        return self.units.get(role, ())

    def all_units(self) -> list[str]:
        return [unit for units in self.units.values() for unit in units]

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
    # Stopped on purpose once the new units were READY, for an edge to switch its
    # nginx: status leaves it be; the next changing command finishes it.
    staged: bool = False

    def at(self, phase: Phase, **changes: Any) -> Operation:
        return replace(self, phase=phase, **changes)


@dataclass(frozen=True)
class Record:
    fleet: Fleet
    operation: Operation | None = None


class Store:
    """The record on disk."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.RECORD

    def load(self) -> Record | None:
        """The record, or None when there is none yet."""
        text = files.read(self.path)
        if text is None:
            return None
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            operation = data.get("operation")
            return Record(_fleet(data["fleet"]),
                          _operation(operation) if operation else None)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DograhError(f"{self.path} is damaged ({exc}); move it away and dograhctl "
                              "rebuilds it from what runs") from None

    def save(self, record: Record) -> None:
        data = {"format": FORMAT, "fleet": _fleet_data(record.fleet),
                "operation": _operation_data(record.operation) if record.operation else None}
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        files.write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# -- JSON ------------------------------------------------------------------------

def _fleet_data(fleet: Fleet) -> dict[str, Any]:
    return {"units": {role: list(units) for role, units in fleet.units.items()},
            "upstream": [{"address": m.address, "port": m.port, "weight": m.weight}
                         for m in fleet.upstream],
            "definitions": dict(fleet.definitions)}


def _fleet(data: Mapping[str, Any]) -> Fleet:
    return Fleet(units={str(role): tuple(map(str, units)) for role, units in data["units"].items()},
                 upstream=tuple(Member(str(m["address"]), int(m["port"]), int(m["weight"]))
                                for m in data["upstream"]),
                 definitions={str(k): str(v) for k, v in data["definitions"].items()})


def _operation_data(op: Operation) -> dict[str, Any]:
    return {"verb": op.verb, "started": op.started, "phase": op.phase.value,
            "target": _fleet_data(op.target), "previous": _fleet_data(op.previous),
            "units": dict(op.units), "previous_units": dict(op.previous_units),
            "roll": list(op.roll), "drain_timeout": op.drain_timeout,
            "drain_deadline": op.drain_deadline, "staged": op.staged}


def _operation(data: Mapping[str, Any]) -> Operation:
    def number(key: str) -> float | None:
        return None if data[key] is None else float(data[key])

    return Operation(verb=str(data["verb"]), started=float(data["started"]),
                     phase=Phase(data["phase"]), target=_fleet(data["target"]),
                     previous=_fleet(data["previous"]),
                     units=_texts(data["units"]), previous_units=_texts(data["previous_units"]),
                     roll=tuple(map(str, data["roll"])), drain_timeout=number("drain_timeout"),
                     drain_deadline=number("drain_deadline"), staged=bool(data.get("staged")))


def _texts(data: Mapping[str, Any]) -> dict[str, str]:
    return {str(name): str(text) for name, text in data.items()}
