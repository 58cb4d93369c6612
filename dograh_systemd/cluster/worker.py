"""A worker host's part in its cluster, one cycle at a time (its agent's duty).

    register   this host's registration on its lease: where the edges should send
               (its ready API workers), what it runs, what it carried out
    singletons each one it may run, by lease (election.py): started while this
               host holds the leader key, stopped before the key goes back, killed
               when the lease is lost
    switch     a change staged here (new workers READY) goes on once every live
               edge's nginx sends by the registration that lists them: the old
               workers may then drain and stop
    converge   what the edges ask of this host (desired/NAME), one local verb at a
               time (converge.py), each as the transient unit dograh-converge

Every local verb runs as a dograhctl command of its own, outside the agent: it
takes the host's lock and may drain for minutes while the agent goes on renewing
its lease.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

from .. import command_lines, etcd, paths, schema, wire
from ..context import Context
from ..host.systemd import UnitState
from ..roles import Role
from . import converge, election
from .keys import Keys
from .state import Snapshot, leader_value

# The registration is written again at least this often (its calls go stale).
REGISTER_EVERY = 5.0
# A converge step that ends this way met another dograhctl at work: it runs again.
BUSY = 75


class _State(schema.Strict):
    """What the agent carried out, kept across its restarts (agent.json)."""

    generation: wire.Serial  # type: ignore[valid-type]
    restarted: wire.Serial  # type: ignore[valid-type]
    failed: schema.constr(strict=True, max_length=2000)  # type: ignore[valid-type]
    # The step at work in dograh-converge, for the desired generation it serves.
    running: schema.constr(strict=True, max_length=200)  # type: ignore[valid-type]
    running_generation: wire.Serial  # type: ignore[valid-type]
    running_restart: wire.Serial  # type: ignore[valid-type]
    # The step is the generation's last (a scale): once it succeeded, it is carried out.
    running_finishes: bool = False
    # The agent's last lease: a new agent revokes it, so its keys go at once.
    lease: wire.Serial  # type: ignore[valid-type]


class WorkerDuty:
    def __init__(self, ctx: Context, client: etcd.Client, keys: Keys,
                 report: Callable[[], dict[str, Any]], singletons: list[Role]) -> None:
        self.ctx = ctx
        self.client = client
        self.keys = keys
        self.report = report
        self.singletons = singletons
        self.me = ctx.settings.host_name
        self.state = self._load()
        self.published = ""          # the registration as last written, and without calls
        self.published_shape = ""
        self.published_at = -REGISTER_EVERY
        self.members: list[tuple[int, bool]] = []
        self.members_revision = 0    # when the members last changed there
        self.started: dict[str, str] = {}  # singleton unit -> digest of the file it runs
        # The singletons' and the converge unit's states, read once a cycle (one
        # systemctl), forgotten for a unit this host has just started or stopped.
        self.units: dict[str, UnitState] = {}
        self.registration: dict[str, Any] | None = None
        self.record: str | None = None  # the fleet record as the registration last saw it
        self.registered_at = -REGISTER_EVERY

    # -- the agent's hooks ----------------------------------------------------------------

    def renewed(self, lease: int) -> None:
        previous = self.state.lease
        if previous and previous != lease:
            # An agent before this one: its keys go now (or had gone already).
            with contextlib.suppress(etcd.Refused):
                self.client.revoke(previous)
        self._save(lease=lease)
        self.published = self.published_shape = ""
        self.members_revision = 0

    def cycle(self, snapshot: Snapshot, lease: int) -> str:
        self.units = self.ctx.systemd.show([*(role.unit_file for role in self.singletons),
                                            paths.CONVERGE_UNIT])
        registration = self._register(lease, snapshot)
        held = self._singletons(snapshot, lease)
        waiting = self._switch(snapshot, registration)
        doing = self._converge(snapshot, registration)
        parts = [f"registered as {self.me}",
                 f"runs {', '.join(held)}" if held else "runs no singleton",
                 waiting or doing]
        return "; ".join(part for part in parts if part)

    def lost(self) -> None:
        """Every singleton this host runs is killed: another host may take it soon."""
        self.units = {}  # asked afresh: nothing may run on a state read before
        for role in self.singletons:
            if self._running(role):
                self.ctx.systemd.kill(role.unit_file)
                self.units.pop(role.unit_file, None)
                self.ctx.report(f"killed {role.unit_file}: this host lost its lease")
        self.started.clear()

    def stopping(self, lease: int | None) -> None:
        """Each singleton stops (BindsTo= has stopped them already), and its key goes
        back for the next host."""
        self.units = {}
        for role in self.singletons:
            if self._running(role):
                self.ctx.systemd.stop([role.unit_file])
                self.units.pop(role.unit_file, None)
            if lease is not None:
                self.client.delete_if_held(self.keys.leader(role.name), lease)

    # -- register -------------------------------------------------------------------------

    def _register(self, lease: int, snapshot: Snapshot) -> dict[str, Any]:
        """This host's registration, written when anything but its calls changed, and
        at least every few seconds while those change. At rest it is looked at every few
        seconds (a look is a dozen systemctl calls); while anything is at work here, or
        asked of this host, every cycle."""
        now = self.ctx.clock.monotonic()
        desired = snapshot.desired_for(self.me)
        # A command here (this agent's or the admin's) changes the fleet record first.
        record = self.ctx.files.read(paths.RECORD)
        busy = (self.registration is None or self.registration["operation"] is not None
                or bool(self.state.running) or record != self.record
                or (desired is not None and desired.generation > self.state.generation))
        if not busy and self.published and now - self.registered_at < REGISTER_EVERY:
            return self.registration  # type: ignore[return-value]
        self.registered_at, self.record = now, record
        registration = {**self.report(), "generation": self.state.generation,
                        "restarted": self.state.restarted, "failed": self.state.failed}
        self.registration = registration
        text = wire.write(wire.HostReport, registration)
        shape = wire.write(wire.HostReport, {**registration, "members": [
            {**member, "calls": 0} for member in registration["members"]]})
        if shape != self.published_shape or (
                text != self.published and now - self.published_at >= REGISTER_EVERY):
            revision = self.client.put(self.keys.host(self.me), text, lease)
            members = [(m["port"], m["ready"]) for m in registration["members"]]
            if members != self.members or not self.members_revision:
                self.members, self.members_revision = members, revision
            self.published, self.published_shape, self.published_at = text, shape, now
        return registration

    # -- singletons -----------------------------------------------------------------------

    def _singletons(self, snapshot: Snapshot, lease: int) -> list[str]:
        """Each singleton one step on; the ones this host runs."""
        preferences = snapshot.preferences()
        alive = set(snapshot.hosts) | {self.me}
        held = []
        for role in self.singletons:
            key = self.keys.leader(role.name)
            leader = snapshot.leaders.get(role.name)
            holder = snapshot.holder(role.name)
            if leader is not None and leader.lease == lease:
                holder = self.me
            elif holder == self.me:
                holder = ""  # a key of an earlier lease of this host's: on its way out
            # Only a host that has the singleton's unit may hold it (its first scale
            # installs it).
            eligible = preferences.get(role.name, []) \
                if self.ctx.files.exists(paths.UNIT_DIR / role.unit_file) else []
            match election.move(self.me, eligible, alive, holder,
                                snapshot.placed_anew(role.name)):
                case election.Move.HOLD:
                    self._run(role, snapshot.fencing_token(role.name))
                    held.append(role.name)
                case election.Move.CAMPAIGN:
                    won, revision = self.client.create(key, leader_value(self.me, snapshot),
                                                       lease)
                    if won:
                        self.ctx.report(f"{role.name}: this host holds it now (revision "
                                        f"{revision})")
                        self._run(role, revision)
                        held.append(role.name)
                case election.Move.STEP_DOWN:
                    # Stopped first; only then may another host start it.
                    if self._running(role):
                        self.ctx.report(f"{role.name}: stepping down for a host preferred "
                                        "to this one")
                        self.ctx.systemd.stop_no_block([role.unit_file])
                        self.units.pop(role.unit_file, None)
                    else:
                        self.started.pop(role.unit_file, None)
                        self.client.delete_if_held(key, lease)
                case election.Move.STAY_DOWN:
                    if self._running(role):
                        self.ctx.report(f"{role.name}: held elsewhere, stopping it here")
                        self.ctx.systemd.kill(role.unit_file)
                        self.units.pop(role.unit_file, None)
                    self.started.pop(role.unit_file, None)
        return held

    def _run(self, role: Role, token: int) -> None:
        """``role``'s unit running with the fencing token, on its newest unit file."""
        unit = role.unit_file
        digest = hashlib.sha256((self.ctx.files.read(paths.UNIT_DIR / unit) or "").encode()
                                ).hexdigest()
        env = paths.LEADER_DIR / f"{role.name}.env"
        text = f"DOGRAH_LEADER_REVISION={token}\n"
        if self.ctx.files.read(env) != text:
            # Beside the lock, in the directory only root may enter.
            self.ctx.files.make_directory(paths.RUN_DIR, mode=0o700)
            self.ctx.files.write_atomic(env, text, mode=0o644)
        if not self._running(role):
            self.ctx.systemd.start_no_block([unit])
            self.units.pop(unit, None)
        elif self.started.get(unit, digest) != digest:
            self.ctx.report(f"restarting {unit} onto its new unit file")
            self.ctx.systemd.restart_no_block(unit)
            self.units.pop(unit, None)
        self.started[unit] = digest

    def _running(self, role: Role) -> bool:
        return self._state(role.unit_file).running

    def _state(self, unit: str) -> UnitState:
        if unit not in self.units:
            self.units.update(self.ctx.systemd.show([unit]))
        return self.units[unit]

    # -- the switch ----------------------------------------------------------------------

    def _switch(self, snapshot: Snapshot, registration: dict[str, Any]) -> str:
        """A staged change goes on once every live edge sends by its new workers."""
        op = registration["operation"]
        if not op or not op["staged"] or op["phase"] != "switch" or op["busy"]:
            return ""
        behind = [edge for edge in snapshot.live_edges()
                  if snapshot.acked(edge) < self.members_revision]
        if behind or self.members_revision == 0:
            return f"a staged {op['verb']} waits for {', '.join(behind) or 'its registration'}"
        if self._converging():
            return ""
        self.ctx.report(f"every edge sends to the new workers: finishing the {op['verb']}")
        self._spawn(command_lines.resume(switched=True), f"finishing the {op['verb']}",
                    self.state.running_generation, self.state.running_restart)
        return f"finishing the {op['verb']}"

    # -- converge -------------------------------------------------------------------------

    def _converge(self, snapshot: Snapshot, registration: dict[str, Any]) -> str:
        if self._converging():
            return self.state.running
        self._take_outcome()
        if registration["operation"]:
            return ""  # a change of this host's own at work or staged: it goes first
        local = converge.Local(
            api=sum(1 for _ in registration["members"]), release=registration["release"],
            previous_release=registration["previous_release"],
            releases={r["id"]: r["state"] for r in registration["releases"]},
            restarted=self.state.restarted)
        desired = snapshot.desired_for(self.me)
        step = converge.next_step(desired, self.state.generation, local, snapshot.builds())
        if step is None:
            if desired is not None and desired.generation > self.state.generation:
                self._save(generation=desired.generation, failed="")
            return ""
        assert desired is not None or step.args[:2] == ["release", "make"]
        generation = desired.generation if desired else self.state.generation
        if step.refused:
            self._save(generation=generation, failed=step.refused)
            return step.refused
        self._spawn(step.args, step.doing, generation, step.restart, step.finishes)
        return step.doing

    def _spawn(self, args: list[str], doing: str, generation: int, restart: int,
               finishes: bool = False) -> None:
        self.ctx.systemd.run_detached(paths.CONVERGE_UNIT, f"Dograh: {doing} (the agent)",
                                      command_lines.here(self.ctx.settings.config_path, args))
        self.units.pop(paths.CONVERGE_UNIT, None)
        self._save(running=doing, running_generation=generation, running_restart=restart,
                   running_finishes=finishes)

    def _converging(self) -> bool:
        state = self._state(paths.CONVERGE_UNIT)
        return state.active in ("activating", "deactivating") or (
            state.active == "active" and state.sub != "exited")

    def _take_outcome(self) -> None:
        """What the last step came to, once it has ended."""
        if not self.state.running:
            return
        state = self.ctx.systemd.show([paths.CONVERGE_UNIT])[paths.CONVERGE_UNIT]
        if state.active == "failed" and state.exit_status != BUSY:
            why = self.ctx.systemd.journal_tail(paths.CONVERGE_UNIT, 1, own=True) or "it failed"
            self._save(generation=self.state.running_generation, running="",
                       failed=f"{self.state.running} failed: {why}"[:2000])
            return
        if state.active == "failed":
            self._save(running="")  # busy: the next cycle runs it again
            return
        changes: dict[str, Any] = {"running": "", "running_finishes": False}
        if self.state.running_restart:
            changes["restarted"] = self.state.running_restart
        if self.state.running_finishes:
            changes.update(generation=self.state.running_generation, failed="")
        self._save(**changes)

    # -- the state file -------------------------------------------------------------------

    def _load(self) -> _State:
        text = self.ctx.files.read(paths.AGENT_STATE)
        empty = _State(generation=0, restarted=0, failed="", running="",
                       running_generation=0, running_restart=0, running_finishes=False, lease=0)
        if text is None:
            return empty
        try:
            return schema.load(_State, text, 1 << 16)
        except schema.OutOfShape:
            self.ctx.report(f"warning: {paths.AGENT_STATE} is damaged; starting afresh")
            return empty

    def _save(self, **changes: Any) -> None:
        self.state = self.state.copy(update=changes)
        self.ctx.files.write_atomic(paths.AGENT_STATE, schema.dumps(self.state.dict()),
                                    mode=0o600)

