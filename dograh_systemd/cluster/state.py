"""The cluster's state as one snapshot: every key under the prefix, read at one revision
and sorted by kind. Each value is read through its schema (wire.py) by whoever uses it;
a value out of shape is named, never used.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from .. import schema, wire
from ..etcd import Client, KeyValue
from ..wire import HostReport, Trouble
from .keys import Keys

# No cluster's state comes near this: a larger value is not one of ours.
VALUE_LIMIT = 1 << 20


@dataclass(frozen=True)
class Snapshot:
    revision: int
    hosts: dict[str, KeyValue] = field(default_factory=dict)
    edges: dict[str, KeyValue] = field(default_factory=dict)
    acks: dict[str, KeyValue] = field(default_factory=dict)
    leaders: dict[str, KeyValue] = field(default_factory=dict)
    desired: dict[str, KeyValue] = field(default_factory=dict)
    releases: dict[str, KeyValue] = field(default_factory=dict)
    placement: KeyValue | None = None

    def holder(self, role: str) -> str | None:
        """The host whose lease holds ``role``'s leader key: the registered host on that
        lease (a key that names another host than its lease's is nobody's), or "" for a
        key on a lease no registered host has."""
        leader = self.leaders.get(role)
        if leader is None:
            return None
        value = _model(wire.Leader, leader)
        registered = self.hosts.get(value.host) if value else None
        return value.host if value and registered and registered.lease == leader.lease else ""

    def placed_anew(self, role: str) -> bool:
        """Whether the edges placed the singletons since ``role``'s holder took it."""
        leader = self.leaders.get(role)
        if leader is None or self.placement is None:
            return False
        value = _model(wire.Leader, leader)
        return self.placement.mod_revision > (value.placed if value else 0)

    def fencing_token(self, role: str) -> int:
        """The leader key's revision: each new holder's is higher than any before."""
        leader = self.leaders.get(role)
        return leader.create_revision if leader else 0

    def live_edges(self) -> list[str]:
        return sorted(self.edges)

    def front(self) -> dict[str, wire.Edge]:
        """Each live edge's presence that reads: what floating addresses it holds."""
        return {name: edge for name, kv in sorted(self.edges.items())
                if (edge := _model(wire.Edge, kv)) is not None}

    def acked(self, edge: str) -> int:
        """The revision ``edge``'s nginx sends by (0: it has said none)."""
        found = self.acks.get(edge)
        if found is None:
            return 0
        try:
            return schema.load(wire.Ack, found.value, VALUE_LIMIT).revision
        except schema.OutOfShape:
            return 0

    def desired_for(self, host: str) -> wire.Desired | None:
        found = self.desired.get(host)
        return _model(wire.Desired, found)

    def builds(self) -> dict[str, wire.Build]:
        return {name: build for name, kv in sorted(self.releases.items())
                if (build := _model(wire.Build, kv)) is not None}

    def preferences(self) -> dict[str, list[str]]:
        """Per singleton, the hosts that may run it, the preferred first (none said: the
        edges have placed nothing yet)."""
        placed = _model(wire.Placement, self.placement)
        return {role: list(hosts) for role, hosts in placed.hosts.items()} if placed else {}

    def registrations(self, roster: Collection[str], singletons: Collection[str]
                      ) -> tuple[dict[str, HostReport], dict[str, Trouble]]:
        """Each host of ``roster`` by its registration, or the trouble with it."""
        reports, trouble = {}, {}
        for name in roster:
            found = self.hosts.get(name)
            if found is None:
                trouble[name] = Trouble("is not registered (its agent's lease ended, or it "
                                        "never started)", answers=False)
                continue
            try:
                reports[name] = wire.read(found.value, singletons)
            except schema.OutOfShape as exc:
                trouble[name] = Trouble(f"registers out of shape ({exc})", answers=True)
        return reports, trouble


def read(client: Client, keys: Keys) -> Snapshot:
    """Every key of the cluster, at one revision."""
    found, revision = client.range(keys.prefix, prefix=True)
    sorted_keys: dict[str, dict[str, KeyValue]] = {
        "hosts": {}, "edges": {}, "acks": {}, "leaders": {}, "desired": {}, "releases": {}}
    placement = None
    for kv in found:
        kind, name = keys.kind(kv.key)
        if kind == "singletons":
            placement = kv
        elif kind in sorted_keys and len(kv.value) <= VALUE_LIMIT:
            sorted_keys[kind][name] = kv
    return Snapshot(revision, placement=placement, **sorted_keys)


def leader_value(host: str, snapshot: Snapshot) -> str:
    """A leader key's value: its holder, and the placement it took the key under."""
    placed = snapshot.placement.mod_revision if snapshot.placement else 0
    return wire.write(wire.Leader, {"format": 1, "host": host, "placed": placed})


def _model(model: type[schema.M], kv: KeyValue | None) -> schema.M | None:
    if kv is None:
        return None
    try:
        return schema.load(model, kv.value, VALUE_LIMIT)
    except schema.OutOfShape:
        return None


def by_name(values: Mapping[str, KeyValue]) -> dict[str, int]:
    """Each key's last write, by name: what changed between two snapshots."""
    return {name: kv.mod_revision for name, kv in values.items()}
