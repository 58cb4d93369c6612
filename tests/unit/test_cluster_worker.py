"""A worker host's agent duty, one cycle at a time, against a fake etcd and a fake host:
what it registers and when, which singletons it starts, stops or kills, when a staged
change may finish, which local step it runs for what the edges ask, and what it keeps
in agent.json across restarts. The fleet's own look (the registration's report) is the
scene: each test says what the host runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dograh_systemd import config, paths
from dograh_systemd.cluster import worker
from dograh_systemd.cluster.keys import Keys
from dograh_systemd.cluster.state import read
from dograh_systemd.cluster.worker import BUSY, REGISTER_EVERY, WorkerDuty
from dograh_systemd.context import Context
from dograh_systemd.facts import gather
from dograh_systemd.roles import Kind, of_kind

from .fake_etcd import FakeEtcd
from .fake_host import CONFIG, ETCD_ENDPOINTS, Unit, cluster_host

KEYS = Keys("dograh")
ARI, ORCHESTRATOR = (next(r for r in of_kind(Kind.SINGLETON) if r.name == name)
                     for name in ("ari-manager", "campaign-orchestrator"))
CONVERGE = paths.CONVERGE_UNIT
AT_REST = "registered as worker1; runs no singleton"


def desired(generation: int, api: int = 2, release: str | None = None, restart: int = 0
            ) -> dict[str, Any]:
    return {"format": 1, "generation": generation, "api": api, "release": release,
            "unknown_migrations": False, "restart": restart,
            "drain": {"timeout": None, "stop_at_once": False}}


class Scene:
    """worker1 with its agent's duty, one lease, and the fake etcd its edges share."""

    def __init__(self, root: Path, state: str | None = None) -> None:
        self.host = cluster_host(root, "10.0.0.11",
                                 f'{ETCD_ENDPOINTS}DOGRAH_HOST_NAME=worker1\n'
                                 'DOGRAH_EDGE="10.0.0.10"\nUVICORN_HOST=10.0.0.11\n')
        if state is not None:
            self.host.files.write_atomic(paths.AGENT_STATE, state)
        self.etcd = FakeEtcd(lambda: self.host.clock.now)
        self.client = self.etcd.client("worker1")
        self.said: list[str] = []
        self.looks = 0
        self.members: list[dict[str, Any]] = [{"port": 8000, "ready": True, "calls": 0},
                                              {"port": 8001, "ready": True, "calls": 0}]
        self.operation: dict[str, Any] | None = None
        self.release = self.previous_release = ""
        self.releases: list[dict[str, Any]] = []
        self.duty = self.new_duty()
        self.lease = 0
        self.renew()

    def new_duty(self) -> WorkerDuty:
        settings = config.load(CONFIG, files=self.host.files, machine=self.host.machine)
        ctx = Context(settings, self.said.append, self.host, gather(self.host))
        return WorkerDuty(ctx, self.client, KEYS, self.report, [ARI, ORCHESTRATOR])

    def renew(self) -> int:
        """A new lease, as the agent grants one at its start or after losing the last."""
        self.lease = self.client.grant(10)
        self.duty.renewed(self.lease)
        return self.lease

    def report(self) -> dict[str, Any]:
        """The fleet as the host's own look finds it."""
        self.looks += 1
        return {"format": 2, "version": "0.9.0", "cpus": 2, "bases": [8000],
                "members": [dict(m) for m in self.members], "singletons": [], "units": [],
                "operation": self.operation, "mismatches": [], "release": self.release,
                "previous_release": self.previous_release, "releases": self.releases}

    def cycle(self, seconds: float = 1.0) -> str:
        self.host.clock.now += seconds
        return self.duty.cycle(read(self.client, KEYS), self.lease)

    # -- what the others write ----------------------------------------------------------

    def put(self, key: str, value: object, lease: int = 0) -> int:
        return self.etcd.write(key, json.dumps(value).encode(), lease)

    def install(self, *roles: Any, text: str = "[Service]\nExecStart=/bin/true\n") -> None:
        for role in roles:
            self.host.files.write_atomic(paths.UNIT_DIR / role.unit_file, text)

    def place(self, **hosts: list[str]) -> int:
        return self.put(KEYS.placement, {"format": 1, "hosts": {
            name.replace("_", "-"): names for name, names in hosts.items()}})

    def other_host(self, name: str = "worker2") -> int:
        lease = self.client.grant(10)
        self.put(KEYS.host(name), {"format": 2}, lease)
        return lease

    def edge(self, name: str = "edge", acked: int = 0) -> None:
        lease = self.client.grant(10)
        self.put(KEYS.edge(name), {"format": 1, "holds": [], "since": 0}, lease)
        if acked:
            self.put(KEYS.ack(name), {"format": 1, "revision": acked})

    # -- what it shows --------------------------------------------------------------------

    def registered(self) -> dict[str, Any]:
        return json.loads(self.etcd.value(KEYS.host("worker1")) or b"{}")

    def state(self) -> dict[str, Any]:
        return json.loads(self.host.files.read(paths.AGENT_STATE) or "{}")

    def spawned(self) -> list[list[str]]:
        return [job[2:] for job in self.host.background]  # after --config PATH

    def converge_ends(self, active: str = "active", code: int = 0, said: str = "") -> None:
        """The step in dograh-converge ends (``active``: "failed" when it did)."""
        sub = "exited" if active == "active" else active
        self.host.units[CONVERGE] = Unit(active, sub, exit_status=code)
        self.host.journal[CONVERGE] = said
        self.host.background.clear()


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    return Scene(tmp_path / "worker1")


def mode(scene: Scene, path: Path) -> int:
    return scene.host.files.path(path).stat().st_mode & 0o777


# -- agent.json -----------------------------------------------------------------------------

def test_a_first_start_keeps_a_fresh_state_on_its_lease_and_revokes_nothing(scene: Scene
                                                                           ) -> None:
    assert scene.state() == {"generation": 0, "restarted": 0, "failed": "", "running": "",
                             "running_generation": 0, "running_restart": 0,
                             "running_finishes": False, "lease": scene.lease}
    assert mode(scene, paths.AGENT_STATE) == 0o600  # root's alone
    assert scene.etcd.revoked == []
    assert scene.cycle() == AT_REST
    assert {k: scene.registered()[k] for k in ("generation", "restarted", "failed")} == {
        "generation": 0, "restarted": 0, "failed": ""}


def test_a_restarted_agent_revokes_its_last_lease_and_keeps_what_it_carried_out(
        tmp_path: Path) -> None:
    first = Scene(tmp_path / "worker1")
    first.cycle()
    first.put(KEYS.desired("worker1"), desired(3))
    first.duty._save(generation=3, restarted=2, failed="no")  # carried out, as saved
    old = first.lease
    assert KEYS.host("worker1") in first.etcd.keys
    again = first.new_duty()  # the agent restarts: the same host, the same etcd
    said = len(first.said)
    first.duty = again
    new = first.renew()
    assert first.etcd.revoked == [old]
    assert KEYS.host("worker1") not in first.etcd.keys  # gone with the old lease, at once
    assert first.state()["lease"] == new
    assert first.said[said:] == []  # a sound state file: no warning
    first.cycle()
    assert {k: first.registered()[k] for k in ("generation", "restarted", "failed")} == {
        "generation": 3, "restarted": 2, "failed": "no"}


def test_a_last_lease_that_ended_already_is_no_error(tmp_path: Path) -> None:
    first = Scene(tmp_path / "worker1")
    first.etcd.leases.pop(first.lease)  # it ran out while the agent was down
    first.duty = first.new_duty()
    new = first.renew()
    assert first.state()["lease"] == new
    assert first.cycle() == AT_REST


SOUND = json.dumps({"generation": 4, "restarted": 0, "failed": "", "running": "",
                    "running_generation": 0, "running_restart": 0,
                    "running_finishes": False, "lease": 0})


# Past 64 KiB a file is not one the agent wrote, however it reads.
@pytest.mark.parametrize("text", ["not json", '{"generation": -1}', SOUND + " " * 70_000])
def test_a_damaged_state_file_is_said_and_the_host_starts_afresh(tmp_path: Path, text: str
                                                                 ) -> None:
    scene = Scene(tmp_path / "worker1", state=text)
    assert scene.said == [f"warning: {paths.AGENT_STATE} is damaged; starting afresh"]
    assert scene.state()["generation"] == 0 and scene.state()["lease"] == scene.lease


def test_a_state_file_near_its_limit_still_loads(tmp_path: Path) -> None:
    saved = {"generation": 4, "restarted": 0, "failed": "x" * 2000, "running": "",
             "running_generation": 0, "running_restart": 0, "running_finishes": False,
             "lease": 0}
    text = json.dumps(saved) + " " * (60_000)
    scene = Scene(tmp_path / "worker1", state=text)
    assert scene.said == []
    assert scene.state()["generation"] == 4


# -- the registration -----------------------------------------------------------------------

def test_at_rest_the_fleet_is_looked_at_every_few_seconds(scene: Scene) -> None:
    scene.cycle()
    looks = []
    for second in range(1, 11):
        before = scene.looks
        scene.cycle()
        if scene.looks > before:
            looks.append(second)
    assert looks == [5, 10]  # REGISTER_EVERY after the last look, to the second
    assert REGISTER_EVERY == 5.0


def test_a_newer_generation_asked_is_looked_at_every_cycle(scene: Scene) -> None:
    scene.cycle()
    # Another dograhctl is at work in dograh-converge: no step starts, the host waits.
    scene.host.units[CONVERGE] = Unit("active", "running")
    scene.put(KEYS.desired("worker1"), desired(1))
    before = scene.looks
    for _ in range(3):
        scene.cycle()
    assert scene.looks == before + 3
    assert scene.spawned() == []


def test_calls_alone_are_written_every_few_seconds_a_change_of_workers_at_once(
        scene: Scene) -> None:
    scene.operation = {"verb": "scale", "phase": "start", "staged": False, "busy": True}
    scene.cycle()  # busy: looked at every cycle
    first = scene.registered()
    scene.members[0]["calls"] = 3
    for _ in range(4):
        scene.cycle()
        assert scene.registered() == first  # 1-4 s after the last write
    scene.cycle()
    assert scene.registered()["members"][0]["calls"] == 3  # 5 s: written
    scene.members[1]["ready"] = False
    scene.cycle()
    assert scene.registered()["members"][1]["ready"] is False  # the shape: at once


def test_a_new_lease_is_registered_on_at_once(scene: Scene) -> None:
    scene.cycle()
    old = scene.lease
    scene.etcd.leases.pop(old)
    scene.etcd.keys.pop(KEYS.host("worker1"))
    scene.renew()
    scene.cycle()  # within REGISTER_EVERY of the last look, nothing changed
    assert scene.etcd.keys[KEYS.host("worker1")].lease == scene.lease


# -- the switch -----------------------------------------------------------------------------

STAGED = {"verb": "scale", "phase": "switch", "staged": True, "busy": False}


def test_a_staged_change_waits_for_every_live_edge_then_finishes(scene: Scene) -> None:
    scene.operation = dict(STAGED)
    scene.edge("edge")
    scene.edge("edge2")
    scene.cycle()
    revision = scene.etcd.keys[KEYS.host("worker1")].mod_revision
    assert scene.cycle() == f"{AT_REST}; a staged scale waits for edge, edge2"
    scene.put(KEYS.ack("edge"), {"format": 1, "revision": revision})
    assert scene.cycle() == f"{AT_REST}; a staged scale waits for edge2"
    scene.put(KEYS.ack("edge2"), {"format": 1, "revision": revision + 5})
    assert scene.spawned() == []
    assert scene.cycle() == f"{AT_REST}; finishing the scale"
    assert scene.said == ["every edge sends to the new workers: finishing the scale"]
    assert scene.spawned() == [["resume", "--switched"]]
    assert scene.state()["running"] == "finishing the scale"
    # While it runs, the status says so and nothing else starts.
    assert scene.cycle() == f"{AT_REST}; finishing the scale"
    assert len(scene.spawned()) == 1


def test_calls_changing_do_not_make_a_staged_change_wait_again(scene: Scene) -> None:
    scene.operation = dict(STAGED)
    scene.edge("edge")
    scene.cycle()
    revision = scene.etcd.keys[KEYS.host("worker1")].mod_revision
    scene.put(KEYS.ack("edge"), {"format": 1, "revision": revision})
    scene.operation = {**STAGED, "busy": True}  # the staging command still holds the lock
    scene.members[0]["calls"] = 4
    for _ in range(6):
        scene.cycle()
    assert scene.registered()["members"][0]["calls"] == 4  # written again since
    scene.operation = dict(STAGED)
    assert scene.cycle().endswith("; finishing the scale")


def test_after_a_new_lease_the_edges_must_ack_the_registration_on_it(scene: Scene) -> None:
    scene.operation = {**STAGED, "busy": True}
    scene.edge("edge")
    scene.cycle()
    revision = scene.etcd.keys[KEYS.host("worker1")].mod_revision
    scene.put(KEYS.ack("edge"), {"format": 1, "revision": revision})
    scene.etcd.leases.pop(scene.lease)
    scene.etcd.keys.pop(KEYS.host("worker1"))
    scene.renew()
    scene.operation = dict(STAGED)
    assert scene.cycle() == f"{AT_REST}; a staged scale waits for edge"
    assert scene.spawned() == []


@pytest.mark.parametrize("operation", [
    {**STAGED, "phase": "start"},   # not yet at its switch
    {**STAGED, "staged": False},    # a change at work, not staged
    {**STAGED, "busy": True},       # its own dograhctl is at it
])
def test_nothing_finishes_a_change_that_is_not_waiting_at_its_switch(
        scene: Scene, operation: dict[str, Any]) -> None:
    scene.operation = operation
    scene.edge("edge", acked=10_000)
    scene.put(KEYS.desired("worker1"), desired(1))
    scene.cycle()
    assert scene.cycle() == AT_REST  # neither a switch nor a step of the edges' first
    assert scene.spawned() == []


# -- converge -------------------------------------------------------------------------------

def test_what_the_edges_ask_runs_as_one_step_then_is_carried_out(scene: Scene) -> None:
    scene.put(KEYS.desired("worker1"), desired(1, api=3))
    assert scene.cycle() == f"{AT_REST}; scaling to 3 API workers"
    assert scene.spawned() == [["scale", "3"]]
    assert scene.host.descriptions[CONVERGE] == "Dograh: scaling to 3 API workers (the agent)"
    assert scene.state()["running"] == "scaling to 3 API workers"
    scene.converge_ends()
    assert scene.cycle() == AT_REST
    assert scene.state()["generation"] == 1 and scene.state()["running"] == ""
    assert scene.state()["running_finishes"] is False
    assert scene.spawned() == []
    # A new agent reads it back whole.
    scene.duty = scene.new_duty()
    assert scene.said == []
    assert scene.duty.state.generation == 1


@pytest.mark.parametrize("unit", [Unit("activating", "start"), Unit("deactivating", "stop"),
                                  Unit("active", "running")])
def test_a_step_still_at_work_is_waited_for(scene: Scene, unit: Unit) -> None:
    scene.put(KEYS.desired("worker1"), desired(1))
    scene.cycle()
    scene.host.background.clear()
    scene.host.units[CONVERGE] = unit
    for _ in range(2):
        assert scene.cycle() == f"{AT_REST}; scaling to 2 API workers"
    assert scene.spawned() == []
    assert scene.state()["generation"] == 0


def test_a_failed_step_is_registered_with_its_last_line(scene: Scene) -> None:
    scene.put(KEYS.desired("worker1"), desired(1))
    scene.cycle()
    scene.converge_ends("failed", 1, said="dograhctl: first\ndograhctl: dograh-arq failed")
    assert scene.cycle() == AT_REST
    failed = "scaling to 2 API workers failed: dograhctl: dograh-arq failed"
    assert scene.state()["failed"] == failed
    assert scene.state()["running"] == "" and scene.state()["generation"] == 1
    scene.cycle(REGISTER_EVERY)
    assert scene.registered()["failed"] == failed
    assert scene.spawned() == []  # carried out, as far as it goes: not run again


def test_a_failed_step_that_printed_nothing_says_it_failed(scene: Scene) -> None:
    scene.put(KEYS.desired("worker1"), desired(1))
    scene.cycle()
    scene.converge_ends("failed", 1, said="")
    scene.cycle()
    assert scene.state()["failed"] == "scaling to 2 API workers failed: it failed"


def test_a_failure_too_long_is_cut_to_what_the_state_file_keeps(scene: Scene) -> None:
    scene.put(KEYS.desired("worker1"), desired(1))
    scene.cycle()
    scene.converge_ends("failed", 1, said="x" * 3000)
    scene.cycle()
    assert len(scene.state()["failed"]) == 2000
    scene.duty = scene.new_duty()
    assert scene.said == []  # and it reads back


def test_a_step_that_met_another_dograhctl_runs_again(scene: Scene) -> None:
    scene.put(KEYS.desired("worker1"), desired(1))
    scene.cycle()
    scene.converge_ends("failed", BUSY)
    assert scene.cycle() == f"{AT_REST}; scaling to 2 API workers"
    assert scene.spawned() == [["scale", "2"]]
    assert scene.state()["generation"] == 0 and scene.state()["failed"] == ""


def test_a_later_success_clears_an_earlier_failure(scene: Scene) -> None:
    scene.put(KEYS.desired("worker1"), desired(1))
    scene.cycle()
    scene.converge_ends("failed", 1, said="dograhctl: no")
    scene.cycle()
    scene.put(KEYS.desired("worker1"), desired(2))
    scene.cycle()
    scene.converge_ends()
    scene.cycle()
    assert scene.state()["failed"] == "" and scene.state()["generation"] == 2


def test_a_restart_asked_is_carried_out_once(scene: Scene) -> None:
    scene.put(KEYS.desired("worker1"), desired(1, restart=1))
    assert scene.cycle().endswith("; restarting")
    assert scene.spawned()[0][0] == "restart"
    scene.converge_ends()
    # Restarted, then the generation's last step (a scale to the count asked).
    assert scene.cycle().endswith("; scaling to 2 API workers")
    assert scene.state()["restarted"] == 1 and scene.state()["generation"] == 0
    scene.converge_ends()
    assert scene.cycle() == AT_REST
    assert scene.state()["generation"] == 1 and scene.state()["restarted"] == 1


def test_a_restart_staged_and_finished_by_the_switch_is_carried_out_once(scene: Scene
                                                                         ) -> None:
    scene.edge("edge")
    scene.put(KEYS.desired("worker1"), desired(1, restart=1))
    scene.cycle()
    # The restart staged itself and ended; the edge then sends to the new workers.
    scene.converge_ends()
    scene.operation = dict(STAGED, verb="restart")
    scene.members = [{"port": 8100, "ready": True, "calls": 0},
                     {"port": 8101, "ready": True, "calls": 0}]
    scene.cycle()
    revision = scene.etcd.keys[KEYS.host("worker1")].mod_revision
    scene.put(KEYS.ack("edge"), {"format": 1, "revision": revision})
    assert scene.cycle().endswith("; finishing the restart")
    scene.operation = None
    scene.converge_ends()
    scene.cycle()
    assert scene.state()["restarted"] == 1
    assert [args[0] for args in scene.spawned()] == ["scale"]  # not restarting again


def test_a_release_not_ready_here_is_refused_and_registered(scene: Scene) -> None:
    scene.put(KEYS.desired("worker1"), desired(1, release="r9"))
    refused = "release r9 is not ready here (missing)"
    assert scene.cycle() == f"{AT_REST}; {refused}"
    assert scene.state()["failed"] == refused and scene.state()["generation"] == 1
    assert scene.spawned() == []
    assert scene.cycle(REGISTER_EVERY) == AT_REST  # carried out as far as it goes
    assert scene.registered()["failed"] == refused and scene.registered()["generation"] == 1


def test_the_release_before_is_rolled_back_to(scene: Scene) -> None:
    scene.release, scene.previous_release = "r2", "r1"
    scene.releases = [{"id": "r1", "state": "ready", "commit": ""},
                      {"id": "r2", "state": "ready", "commit": ""}]
    scene.put(KEYS.desired("worker1"), desired(1, release="r1"))
    assert scene.cycle().endswith("; rolling back to r1")
    assert scene.spawned()[0][0] == "rollback"


def test_a_release_every_host_makes_is_made_before_anything_is_asked(scene: Scene) -> None:
    scene.put(KEYS.release("r1"), {"format": 1, "source": "https://git.example/app.git",
                                   "ref": "main", "commit": "abc123", "layout": "app",
                                   "app": "main:app"})
    assert scene.cycle() == f"{AT_REST}; making release r1"
    assert scene.spawned() == [["release", "make", "https://git.example/app.git", "--ref",
                                "abc123", "--id", "r1", "--layout", "app", "--app",
                                "main:app"]]
    scene.converge_ends()
    scene.releases = [{"id": "r1", "state": "ready", "commit": "abc123"}]
    assert scene.cycle() == AT_REST
    assert scene.state()["generation"] == 0 and scene.state()["running"] == ""


# -- singletons -----------------------------------------------------------------------------

def test_the_preferred_host_takes_its_singletons_and_runs_them_with_the_token(
        scene: Scene) -> None:
    scene.install(ARI, ORCHESTRATOR)
    scene.other_host()
    scene.place(ari_manager=["worker1", "worker2"], campaign_orchestrator=["worker1"])
    assert scene.cycle() == "registered as worker1; runs ari-manager, campaign-orchestrator"
    key = scene.etcd.keys[KEYS.leader("ari-manager")]
    assert key.lease == scene.lease
    assert json.loads(key.value)["host"] == "worker1"
    assert f"ari-manager: this host holds it now (revision {key.create_revision})" \
        in scene.said
    env = scene.host.files.read(paths.LEADER_DIR / "ari-manager.env")
    assert env == f"DOGRAH_LEADER_REVISION={key.create_revision}\n"
    assert mode(scene, paths.RUN_DIR) == 0o700
    assert mode(scene, paths.LEADER_DIR / "ari-manager.env") == 0o644
    assert f"start {ARI.unit_file}" in scene.host.log
    # Held: it stays running, on the same token, without a restart.
    scene.host.tick()
    scene.host.log.clear()
    assert scene.cycle() == "registered as worker1; runs ari-manager, campaign-orchestrator"
    assert not [line for line in scene.host.log if ARI.unit_file in line]


def test_a_singleton_runs_only_where_its_unit_is_installed(scene: Scene) -> None:
    scene.install(ORCHESTRATOR)
    scene.place(ari_manager=["worker1"], campaign_orchestrator=["worker1"])
    assert scene.cycle() == "registered as worker1; runs campaign-orchestrator"
    assert KEYS.leader("ari-manager") not in scene.etcd.keys


def test_a_singleton_placed_nowhere_is_not_run(scene: Scene) -> None:
    scene.install(ARI, ORCHESTRATOR)
    scene.place(ari_manager=["worker1"])
    assert scene.cycle() == "registered as worker1; runs ari-manager"
    assert KEYS.leader("campaign-orchestrator") not in scene.etcd.keys


def test_a_new_unit_file_restarts_the_singleton_onto_it(scene: Scene) -> None:
    scene.install(ARI)
    scene.place(ari_manager=["worker1"])
    scene.cycle()
    scene.host.tick()
    scene.install(ARI, text="[Service]\nExecStart=/bin/false\n")
    scene.cycle()
    assert f"restarting {ARI.unit_file} onto its new unit file" in scene.said
    assert f"restart {ARI.unit_file}" in scene.host.log


def test_a_singleton_already_running_on_its_unit_file_is_not_restarted(scene: Scene) -> None:
    scene.install(ARI)
    scene.place(ari_manager=["worker1"])
    scene.host.running(ARI.unit_file)  # left by the agent before this one
    scene.host.log.clear()
    assert scene.cycle() == "registered as worker1; runs ari-manager"
    assert not [line for line in scene.host.log if ARI.unit_file in line]


def test_a_singleton_held_elsewhere_is_killed_here(scene: Scene) -> None:
    scene.install(ARI)
    lease = scene.other_host("worker2")
    scene.place(ari_manager=["worker1", "worker2"])
    scene.put(KEYS.leader("ari-manager"), {"format": 1, "host": "worker2", "placed": 0}, lease)
    scene.host.running(ARI.unit_file)
    assert scene.cycle() == AT_REST
    assert "ari-manager: held elsewhere, stopping it here" in scene.said
    assert scene.host.units[ARI.unit_file].active != "active"
    assert scene.etcd.keys[KEYS.leader("ari-manager")].lease == lease  # not ours to touch


def test_a_singleton_placed_anew_steps_down_then_gives_its_key_back(scene: Scene) -> None:
    scene.install(ARI)
    scene.place(ari_manager=["worker1", "worker2"])
    scene.cycle()
    scene.host.tick()
    scene.other_host("worker2")
    scene.place(ari_manager=["worker2", "worker1"])
    assert scene.cycle() == AT_REST
    assert "ari-manager: stepping down for a host preferred to this one" in scene.said
    assert scene.host.units[ARI.unit_file].active == "inactive"
    assert KEYS.leader("ari-manager") in scene.etcd.keys  # stopped first ...
    scene.cycle()
    assert KEYS.leader("ari-manager") not in scene.etcd.keys  # ... then given back


def test_a_lost_lease_kills_every_singleton_and_says_so(scene: Scene) -> None:
    scene.install(ARI)
    scene.place(ari_manager=["worker1"])
    scene.cycle()
    scene.host.tick()
    scene.duty.lost()
    assert scene.said[-1] == f"killed {ARI.unit_file}: this host lost its lease"
    assert f"kill {ARI.unit_file}" in scene.host.log


def test_a_clean_stop_stops_the_singletons_and_gives_their_keys_back(scene: Scene) -> None:
    scene.install(ARI, ORCHESTRATOR)
    scene.place(ari_manager=["worker1"], campaign_orchestrator=["worker1"])
    scene.cycle()
    scene.host.tick()
    scene.duty.stopping(scene.lease)
    assert [line for line in scene.host.log if line.startswith("stop ")] == [
        f"stop {ARI.unit_file}", f"stop {ORCHESTRATOR.unit_file}"]
    assert KEYS.leader("ari-manager") not in scene.etcd.keys
    assert KEYS.leader("campaign-orchestrator") not in scene.etcd.keys
    assert KEYS.host("worker1") in scene.etcd.keys  # the lease itself goes after


def test_a_stop_without_a_lease_touches_no_key(scene: Scene) -> None:
    scene.install(ARI)
    scene.place(ari_manager=["worker1"])
    scene.cycle()
    scene.duty.stopping(None)
    assert KEYS.leader("ari-manager") in scene.etcd.keys


def test_the_status_line_is_what_the_host_does(scene: Scene) -> None:
    assert worker.REGISTER_EVERY == REGISTER_EVERY
    assert scene.cycle() == AT_REST


def test_a_step_that_met_another_dograhctl_waits_for_the_hosts_own_change(scene: Scene
                                                                          ) -> None:
    scene.put(KEYS.desired("worker1"), desired(1))
    scene.cycle()
    scene.converge_ends("failed", BUSY)
    scene.operation = {"verb": "scale", "phase": "drain", "staged": False, "busy": True}
    assert scene.cycle() == AT_REST
    assert scene.state()["running"] == "" and scene.spawned() == []
    scene.duty = scene.new_duty()
    assert scene.said == []  # what it saved reads back


def test_a_finishing_step_that_fails_is_registered_against_its_generation(scene: Scene
                                                                          ) -> None:
    scene.edge("edge")
    scene.put(KEYS.desired("worker1"), desired(1, restart=1))
    scene.cycle()
    scene.converge_ends()
    scene.operation = dict(STAGED, verb="restart")
    scene.members = [{"port": 8100, "ready": True, "calls": 0}]
    scene.cycle()
    revision = scene.etcd.keys[KEYS.host("worker1")].mod_revision
    scene.put(KEYS.ack("edge"), {"format": 1, "revision": revision})
    assert scene.cycle().endswith("; finishing the restart")
    scene.operation = None
    scene.converge_ends("failed", 1, said="dograhctl: dograh-api@8000.service would not stop")
    scene.cycle()
    assert scene.state()["generation"] == 1
    assert scene.state()["failed"] == ("finishing the restart failed: dograhctl: "
                                       "dograh-api@8000.service would not stop")
    scene.cycle(REGISTER_EVERY)
    assert scene.registered()["generation"] == 1
