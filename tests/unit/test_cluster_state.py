"""The cluster's snapshot read as its users read it: who holds a singleton (only a
registered host on the key's own lease), whether the edges placed anew since, the
fencing token, an edge's ack; every value through its schema, none out of shape used."""

from __future__ import annotations

from dograh_systemd import wire
from dograh_systemd.cluster.state import Snapshot, leader_value
from dograh_systemd.etcd import KeyValue


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
