"""An etcd of pretend members for the unit tests: one key space with revisions, leases
that end on the fake clock, and the failures a real cluster has (its majority lost, one
host cut off from it), behind the same methods as dograh_systemd.etcd.Client."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dograh_systemd import etcd
from dograh_systemd.etcd import Credentials, Event, KeyValue


@dataclass
class _Key:
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


class FakeEtcd:
    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.keys: dict[str, _Key] = {}
        self.revision = 1
        self.leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, when it ends)
        self.next_lease = 7000
        self.majority = True             # False: two of three members are gone
        self.cut: set[str] = set()       # hosts that cannot reach any member
        self.calls = 0
        self.revoked: list[int] = []     # every lease a client asked to revoke, in order
        self.deadlines = False           # True: a call past its client's deadline gives up

    def client(self, host: str) -> FakeClient:
        return FakeClient(self, host)

    def expire(self) -> None:
        for lease, (_, ends) in list(self.leases.items()):
            if self.now() >= ends:
                self._revoke(lease)

    def _revoke(self, lease: int) -> None:
        self.leases.pop(lease, None)
        gone = [key for key, kv in self.keys.items() if kv.lease == lease]
        if gone:
            self.revision += 1
            for key in gone:
                del self.keys[key]

    def write(self, key: str, value: bytes, lease: int) -> int:
        if lease and lease not in self.leases:
            raise etcd.Refused("etcdserver: requested lease not found", 5)
        self.revision += 1
        found = self.keys.get(key)
        created = found.create_revision if found else self.revision
        self.keys[key] = _Key(value, created, self.revision, lease)
        return self.revision

    def value(self, key: str) -> bytes | None:
        found = self.keys.get(key)
        return found.value if found else None


class FakeClient:
    """What one host's etcd.Client does against the fake cluster."""

    def __init__(self, cluster: FakeEtcd, host: str) -> None:
        self.cluster = cluster
        self.host = host
        self.endpoints: Sequence[str] = ["https://etcd.invalid:2379"]
        self.deadline: float | None = None

    def _reach(self) -> FakeEtcd:
        cluster = self.cluster
        cluster.calls += 1
        if self.host in cluster.cut:
            raise etcd.Unavailable("no etcd member answers (timed out)")
        if not cluster.majority:
            raise etcd.Unavailable("etcdserver: request timed out")
        if cluster.deadlines and self.deadline is not None and cluster.now() >= self.deadline:
            raise etcd.Unavailable("no etcd member answers (out of time)")
        cluster.expire()
        return cluster

    def range(self, key: str, prefix: bool = False) -> tuple[list[KeyValue], int]:
        cluster = self._reach()
        names = sorted(k for k in cluster.keys if (k.startswith(key) if prefix else k == key))
        return [KeyValue(name, cluster.keys[name].value, cluster.keys[name].create_revision,
                         cluster.keys[name].mod_revision, cluster.keys[name].lease)
                for name in names], cluster.revision

    def get(self, key: str) -> KeyValue | None:
        found, _ = self.range(key)
        return found[0] if found else None

    def put(self, key: str, value: str, lease: int = 0) -> int:
        return self._reach().write(key, value.encode(), lease)

    def delete(self, key: str, prefix: bool = False) -> int:
        cluster = self._reach()
        gone = [k for k in cluster.keys if (k.startswith(key) if prefix else k == key)]
        if gone:
            cluster.revision += 1
            for name in gone:
                del cluster.keys[name]
        return cluster.revision

    def create(self, key: str, value: str, lease: int = 0) -> tuple[bool, int]:
        cluster = self._reach()
        if key in cluster.keys:
            return False, cluster.keys[key].create_revision
        return True, cluster.write(key, value.encode(), lease)

    def replace(self, key: str, value: str, mod_revision: int, lease: int = 0) -> bool:
        cluster = self._reach()
        found = cluster.keys.get(key)
        if (found.mod_revision if found else 0) != mod_revision:
            return False
        cluster.write(key, value.encode(), lease)
        return True

    def delete_if_held(self, key: str, lease: int) -> bool:
        cluster = self._reach()
        found = cluster.keys.get(key)
        if found is None or found.lease != lease:
            return False
        cluster.revision += 1
        del cluster.keys[key]
        return True

    def grant(self, ttl: int) -> int:
        cluster = self._reach()
        cluster.next_lease += 1
        cluster.leases[cluster.next_lease] = (ttl, cluster.now() + ttl)
        return cluster.next_lease

    def keepalive(self, lease: int) -> int:
        cluster = self._reach()
        if lease not in cluster.leases:
            return 0
        ttl, _ = cluster.leases[lease]
        cluster.leases[lease] = (ttl, cluster.now() + ttl)
        return ttl

    def revoke(self, lease: int) -> None:
        cluster = self._reach()
        cluster.revoked.append(lease)
        if lease not in cluster.leases:  # as etcd answers for a lease that ended
            raise etcd.Refused("etcdserver: requested lease not found", 5)
        cluster._revoke(lease)

    def watch(self, prefix: str, start_revision: int) -> Iterator[list[Event]]:
        return iter(())

    def call(self, path: str, body: dict[str, object]) -> dict[str, object]:
        self._reach()
        return {}

    def close(self) -> None:
        pass


def connect(cluster: FakeEtcd, host: str) -> Callable[[Sequence[str], Path | None,
                                                        Credentials | None], FakeClient]:
    """What a fake host's ``Host.etcd`` gives: a client of ``cluster`` as ``host``."""
    return lambda endpoints, ca, credentials: cluster.client(host)
