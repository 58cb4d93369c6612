"""A host's agent, Patroni's loop: one cycle, one lease.

Every cycle renews the host's lease, reads the cluster's state in one snapshot
and hands it to the host's duty (a worker host's or an edge's, from its mode):

    renew     the lease (or a new one, when there was none): every key this host
              keeps alive is bound to it
    read      every key of the cluster, at one revision
    duty      what this host does about it: register, run or stop its singletons,
              carry out what the edges ask (a worker host); send by the
              registrations and say so (an edge)

The holder gives up what its lease guards (its singletons) by its own clock:
when the lease cannot be renewed within ``TTL - MARGIN`` of the last renewal
it sent, before etcd can let it go to anyone else (etcd's leases never end
early, only late). Calls to etcd give up at that point too, so no cycle runs
past it. A watch on the cluster's keys wakes the loop early when anything
changes; the loop does not need it to be right. systemd's watchdog
(``WatchdogSec=``) kills an agent whose loop stopped, and the singletons,
``BindsTo=`` the agent, stop with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import sdnotify

from .. import etcd
from ..context import Context
from ..host import Clock
from .keys import Keys
from .state import Snapshot, read

# Patroni's rule, scaled down: LOOP + 2 x etcd.TIMEOUT <= TTL, and the holder stops
# what its lease guards MARGIN seconds before etcd may let the lease go.
TTL = 10
LOOP = 1.0
MARGIN = 2.0
QUICKEST = 0.2
# systemd ends an agent whose loop stopped before its lease can run out.
WATCHDOG = int(TTL - MARGIN)


class Duty(Protocol):
    """What the agent does for the host its mode describes."""

    def renewed(self, lease: int) -> None:
        """A new lease: put back what this host keeps on it."""

    def cycle(self, snapshot: Snapshot, lease: int) -> str:
        """One cycle's work on ``snapshot``; what it is doing, for the unit's Status."""

    def lost(self) -> None:
        """The lease could not be renewed in time: stop everything it guards, now."""

    def stopping(self, lease: int | None) -> None:
        """The agent stops: give back what is held (``lease`` is still valid, if any)."""


@dataclass
class Lease:
    id: int
    # When the last renewal that etcd answered was sent (the monotonic clock): etcd
    # started the lease's TTL again no sooner than that.
    sent: float

    def deadline(self) -> float:
        return self.sent + TTL - MARGIN


class Agent:
    def __init__(self, client: etcd.Client, keys: Keys, duty: Duty, clock: Clock,
                 report: Callable[[str], None]) -> None:
        self.client = client
        self.keys = keys
        self.duty = duty
        self.clock = clock
        self.report = report
        self.lease: Lease | None = None
        self.status = "starting"
        self.revision = 0  # of the last snapshot read
        self.wake = threading.Event()

    def cycle(self) -> None:
        """One turn of the loop."""
        sent = self.clock.monotonic()
        self.client.deadline = self.lease.deadline() if self.lease else sent + TTL - MARGIN
        try:
            self._renew(sent)
            assert self.lease is not None
            snapshot = read(self.client, self.keys)
            self.revision = snapshot.revision
            self.status = self.duty.cycle(snapshot, self.lease.id)
        except etcd.Unavailable as exc:
            self.status = f"etcd does not answer: {exc}"
            self.report(f"warning: {self.status}")
        finally:
            self.client.deadline = None
        if self.lease is not None and self.clock.monotonic() >= self.lease.deadline():
            self._lose("the lease could not be renewed in time")

    def _renew(self, sent: float) -> None:
        if self.lease is None:
            self.lease = Lease(self.client.grant(TTL), sent)
            self.duty.renewed(self.lease.id)
            return
        if self.client.keepalive(self.lease.id) > 0:
            self.lease.sent = sent
            return
        self._lose("etcd let the lease go")
        self._renew(sent)

    def _lose(self, why: str) -> None:
        self.report(f"lost the cluster's lease ({why}): stopping what it guards")
        self.duty.lost()
        self.lease = None

    def stop(self) -> None:
        """A clean stop: what is held goes back, and so does the lease, at once."""
        lease = self.lease.id if self.lease else None
        try:
            self.duty.stopping(lease)
            if lease is not None:
                self.client.revoke(lease)
        except etcd.Unavailable as exc:
            self.report(f"warning: the lease ends by itself within {TTL}s ({exc})")
        self.lease = None

    def watch(self, stop: threading.Event) -> None:
        """Wake the loop whenever a key of the cluster changes (a thread of its own)."""
        while not stop.is_set():
            try:
                for _ in self.client.watch(self.keys.prefix, self.revision + 1):
                    self.wake.set()
                    if stop.is_set():
                        return
            except etcd.Unavailable:
                pass
            stop.wait(LOOP)

    def run(self, stop: threading.Event, tick: Callable[[str], None]) -> None:
        """Cycle until ``stop``; ``tick`` after every cycle (the watchdog's ping, with
        the status)."""
        threading.Thread(target=self.watch, args=(stop,), daemon=True,
                         name="watch").start()
        while not stop.is_set():
            started = self.clock.monotonic()
            self.wake.clear()
            self.cycle()
            tick(self.status)
            # A change wakes the loop early, but never more than a few times a second.
            stop.wait(QUICKEST)
            self.wake.wait(max(0.0, started + LOOP - self.clock.monotonic()))
        self.stop()


def serve(ctx: Context, client: etcd.Client, duty: Duty, stop: threading.Event) -> None:
    """Run ``duty`` as this host's agent under systemd (Type=notify, WatchdogSec=) until
    ``stop``."""
    notifier = sdnotify.SystemdNotifier()
    agent = Agent(client, Keys(ctx.settings.cluster), duty, ctx.clock, ctx.report)
    notifier.notify("READY=1")
    agent.run(stop, lambda status: notifier.notify(f"WATCHDOG=1\nSTATUS={status[:200]}"))
    notifier.notify("STOPPING=1")
