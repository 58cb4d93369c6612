"""An edge's agent duty, one cycle at a time: its presence on the lease (with what floating
address it holds, and since when), the upstream followed only when a registration
changed, the ack of the revision its nginx sends by, written once per change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dograh_systemd import config, paths
from dograh_systemd.cluster.edge import EdgeDuty
from dograh_systemd.cluster.keys import Keys
from dograh_systemd.cluster.state import Snapshot, read
from dograh_systemd.context import Context
from dograh_systemd.errors import DograhError
from dograh_systemd.facts import gather

from .fake_etcd import FakeEtcd
from .fake_host import CONFIG, ETCD_ENDPOINTS, FakeHost, cluster_host

KEYS = Keys("dograh")
ADDRESS = "10.0.0.100/24"
FRONT = (f"DOGRAH_FRONT_ADDRESS={ADDRESS}\nDOGRAH_FRONT_INTERFACE=eth0\n"
         "DOGRAH_FRONT_PEERS=10.0.0.20\nDOGRAH_FRONT_PRIORITY=100\n")


class Scene:
    def __init__(self, root: Path, front: bool = False, noted: dict[str, Any] | None = None
                 ) -> None:
        self.host: FakeHost = cluster_host(
            root, "10.0.0.10", f'{ETCD_ENDPOINTS}DOGRAH_HOST_NAME=edge\n'
            'DOGRAH_HOSTS="worker1=10.0.0.11 worker2=10.0.0.12"\n' + (FRONT if front else ""))
        if front:  # Debian's keepalived installed
            keepalived = self.host.files.path(paths.KEEPALIVED)
            keepalived.parent.mkdir(parents=True, exist_ok=True)
            keepalived.touch()
        if noted is not None:
            self.host.files.write_atomic(paths.FRONT_STATE, json.dumps(noted))
        self.etcd = FakeEtcd(lambda: self.host.clock.now)
        self.client = self.etcd.client("edge")
        self.said: list[str] = []
        self.followed: list[Snapshot] = []
        self.answer: str | DograhError = ""
        settings = config.load(CONFIG, files=self.host.files, machine=self.host.machine)
        ctx = Context(settings, self.said.append, self.host, gather(self.host))
        self.duty = EdgeDuty(ctx, self.client, KEYS, self.follow)
        self.lease = self.client.grant(10)
        self.duty.renewed(self.lease)

    def follow(self, snapshot: Snapshot) -> str:
        self.followed.append(snapshot)
        if isinstance(self.answer, DograhError):
            raise self.answer
        return self.answer

    def cycle(self) -> str:
        self.host.clock.now += 1
        return self.duty.cycle(read(self.client, KEYS), self.lease)

    def presence(self) -> dict[str, Any]:
        return json.loads(self.etcd.value(KEYS.edge("edge")) or b"{}")

    def ack(self) -> int:
        return json.loads(self.etcd.value(KEYS.ack("edge")) or b"{}")["revision"]


def test_an_edge_without_a_floating_address_says_it_holds_none(tmp_path: Path) -> None:
    # A note left from when the config had one is not its presence now.
    scene = Scene(tmp_path / "edge", noted={"addresses": [ADDRESS], "since": 123.0})
    assert scene.presence() == {"format": 1, "holds": [], "since": 0.0}
    assert scene.etcd.keys[KEYS.edge("edge")].lease == scene.lease


def test_an_edge_says_the_floating_address_it_noted_and_since_when(tmp_path: Path) -> None:
    scene = Scene(tmp_path / "edge", front=True, noted={"addresses": [ADDRESS], "since": 123.0})
    assert scene.presence() == {"format": 1, "holds": [ADDRESS], "since": 123.0}
    scene.host.floating.add(ADDRESS)
    written = scene.etcd.keys[KEYS.edge("edge")].mod_revision
    scene.cycle()
    scene.cycle()
    assert scene.presence()["since"] == 123.0  # still held: since when it was first seen
    assert scene.etcd.keys[KEYS.edge("edge")].mod_revision == written
    scene.host.floating.clear()
    scene.cycle()
    assert scene.presence() == {"format": 1, "holds": [], "since": scene.host.clock.now}


def test_a_registration_changed_is_followed_and_its_revision_acked_once(tmp_path: Path
                                                                         ) -> None:
    scene = Scene(tmp_path / "edge")
    assert scene.cycle() == "sends by the registrations of 0 host(s), revision 0"
    assert scene.ack() == 0
    acked = scene.etcd.keys[KEYS.ack("edge")].mod_revision
    assert scene.cycle() == "sends by the registrations of 0 host(s), revision 0"
    assert scene.etcd.keys[KEYS.ack("edge")].mod_revision == acked  # written once
    assert len(scene.followed) == 1
    revision = scene.etcd.write(KEYS.host("worker1"), b"{}", scene.lease)
    scene.answer = "the upstream sends to worker1"
    assert scene.cycle() == f"sends by the registrations of 1 host(s), revision {revision}"
    assert scene.said == ["the upstream sends to worker1"]
    assert scene.ack() == revision and len(scene.followed) == 2


def test_an_upstream_that_cannot_be_rendered_keeps_the_last_and_is_tried_again(
        tmp_path: Path) -> None:
    scene = Scene(tmp_path / "edge")
    scene.cycle()
    scene.etcd.write(KEYS.host("worker1"), b"{}", scene.lease)
    scene.answer = DograhError("nginx -t failed")
    for _ in range(2):
        assert scene.cycle() == "the upstream stays as it was: nginx -t failed"
    assert scene.ack() == 0  # nginx still sends by the registrations before
    assert len(scene.followed) == 3
    scene.answer = ""
    assert scene.cycle().startswith("sends by the registrations of 1 host(s)")
    assert scene.said == []


def test_an_interface_that_cannot_be_read_is_said_and_the_presence_kept(tmp_path: Path
                                                                       ) -> None:
    scene = Scene(tmp_path / "edge", front=True, noted={"addresses": [ADDRESS], "since": 7.0})
    scene.host.interfaces = set()  # ip address show fails
    scene.cycle()
    assert scene.said == ["the floating address is unknown here: ip address show dev eth0 "
                          'failed: Device "eth0" does not exist.']
    assert scene.presence() == {"format": 1, "holds": [ADDRESS], "since": 7.0}
