"""Where a cluster keeps its state in etcd: every key under one prefix, /dograh/CLUSTER/.

    hosts/NAME      a worker host's registration, on its agent's lease
    edges/NAME      an edge is alive, on its agent's lease
    acks/NAME       the revision an edge's nginx sends by
    leaders/ROLE    the host that runs a singleton, on that host's lease
    desired/NAME    what the edges ask of a worker host
    releases/ID     a release every host makes, pinned to one commit
    singletons      where each singleton may run, in order of preference

etcd's RBAC gives each host a user that may write its own keys only
(members.py); everything here is a pure function of names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    cluster: str

    @property
    def prefix(self) -> str:
        return f"/dograh/{self.cluster}/"

    def host(self, name: str) -> str:
        return f"{self.prefix}hosts/{name}"

    def edge(self, name: str) -> str:
        return f"{self.prefix}edges/{name}"

    def ack(self, name: str) -> str:
        return f"{self.prefix}acks/{name}"

    def leader(self, role: str) -> str:
        return f"{self.prefix}leaders/{role}"

    def desired(self, name: str) -> str:
        return f"{self.prefix}desired/{name}"

    def release(self, release_id: str) -> str:
        return f"{self.prefix}releases/{release_id}"

    @property
    def placement(self) -> str:
        return f"{self.prefix}singletons"

    def kind(self, key: str) -> tuple[str, str]:
        """``("hosts", "worker1")`` for a key of this cluster; ``("", "")`` for another."""
        if not key.startswith(self.prefix):
            return "", ""
        kind, _, name = key.removeprefix(self.prefix).partition("/")
        return (kind, name) if name or kind == "singletons" else ("", "")
