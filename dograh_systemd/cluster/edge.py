"""An edge's part in its cluster, one cycle at a time (its agent's duty).

    presence  edges/NAME on the agent's lease: worker hosts wait for every edge
              that is alive, and for no other
    follow    when a registration changes, the upstream is rendered from them all
              (render, compare, rename, nginx -t, reload, as ever); a host whose lease
              ended leaves it, one that registers again joins it. A render that
              cannot be made keeps the last good upstream
    ack       acks/NAME: the newest registration revision this edge's nginx sends by,
              which a worker host waits for before its leaving workers drain
"""

from __future__ import annotations

import json
from collections.abc import Callable

from .. import etcd, wire
from ..context import Context
from ..errors import DograhError
from .keys import Keys
from .state import Snapshot, by_name


class EdgeDuty:
    def __init__(self, ctx: Context, client: etcd.Client, keys: Keys,
                 follow: Callable[[Snapshot], str]) -> None:
        self.ctx = ctx
        self.client = client
        self.keys = keys
        self.follow = follow
        self.me = ctx.settings.host_name
        self.applied: dict[str, int] | None = None  # the registrations nginx sends by
        self.acked = -1
        self.trouble = ""

    def renewed(self, lease: int) -> None:
        self.client.put(self.keys.edge(self.me), json.dumps({"host": self.me}), lease)

    def cycle(self, snapshot: Snapshot, lease: int) -> str:
        seen = by_name(snapshot.hosts)
        if seen != self.applied:
            try:
                done = self.follow(snapshot)
            except DograhError as exc:
                self.trouble = f"the upstream stays as it was: {exc}"
                return self.trouble
            if done:
                self.ctx.report(done)
            self.applied, self.trouble = seen, ""
        revision = max(seen.values(), default=0)
        if revision != self.acked:
            self.client.put(self.keys.ack(self.me),
                            wire.write(wire.Ack, {"format": 1, "revision": revision}))
            self.acked = revision
        return f"sends by the registrations of {len(seen)} host(s), revision {revision}"

    def lost(self) -> None:
        """Nothing of an edge's needs stopping: its nginx keeps the last good upstream."""

    def stopping(self, lease: int | None) -> None:
        """The presence key goes with the lease."""
