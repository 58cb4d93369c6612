"""The cluster's snapshot read as its users read it: who holds a singleton (only a
registered host on the key's own lease), whether the edges placed anew since, the
fencing token, an edge's ack; every value through its schema, none out of shape used."""

from __future__ import annotations

import json

from dograh_systemd import wire
from dograh_systemd.cluster.keys import Keys
from dograh_systemd.cluster.state import VALUE_LIMIT, Snapshot, leader_value, read
from dograh_systemd.etcd import KeyValue

from .fake_etcd import FakeEtcd


def kv(value: str, lease: int = 0, created: int = 5, modified: int = 5) -> KeyValue:
    return KeyValue("/k", value.encode(), created, modified, lease)


def snapshot(**keys: object) -> Snapshot:
    return Snapshot(revision=50, **keys)  # type: ignore[arg-type]


PLACEMENT = kv('{"format": 1, "hosts": {"ari-manager": ["w1"]}}', modified=30)


def test_a_leader_key_is_written_through_its_schema_and_read_back() -> None:
    value = leader_value("w1", snapshot(placement=PLACEMENT))
    assert wire.write(wire.Leader, {"format": 1, "host": "w1", "placed": 30}) == value
    held = snapshot(hosts={"w1": kv("{}", lease=7)}, leaders={"ari-manager": kv(value, 7)},
                    placement=PLACEMENT)
    assert held.holder("ari-manager") == "w1"
    assert not held.placed_anew("ari-manager")
    assert leader_value("w1", snapshot()) == wire.write(
        wire.Leader, {"format": 1, "host": "w1", "placed": 0})


def test_a_leader_key_is_nobodys_unless_its_host_is_registered_on_its_lease() -> None:
    value = leader_value("w1", snapshot())
    hosts = {"w1": kv("{}", lease=7), "w2": kv("{}", lease=8)}
    assert snapshot(hosts=hosts).holder("ari-manager") is None  # no key at all
    for leader in (kv(value, lease=8),                       # on w2's lease, naming w1
                   kv(value, lease=9),                       # on a lease nobody registered
                   kv('{"format": 1, "host": "W1", "placed": 0}', lease=7),  # out of shape
                   kv('{"host": "w1", "placed": 0}', lease=7),
                   kv("not json", lease=7)):
        assert snapshot(hosts=hosts, leaders={"ari-manager": leader}
                        ).holder("ari-manager") == "", leader
    assert snapshot(leaders={"ari-manager": kv(value, 7)}).holder("ari-manager") == ""


def test_a_placement_newer_than_the_leaders_asks_it_to_give_the_key_up() -> None:
    older = leader_value("w1", snapshot(placement=kv("{}", modified=29)))
    assert snapshot(leaders={"ari-manager": kv(older, 7)}, placement=PLACEMENT
                    ).placed_anew("ari-manager")
    unreadable = kv("[]", 7)  # a value out of shape took the key under no placement
    assert snapshot(leaders={"ari-manager": unreadable}, placement=PLACEMENT
                    ).placed_anew("ari-manager")
    assert not snapshot(leaders={"ari-manager": kv(older, 7)}).placed_anew("ari-manager")
    assert not snapshot(placement=PLACEMENT).placed_anew("ari-manager")


def test_the_fencing_token_is_the_leader_keys_create_revision() -> None:
    assert snapshot(leaders={"ari-manager": kv("{}", created=41, modified=44)}
                    ).fencing_token("ari-manager") == 41
    assert snapshot().fencing_token("ari-manager") == 0


def test_an_edges_ack_is_its_revision_or_none_said() -> None:
    assert snapshot(acks={"e1": kv('{"format": 1, "revision": 12}')}).acked("e1") == 12
    assert snapshot(acks={"e1": kv('{"format": 1, "revision": -1}')}).acked("e1") == 0
    assert snapshot().acked("e1") == 0


def test_a_snapshot_keeps_each_kind_and_leaves_out_what_is_not_ours() -> None:
    keys = Keys("dograh")
    store = FakeEtcd(lambda: 0.0)
    store.write(keys.host("w1"), b"{}", 0)
    store.write(keys.edge("e1"), b"{}", 0)
    store.write(keys.leader("ari-manager"), b"x" * VALUE_LIMIT, 0)  # at the limit: kept
    store.write(keys.desired("w1"), b"x" * (VALUE_LIMIT + 1), 0)   # past it: not ours
    store.write(f"{keys.prefix}later/w1", b"{}", 0)  # a kind of a later version
    store.write(keys.placement, PLACEMENT.value, 0)
    store.write("/dograh/other/hosts/w2", b"{}", 0)
    found = read(store.client("w1"), keys)
    assert found.revision == store.revision
    assert list(found.hosts) == ["w1"] and list(found.edges) == ["e1"]
    assert list(found.leaders) == ["ari-manager"] and found.desired == {}
    assert found.placement is not None and found.placement.value == PLACEMENT.value


REPORT = {"format": 2, "version": "0.9.0", "cpus": 2, "bases": [8000],
          "members": [{"port": 8000, "ready": True, "calls": 1}], "singletons": ["ari-manager"],
          "units": [], "operation": None, "mismatches": [], "release": "",
          "previous_release": "", "releases": [], "generation": 0, "restarted": 0,
          "failed": ""}


def test_each_host_of_the_roster_by_its_registration_or_its_trouble() -> None:
    found = snapshot(hosts={"w1": kv(json.dumps(REPORT)),
                            "w2": kv(json.dumps({**REPORT, "cpus": 0})),
                            "w4": kv(json.dumps({**REPORT, "singletons": ["ui"]})),
                            "w9": kv(json.dumps(REPORT))})
    reports, trouble = found.registrations(["w3", "w1", "w2", "w4"], ["ari-manager"])
    assert list(reports) == ["w1"]  # w9 is no host of the roster
    assert reports["w1"].members[0].calls == 1
    assert trouble["w3"] == wire.Trouble("is not registered (its agent's lease ended, or it "
                                         "never started)", answers=False)
    assert trouble["w2"].answers is True
    assert trouble["w2"].why.startswith("registers out of shape (") and "cpus" in \
        trouble["w2"].why
    assert trouble["w4"] == wire.Trouble("registers out of shape (singletons: ui is not a "
                                         "singleton)", answers=True)
    assert sorted(trouble) == ["w2", "w3", "w4"]


def test_the_front_is_each_live_edges_presence_that_reads() -> None:
    held = kv('{"format": 1, "holds": ["10.0.0.100/24"], "since": 12.5}')
    found = snapshot(edges={"e2": held, "e1": kv('{"format": 1, "holds": [], "since": 0}'),
                            "e3": kv("[]")})
    front = found.front()
    assert list(front) == ["e1", "e2"]
    assert front["e2"] == wire.Edge(format=1, holds=["10.0.0.100/24"], since=12.5)
    assert found.live_edges() == ["e1", "e2", "e3"]  # alive, though unreadable
