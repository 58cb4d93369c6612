"""The agent's loop on a fake clock and a fake etcd: one lease renewed every cycle, given
up by its own clock before etcd may let it go, handed back on a clean stop; the watch
that wakes the loop early; and what systemd hears (READY, the watchdog, the status)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dograh_systemd import config, etcd
from dograh_systemd.cluster import agent
from dograh_systemd.cluster.agent import LOOP, MARGIN, QUICKEST, TTL, Agent
from dograh_systemd.cluster.keys import Keys
from dograh_systemd.cluster.state import Snapshot
from dograh_systemd.context import Context
from dograh_systemd.facts import gather
from dograh_systemd.host import Clock

from .fake_etcd import FakeClient, FakeEtcd
from .fake_host import CONFIG, ETCD_ENDPOINTS, cluster_host

KEYS = Keys("dograh")


class FakeClock(Clock):
    def __init__(self) -> None:
        self.now = 5000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Duty:
    """A host's duty as the agent sees it: each hook, in order, with what it was given."""

    def __init__(self, clock: FakeClock, client: FakeClient) -> None:
        self.clock = clock
        self.client = client
        self.events: list[tuple[Any, ...]] = []
        self.takes = 0.0  # how long a cycle's work lasts (fake time)
        self.then: Callable[[], None] = lambda: None
        self.status = "at work"
        self.seen: list[str] = []  # the registered hosts of the last snapshot

    def renewed(self, lease: int) -> None:
        self.events.append(("renewed", lease))

    def cycle(self, snapshot: Snapshot, lease: int) -> str:
        self.events.append(("cycle", lease, snapshot.revision, self.client.deadline,
                            self.clock.now))
        self.seen = sorted(snapshot.hosts)
        self.clock.now += self.takes
        self.then()
        return self.status

    def lost(self) -> None:
        self.events.append(("lost",))

    def stopping(self, lease: int | None) -> None:
        self.events.append(("stopping", lease))

    def named(self, kind: str) -> list[tuple[Any, ...]]:
        return [event for event in self.events if event[0] == kind]


class Scene:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.etcd = FakeEtcd(lambda: self.clock.now)
        self.client = self.etcd.client("worker1")
        self.duty = Duty(self.clock, self.client)
        self.said: list[str] = []
        self.agent = Agent(self.client, KEYS, self.duty, self.clock, self.said.append)

    def cycle(self, seconds: float = 1.0) -> None:
        self.agent.cycle()
        self.clock.now += seconds


@pytest.fixture
def scene() -> Scene:
    return Scene()


def lost(why: str) -> str:
    return f"lost the cluster's lease ({why}): stopping what it guards"


# -- one cycle ------------------------------------------------------------------------------

def test_the_first_cycle_takes_a_lease_and_hands_the_duty_a_snapshot(scene: Scene) -> None:
    scene.etcd.write(KEYS.desired("worker1"), b"{}", 0)
    start = scene.clock.now
    scene.agent.cycle()
    lease = scene.agent.lease.id  # type: ignore[union-attr]
    assert scene.etcd.leases[lease][0] == TTL
    assert scene.duty.events == [("renewed", lease),
                                 ("cycle", lease, scene.etcd.revision, start + TTL - MARGIN,
                                  start)]
    assert scene.agent.status == "at work"
    assert scene.client.deadline is None  # no call outside a cycle is cut short


def test_every_cycle_renews_the_lease_and_calls_stop_at_the_last_renewals_deadline(
        scene: Scene) -> None:
    for _ in range(3 * TTL):
        scene.cycle()
    lease = scene.agent.lease.id  # type: ignore[union-attr]
    assert lease in scene.etcd.leases
    assert scene.duty.named("renewed") == [("renewed", lease)]
    assert scene.duty.named("lost") == []
    # The calls of a cycle give up TTL - MARGIN after the renewal sent a cycle before.
    _, _, _, deadline, at = scene.duty.named("cycle")[-1]
    assert deadline == at - 1 + TTL - MARGIN
    assert scene.said == []


def test_a_lease_etcd_let_go_is_lost_then_taken_anew_in_the_same_cycle(scene: Scene) -> None:
    scene.cycle()
    first = scene.agent.lease.id  # type: ignore[union-attr]
    scene.etcd.leases.pop(first)
    scene.cycle()
    second = scene.agent.lease.id  # type: ignore[union-attr]
    assert second != first
    assert scene.said == [lost("etcd let the lease go")]
    assert scene.duty.events[-3:-1] == [("lost",), ("renewed", second)]
    assert scene.duty.events[-1][:2] == ("cycle", second)


def test_without_etcd_the_holder_gives_up_at_its_own_deadline(scene: Scene) -> None:
    scene.cycle()
    scene.etcd.majority = False

    for second in range(1, 12):
        scene.agent.cycle()

        assert scene.agent.status == "etcd does not answer: etcdserver: request timed out"
        if second < TTL - MARGIN:
            assert scene.duty.named("lost") == [], second
        else:
            # The last renewal was sent TTL - MARGIN ago: given up, not a second later.
            assert len(scene.duty.named("lost")) == 1, second
        scene.clock.now += 1
    assert scene.said[:3] == ["warning: etcd does not answer: etcdserver: request timed out"
                              ] * 3
    assert lost("the lease could not be renewed in time") in scene.said
    # etcd answers again: a new lease, and the duty puts back what it keeps on it.
    scene.etcd.majority = True
    scene.agent.cycle()
    assert scene.duty.events[-2][0] == "renewed"


def test_a_cycle_that_runs_past_the_deadline_is_cut_short_and_gives_up(scene: Scene) -> None:
    scene.etcd.deadlines = True  # as the real client gives up at its deadline
    scene.cycle()
    scene.duty.takes = TTL  # the duty's work outlasts the lease
    scene.duty.then = lambda: scene.client.put(KEYS.host("worker1"), "{}")
    scene.agent.cycle()
    assert scene.agent.status == "etcd does not answer: no etcd member answers (out of time)"
    assert scene.duty.named("lost") == [("lost",)]
    assert scene.agent.lease is None
    assert KEYS.host("worker1") not in scene.etcd.keys


# -- a clean stop ---------------------------------------------------------------------------

def test_a_clean_stop_hands_back_what_is_held_then_the_lease(scene: Scene) -> None:
    scene.cycle()
    lease = scene.agent.lease.id  # type: ignore[union-attr]
    scene.etcd.write(KEYS.host("worker1"), b"{}", lease)
    scene.agent.stop()
    assert scene.duty.events[-1] == ("stopping", lease)
    assert scene.etcd.revoked == [lease]
    assert KEYS.host("worker1") not in scene.etcd.keys
    assert scene.said == []


def test_a_stop_before_any_lease_has_nothing_to_revoke(scene: Scene) -> None:
    scene.agent.stop()
    assert scene.duty.events == [("stopping", None)]
    assert scene.etcd.revoked == []


def test_a_stop_without_etcd_says_the_lease_ends_by_itself(scene: Scene) -> None:
    scene.cycle()
    scene.etcd.majority = False
    scene.agent.stop()
    assert scene.said == [f"warning: the lease ends by itself within {TTL}s "
                          "(etcdserver: request timed out)"]


# -- the watch ------------------------------------------------------------------------------

class Stop:
    """The stop event on the fake clock: waits in the loop pass fake time; the watch
    thread's wait lasts until the stop (as a stream that stays open would)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.real = threading.Event()
        self.waits: list[float] = []
        self.loop = threading.current_thread()

    def is_set(self) -> bool:
        return self.real.is_set()

    def set(self) -> None:
        self.real.set()

    def wait(self, seconds: float) -> bool:
        if threading.current_thread() is not self.loop:
            return self.real.wait(5)
        self.waits.append(seconds)
        self.clock.now += seconds
        return self.real.is_set()


class Wake:
    """The agent's wake event on the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.flag = False
        self.waits: list[float] = []

    def set(self) -> None:
        self.flag = True

    def clear(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        if not self.flag:
            self.clock.now += seconds
        return self.flag


class Watching(FakeClient):
    """A client whose watch streams the batches a test gives, then fails (a member gone)."""

    def __init__(self, cluster: FakeEtcd, streams: list[list[Any]], stop: Stop) -> None:
        super().__init__(cluster, "worker1")
        self.streams = streams
        self.stop = stop
        self.asked: list[tuple[str, int, str, bool]] = []

    def watch(self, prefix: str, start_revision: int) -> Iterator[list[etcd.Event]]:
        thread = threading.current_thread()
        self.asked.append((prefix, start_revision, thread.name, thread.daemon))
        if not self.streams:
            self.stop.set()
            return
        for batch in self.streams.pop(0):
            if batch == "stop":
                self.stop.set()
                continue
            yield batch
        raise etcd.Unavailable("the member went away")


def test_the_watch_wakes_the_loop_and_starts_again_after_a_failure(scene: Scene) -> None:
    stop = Stop(scene.clock)
    client = Watching(scene.etcd, [[], [[]]], stop)
    watcher = Agent(client, KEYS, scene.duty, scene.clock, scene.said.append)
    watcher.watch(stop)  # a fresh agent: from the first revision on, nothing missed
    assert [(prefix, start) for prefix, start, _, _ in client.asked] == [
        (KEYS.prefix, 1), (KEYS.prefix, 1), (KEYS.prefix, 1)]
    assert watcher.wake.is_set()
    assert stop.waits == [LOOP] * 3  # a second after each stream ends


def test_the_watch_starts_after_the_last_snapshot_and_ends_on_stop(scene: Scene) -> None:
    stop = Stop(scene.clock)
    client = Watching(scene.etcd, [[[], "stop", []]], stop)
    watcher = Agent(client, KEYS, scene.duty, scene.clock, scene.said.append)
    scene.etcd.write(KEYS.desired("worker1"), b"{}", 0)
    watcher.cycle()
    watcher.watch(stop)
    assert [start for _, start, _, _ in client.asked] == [scene.etcd.revision + 1]
    assert stop.waits == []  # it returned at the stop, with no wait


# -- the loop -------------------------------------------------------------------------------

def run_loop(scene: Scene, cycles: int, wake_on: set[int] | None = None
             ) -> tuple[list[float], list[str], Agent]:
    """Run the loop for ``cycles`` cycles; a key changes during each cycle of ``wake_on``.
    When each cycle started, and what was ticked."""
    stop = Stop(scene.clock)
    gate = threading.Event()
    client = Gated(scene.etcd, gate)
    scene.duty.client = client
    looped = Agent(client, KEYS, scene.duty, scene.clock, scene.said.append)
    looped.wake = Wake(scene.clock)  # type: ignore[assignment]
    ticks: list[str] = []
    count = [0]

    def changed() -> None:
        count[0] += 1
        if count[0] in (wake_on or set()):
            looped.wake.set()
    scene.duty.then = changed

    def tick(status: str) -> None:
        ticks.append(status)
        if len(ticks) == cycles:
            stop.set()
    looped.run(stop, tick)  # type: ignore[arg-type]
    gate.set()
    starts = [event[4] for event in scene.duty.named("cycle")]
    scene.watched = client.asked  # type: ignore[attr-defined]
    return starts, ticks, looped


class Gated(FakeClient):
    """A watch stream that stays open until the test ends."""

    def __init__(self, cluster: FakeEtcd, gate: threading.Event) -> None:
        super().__init__(cluster, "worker1")
        self.gate = gate
        self.asked: list[tuple[str, bool]] = []
        self.prefixes: list[str] = []

    def watch(self, prefix: str, start_revision: int) -> Iterator[list[etcd.Event]]:
        thread = threading.current_thread()
        self.asked.append((thread.name, thread.daemon))
        self.prefixes.append(prefix)
        self.gate.wait(5)
        return iter(())


def test_the_loop_cycles_every_second_and_ticks_each_status(scene: Scene) -> None:
    start = scene.clock.now
    starts, ticks, looped = run_loop(scene, 4)
    assert starts == [start, start + 1, start + 2, start + 3]
    assert ticks == ["at work"] * 4
    # Stopped cleanly: what was held went back, and the lease with it.
    lease = scene.duty.named("cycle")[0][1]
    assert scene.duty.events[-1] == ("stopping", lease)
    assert scene.etcd.revoked == [lease]
    assert looped.lease is None


def test_a_change_wakes_the_loop_early_but_not_sooner_than_quickest(scene: Scene) -> None:
    start = scene.clock.now
    starts, _, _ = run_loop(scene, 4, wake_on={2})
    assert starts == pytest.approx([start, start + 1, start + 1 + QUICKEST,
                                    start + 2 + QUICKEST])


def test_a_slow_cycle_is_followed_by_the_next_at_once(scene: Scene) -> None:
    scene.duty.takes = 1.5
    start = scene.clock.now
    starts, _, _ = run_loop(scene, 3)
    assert starts == pytest.approx([start, start + 1.5 + QUICKEST,
                                    start + 2 * (1.5 + QUICKEST)])


def test_the_watch_runs_in_a_thread_of_its_own_that_never_keeps_the_agent_alive(
        scene: Scene) -> None:
    run_loop(scene, 2)
    assert scene.watched[0] == ("watch", True)  # type: ignore[attr-defined]


# -- under systemd --------------------------------------------------------------------------

def test_serve_tells_systemd_it_is_ready_each_cycle_and_when_it_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = cluster_host(tmp_path / "w", "10.0.0.11",
                        f"{ETCD_ENDPOINTS}DOGRAH_HOST_NAME=worker1\nDOGRAH_EDGE=10.0.0.10\nUVICORN_HOST=10.0.0.11\n"
                        "DOGRAH_CLUSTER=east\n")
    settings = config.load(CONFIG, files=host.files, machine=host.machine)
    said: list[str] = []
    ctx = Context(settings, said.append, host, gather(host))
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    fake = FakeEtcd(lambda: host.clock.now)
    gate = threading.Event()
    client = Gated(fake, gate)
    duty = Duty(host.clock, client)  # type: ignore[arg-type]
    duty.takes = LOOP  # each cycle lasts its second: the loop never waits for real
    duty.status = "x" * 300
    stop = Stop(host.clock)  # type: ignore[arg-type]
    cycles = [0]

    def then() -> None:
        cycles[0] += 1
        fake.write("/dograh/east/hosts/worker1", b"{}", duty.events[-1][1])
        if cycles[0] == 1:
            fake.leases.clear()  # etcd lets the first lease go: the agent says so
        if cycles[0] == 2:
            stop.set()
    duty.then = then
    try:
        agent.serve(ctx, client, duty, stop)  # type: ignore[arg-type]
        gate.set()
        listener.settimeout(0)
        heard = []
        with pytest.raises(BlockingIOError):
            while True:
                heard.append(listener.recv(4096).decode())
    finally:
        listener.close()
        os.unlink(path)
    assert heard == ["READY=1", f"WATCHDOG=1\nSTATUS={'x' * 200}",
                     f"WATCHDOG=1\nSTATUS={'x' * 200}", "STOPPING=1"]
    lease = duty.named("renewed")[-1][1]
    assert duty.events[-1] == ("stopping", lease) and fake.revoked == [lease]
    assert said == [lost("etcd let the lease go")]
    assert duty.seen == ["worker1"] and client.prefixes == ["/dograh/east/"]
    assert "/dograh/east/hosts/worker1" not in fake.keys  # its cluster's keys, on its lease
