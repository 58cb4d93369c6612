"""An edge's part in its cluster, one cycle at a time (its agent's duty).

    presence  edges/NAME on the agent's lease: worker hosts wait for every edge
              that is alive, and for no other; with a floating address, it says
              whether this edge's interface carries it, and since when
    follow    when a registration changes, the upstream is rendered from them all
              (render, compare, rename, nginx -t, reload, as ever); a host whose lease
              ended leaves it, one that registers again joins it. A render that
              cannot be made keeps the last good upstream
    ack       acks/NAME: the newest registration revision this edge's nginx sends by,
              which a worker host waits for before its leaving workers drain
"""

from __future__ import annotations

from collections.abc import Callable

from .. import etcd, floating, wire
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
        self.held = floating.noted(ctx.files) if ctx.settings.front_addresses else None

    def renewed(self, lease: int) -> None:
        self.client.put(self.keys.edge(self.me), self.presence(), lease)

    def presence(self) -> str:
        held = self.held
        return wire.write(wire.Edge, {"format": 1, "holds": list(held.addresses) if held else [],
                                      "since": held.since if held else 0.0})

    def cycle(self, snapshot: Snapshot, lease: int) -> str:
        self.note_front(lease)
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

    def note_front(self, lease: int) -> None:
        """Whether this edge holds the floating address, said in its presence when that
        changed (an interface it cannot read: said as it was)."""
        if not self.ctx.settings.front_addresses:
            return
        try:
            held = floating.note(self.ctx, self.held)
        except DograhError as exc:
            self.ctx.report(f"the floating address is unknown here: {exc}")
            return
        if held != self.held:
            self.held = held
            self.client.put(self.keys.edge(self.me), self.presence(), lease)

    def lost(self) -> None:
        """Nothing of an edge's needs stopping: its nginx keeps the last good upstream."""

    def stopping(self, lease: int | None) -> None:
        """The presence key goes with the lease."""
