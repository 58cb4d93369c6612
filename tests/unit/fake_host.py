"""A complete fake of the host seam (dograh_systemd.host): systemd, nginx, files, ports,
memory, /proc, the lock, ssh and the clock, so that every verb runs in unit tests
without root, without real ports, and without monkeypatching.

It keeps unit states the way systemd reports them and serves the real
``Systemd`` parser its ``show`` output; files live under a test directory
(the real ``Files`` over another root); nginx reloads read the upstream file
dograhctl wrote. Every change is logged in order, so tests assert the order
of operations, and any logged step can be a SIGKILL (``kill_at``): from then
on nothing more happens, as for a killed process. Two rules are checked as
they happen: nginx never sends to a worker that is not READY, and no API
worker stops while nginx still sends to it.

Several fake hosts make a cluster on one fake etcd (fake_etcd.py), each with its
agent, which goes round whenever a command sleeps.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dograh_systemd import cli, config, modes, paths
from dograh_systemd.cluster.agent import Agent
from dograh_systemd.cluster.keys import Keys
from dograh_systemd.context import Context
from dograh_systemd.etcd import Client, Credentials
from dograh_systemd.facts import gather
from dograh_systemd.host import Clock, Host
from dograh_systemd.host.commands import Completed, run_here
from dograh_systemd.host.files import Files
from dograh_systemd.host.machine import Machine, NginxWorker
from dograh_systemd.roles import Kind, of_kind
from dograh_systemd.worker import contract
from dograh_systemd.worker.contract import Load

from .fake_etcd import FakeEtcd, connect

CONFIG = Path("/etc/dograh/dograh.env")
REPO = Path(__file__).resolve().parents[2]
GB = 1 << 30
SINGLETON_UNITS = {role.unit_file for role in of_kind(Kind.SINGLETON)}


class Killed(BaseException):
    """The command was killed here (SIGKILL): nothing after this point runs."""


@dataclass
class Unit:
    active: str = "inactive"
    sub: str = "dead"
    enabled: bool = False
    since: float = 0.0
    pid: int = 0
    restarts: int = 0
    load: Load = field(default_factory=lambda: Load(websockets=0, requests=0))
    # Where its process runs from: its unit file's WorkingDirectory= when it started.
    cwd: Path | None = None
    exited: float = 0.0  # when its main process last ended (a oneshot's, a deploy's)
    published: bool = True  # it has written its Status line (a worker just started has not)
    exit_status: int = 0


class FakeClock(Clock):
    def __init__(self, host: FakeHost) -> None:
        self.hosts = [host]
        self.now = 1_700_000_000.0
        # What else goes on while a command sleeps (a cluster's agents), or nothing.
        self.meanwhile: Callable[[], None] = lambda: None

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for host in self.hosts:
            host.tick()
        self.meanwhile()


class FakeFiles(Files):
    """The real file code under a test directory; every write is a step of the log."""

    def __init__(self, root: Path, host: FakeHost) -> None:
        super().__init__(root, owner=os.getuid(), chown=False)
        self.host = host

    def write_atomic(self, path: Path, text: str, mode: int = 0o644,
                     group: str | None = None) -> None:
        self.host.event(f"write {path}")
        self.host.writes.append((path, text))
        self.host.groups[path] = group
        super().write_atomic(path, text, mode, group)

    def unlink(self, path: Path) -> None:
        if self.path(path).exists() or self.path(path).is_symlink():
            self.host.event(f"remove {path}")
        super().unlink(path)

    def link(self, link: Path, target: Path) -> None:
        self.host.event(f"link {link}")
        super().link(link, target)


@dataclass
class NginxProcess:
    pid: int
    accepting: bool
    started: float
    connections: int = 0


class FakeMachine(Machine):
    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self.busy_ports: set[tuple[str, int]] = set()
        self.memory = 16 * GB
        self.cpu_count = 2
        self.root = True
        self.unreachable: set[tuple[str, int]] = set()
        self.answers: dict[str, tuple[int, bytes]] = {}  # url -> (status, body)

    def is_root(self) -> bool:
        return self.root

    def port_in_use(self, address: str, port: int) -> bool:
        return (address, port) in self.busy_ports

    def mem_available(self) -> int:
        return self.memory

    def cpus(self) -> int:
        return self.cpu_count

    def ephemeral_ports(self) -> tuple[int, int] | None:
        return (32768, 60999)

    def rss(self, pid: int) -> int | None:
        return None

    def cwd(self, pid: int) -> Path | None:
        return next((unit.cwd for unit in self.host.units.values() if unit.pid == pid), None)

    def open_file_limits(self, pid: int) -> tuple[int, int] | None:
        return (20_000, 20_000) if pid else None

    def nginx_master(self) -> int | None:
        return 1 if self.host.nginx_running else None

    def nginx_workers(self) -> list[NginxWorker]:
        return [NginxWorker(p.pid, p.accepting, p.started, 20_000, p.connections)
                for p in self.host.nginx_processes]

    def reachable(self, address: str, port: int, timeout: float = 3) -> str | None:
        return "Connection refused" if (address, port) in self.unreachable else None

    def http_get(self, url: str, headers: dict[str, str], timeout: float = 5
                 ) -> tuple[int, bytes]:
        if url not in self.answers:
            raise OSError("Connection refused")
        return self.answers[url]


class FakeHost(Host):
    """One pretend machine; ``root`` is the directory its files live under."""

    def __init__(self, root: Path, address: str = "127.0.0.1") -> None:
        self.units: dict[str, Unit] = {}
        self.log: list[str] = []
        self.writes: list[tuple[Path, str]] = []  # every file written, in order
        self.groups: dict[Path, str | None] = {}  # the group each file was last written for
        self.violations: list[str] = []
        self.failing: set[str] = set()       # units that fail to start
        self.hanging: set[str] = set()       # units that never finish starting
        self.ending: dict[str, float] = {}   # unit -> when its calls end (fake time)
        self.later: list[tuple[float, Callable[[], None]]] = []  # see after()
        self.kill_at: Callable[[str], bool] = lambda event: False
        self.dead = False
        self.upstream: set[tuple[str, int]] = set()  # where nginx sends, as last reloaded
        self.nginx_running = True
        self.nginx_processes: list[NginxProcess] = []
        self.nginx_tests_fail = False
        self.nft_table = False
        self.background: list[list[str]] = []  # dograhctl commands run as transient units
        self.transient: list[str] = []           # ... and the units they run in
        self.descriptions: dict[str, str] = {}   # what systemctl status says each one is
        self.ran: list[list[str]] = []           # every one of them run so far
        self.stdin: list[str | None] = []        # what each program was given to read
        self.timeouts: list[tuple[str, float | None]] = []  # each program, and its seconds
        self.journal: dict[str, str] = {}        # a unit's last line in the journal
        self.etcd_client: Callable[..., object] | None = None
        self.floating: set[str] = set()          # floating address/prefix on its interface
        self.keepalived_refuses = ""             # what keepalived -t says of any config
        self.keepalived_status = 0               # its exit status for a config it takes
        self.keepalived_checked: list[int] = []  # the mode of each file keepalived -t read
        self.interfaces = {"eth0"}               # the network interfaces it has
        self.address = address
        self.cluster: FakeCluster | None = None
        self.commands: dict[str, Callable[[list[str]], Completed]] = {}
        self.next_pid = 100
        clock = FakeClock(self)
        super().__init__(self.run_command, FakeFiles(root, self), FakeMachine(self), clock)
        self.clock: FakeClock = clock
        self.machine: FakeMachine
        self._reload_nginx_processes()

    # -- setting the scene -------------------------------------------------------------

    def configure(self, text: str) -> Path:
        """The env file dograhctl reads at its default place on this host."""
        path = self.files.path(CONFIG)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def after(self, seconds: float, change: Callable[[], None]) -> None:
        """``change`` the scene ``seconds`` from now (fake time), before units move."""
        self.later.append((self.clock.now + seconds, change))

    def running(self, *names: str, calls: int = 0) -> None:
        for name in names:
            self.units[name] = Unit("active", "running", True, self.clock.now - 3600,
                                    self._pid(), 0, Load(websockets=calls, requests=0))

    def active(self) -> list[str]:
        return sorted(n for n, u in self.units.items() if u.active == "active")

    def enabled(self) -> list[str]:
        return sorted(n for n, u in self.units.items() if u.enabled)

    def dograhctl(self, *args: str) -> tuple[int, str, str]:
        """The real CLI on this host: (exit code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.run(list(args), host=self)
                code = 0
            except SystemExit as exit_:
                code = int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
        return code, out.getvalue(), err.getvalue()

    def run_background(self) -> list[tuple[int, str, str]]:
        """What was started as transient units, run now, in order; each unit then ends
        as its command did."""
        jobs, self.background = self.background, []
        units, self.transient = self.transient, []
        done = []
        self.ran += jobs
        for job, unit in zip(jobs, units, strict=True):
            code, out, err = self.dograhctl(*job)
            self.units[unit] = Unit("active", "exited", exit_status=code) if code == 0 \
                else Unit("failed", "failed", exit_status=code)
            self.journal[unit] = (err.strip().splitlines() or [""])[-1]
            done.append((code, out, err))
        return done

    # -- the log, and SIGKILL -----------------------------------------------------------

    def event(self, text: str) -> None:
        if self.dead:
            raise Killed(text)
        self.log.append(text)
        if self.kill_at(text):
            self.dead = True
            raise Killed(text)

    def revive(self) -> None:
        """The next command starts: nothing is killed any more."""
        self.dead = False
        self.kill_at = lambda event: False

    # -- the runner: every program dograhctl starts -------------------------------------

    def etcd(self, endpoints: Sequence[str], ca: Path | None,
             credentials: Credentials | None) -> Client:
        assert self.etcd_client is not None, "etcd from a host outside a cluster"
        return self.etcd_client(endpoints, ca, credentials)  # type: ignore[no-any-return]

    def run_command(self, argv: Sequence[str], timeout: float | None = None,
                    input: str | None = None) -> Completed:
        argv = list(argv)
        self.stdin.append(input)
        self.timeouts.append((argv[0], timeout))
        program, args = argv[0], argv[1:]
        if program == "systemctl":
            return self._systemctl(args)
        if program == "journalctl":
            unit = args[args.index("-u") + 1] if "-u" in args else ""
            said = self.journal.get(unit, "app: database unreachable")
            if "json" in args:  # what the unit printed, then systemd's word on its end
                # One entry a line the unit printed.
                printed = "".join(json.dumps({"MESSAGE": line, "_TRANSPORT": "stdout"}) + "\n"
                                  for line in said.split("\n"))
                return Completed(0, printed + json.dumps({"MESSAGE": f"{unit}: Failed with "
                                                          "result 'exit-code'.",
                                                          "_TRANSPORT": "journal"}) + "\n", "")
            if unit == paths.CONVERGE_UNIT:  # systemd has the last word on a transient unit
                said += f"\n{unit}: Failed with result 'exit-code'."
            return Completed(0, said + "\n", "")
        if program == "systemd-run":
            return self._systemd_run(args)
        if program == "nginx":
            if args[:1] == ["-v"]:
                return Completed(0, "", "nginx version: nginx/1.22.1\n")
            if self.nginx_tests_fail:
                return Completed(1, "", "nginx: [emerg] unknown directive \"bogus\"\n")
            return Completed(0, "", "")
        if program == "nft":
            return self._nft(args)
        if program == "ip" and args[:3] == ["-json", "address", "show"]:
            return self._addresses(args[-1])
        if program == str(paths.KEEPALIVED):
            return self._keepalived_test(args)
        if program in self.commands:
            return self.commands[program](args)
        # On the tests' own directories, for real; this interpreter stands for the host's.
        if program in ("git", "hardlink", sys.executable):
            return run_here(argv, timeout)
        if program in ("dpkg-query", "certbot", "openssl"):
            return Completed(1, "", f"{program}: nothing of it here")
        raise AssertionError(f"unexpected command {argv}")

    def _systemd_run(self, args: list[str]) -> Completed:
        if "--pipe" in args:
            return self._run_as_a_service(args)
        unit = next((a.split("=", 1)[1] for a in args if a.startswith("--unit=")), "")
        self.event(f"systemd-run --unit={unit}")
        self.descriptions[unit] = next((a.split("=", 1)[1] for a in args
                                        if a.startswith("--description=")), "")
        if unit in (paths.DEPLOY_UNIT, paths.CONVERGE_UNIT):
            command = args[args.index("--") + 1:]
            config = command.index("--config")
            self.background.append(["--config", command[config + 1], *command[config + 2:]])
            self.units[unit] = Unit("active", "running")
            self.transient.append(unit)
        return Completed(0, "", "")

    def _run_as_a_service(self, args: list[str]) -> Completed:
        """``systemd-run --pipe ... -- ARGV`` (a build, a check) run for real, in its
        WorkingDirectory and Environment under this host's root; the runtime the units
        import comes from this checkout."""
        def here(text: str) -> str:
            return (text.replace(str(paths.RUNTIME_PATH), str(REPO))
                    .replace(str(paths.STATE_DIR), str(self.files.path(paths.STATE_DIR))))

        argv = [here(arg) for arg in args[args.index("--") + 1:]]
        properties = [a.removeprefix("--property=") for a in args[:args.index("--")]
                      if a.startswith("--property=")]
        cwd = next((here(p.split("=", 1)[1]) for p in properties
                    if p.startswith("WorkingDirectory=")), None)
        # As the package's own /usr/bin/python3 would find it (the layout's build).
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}
        for prop in properties:
            if prop.startswith("Environment="):
                env.update(pair.split("=", 1) for pair in
                           shlex.split(here(prop.removeprefix("Environment="))))
        if cwd and not Path(cwd).is_dir():
            return Completed(200, "", f"Failed to set up working directory {cwd}\n")
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        return Completed(result.returncode, result.stdout, result.stderr)

    def _addresses(self, interface: str) -> Completed:
        if interface not in self.interfaces:  # as ip says it
            return Completed(1, "", f'Device "{interface}" does not exist.\n')
        own = [f"{self.address}/24", *sorted(self.floating)]
        info = [{"family": "inet6" if ":" in a else "inet", "local": a.split("/")[0],
                 "prefixlen": int(a.split("/")[1])} for a in own]
        return Completed(0, json.dumps([{"ifname": interface, "addr_info": info}]), "")

    def _keepalived_test(self, args: list[str]) -> Completed:
        assert args[:2] == ["-t", "-f"], args
        self.event(f"keepalived -t {args[2]}")
        if not self.files.exists(Path(args[2])):
            return Completed(0, "", f"Config files missing '{args[2]}'.\n")
        self.keepalived_checked.append(
            stat.S_IMODE(self.files.path(Path(args[2])).stat().st_mode))
        if self.keepalived_refuses:
            return Completed(self.keepalived_status or 5, "", f"{self.keepalived_refuses}\n")
        return Completed(self.keepalived_status, "", "")

    def _nft(self, args: list[str]) -> Completed:
        if args[:2] == ["list", "table"]:
            return Completed(0 if self.nft_table else 1, "", "")
        self.event("nft " + " ".join(args))
        return Completed(0, "", "")

    def _systemctl(self, args: list[str]) -> Completed:
        verb = args[0]
        names = [a for a in args[1:] if not a.startswith("-")]
        if verb == "--version":
            return Completed(0, "systemd 252 (252.30-1~deb12u2)\n", "")
        if verb == "show":
            if "--value" in args:  # show --property=Wants --value dograh.target
                wants = sorted(n for n, u in self.units.items() if u.enabled)
                return Completed(0, " ".join(wants) + "\n", "")
            return Completed(0, "\n\n".join(self._show(n) for n in names) + "\n", "")
        if verb == "list-units":
            pattern = re.compile(names[0].replace("*", ".*"))
            listed = [n for n, u in self.units.items()
                      if pattern.fullmatch(n) and u.active != "inactive"]
            return Completed(0, "".join(f"{n} loaded {self.units[n].active} x\n"
                                        for n in sorted(listed)), "")
        if verb == "is-active":
            if names == ["nginx.service"]:
                return Completed(0 if self.nginx_running else 3, "", "")
            unit = self.units.get(names[0], Unit())
            return Completed(0 if unit.active == "active" else 3, "", "")
        if verb == "is-enabled":
            return Completed(0, "enabled\n", "")
        if verb in ("daemon-reload", "reset-failed"):
            self.event(verb)
            return Completed(0, "", "")
        if verb == "reload" and names == ["nginx.service"]:
            self._reload_nginx()
            return Completed(0, "", "")
        if verb == "reload":
            self.event(f"reload {' '.join(names)}")
            return Completed(0, "", "")
        for name in names:
            getattr(self, "_" + verb.replace("-", "_"))(name)
        return Completed(0, "", "")

    def _show(self, name: str) -> str:
        unit = self.units.get(name, Unit())
        registry = unit.load.app_calls is not None or unit.load.app_error is not None
        status = contract.format_status(unit.load, registry) \
            if unit.active == "active" and unit.published else ""
        return (f"Id={name}\nLoadState=loaded\nActiveState={unit.active}\nSubState={unit.sub}\n"
                f"MainPID={unit.pid}\nMemoryCurrent={50 * 1024 * 1024}\nStatusText={status}\n"
                f"UnitFileState={'enabled' if unit.enabled else 'disabled'}\n"
                f"ActiveEnterTimestamp=@{int(unit.since)}\nNRestarts={unit.restarts}\n"
                f"ExecMainExitTimestamp=@{int(unit.exited)}\nExecMainStatus={unit.exit_status}")

    def _enable(self, name: str) -> None:
        if name.startswith("dograh-") and name != paths.TARGET:
            self.event(f"enable {name}")
            self.units.setdefault(name, Unit()).enabled = True

    def _disable(self, name: str) -> None:
        if name in self.units:
            self.event(f"disable {name}")
            self.units[name].enabled = False

    def _start(self, name: str) -> None:
        if name == paths.TARGET:
            self.event(f"start {name}")
            return
        unit = self.units.setdefault(name, Unit())
        if unit.active == "active":
            return
        self.event(f"start {name}")
        if name == paths.FIREWALL_UNIT:
            unit.active, unit.sub, self.nft_table = "active", "exited", True
            return
        if name.endswith(".timer"):
            unit.active, unit.sub = "active", "waiting"
            return
        unit.active, unit.sub = "activating", "start"

    def _stop(self, name: str) -> None:
        unit = self.units.get(name)
        if unit is None or unit.active == "inactive":
            return
        self.event(f"stop {name}")
        port = _port(name)
        sends = set().union(*(edge.upstream for edge in self.cluster.edges.values())) \
            if self.cluster else self.upstream
        if port is not None and ((self.cluster is None and any(p == port for _, p in sends))
                                 or (self.address, port) in sends):
            self.violations.append(f"{name} stopped while nginx still sends to it")
        if unit.load.websockets:
            self.log.append(f"cut {unit.load.websockets} calls of {name}")
        unit.active, unit.sub, unit.pid, unit.load = "inactive", "dead", 0, Load(0, 0)

    def _kill(self, name: str) -> None:
        unit = self.units.get(name)
        if unit is None or unit.active == "inactive":
            return
        self.event(f"kill {name}")
        unit.active, unit.sub, unit.pid = "failed", "failed", 0

    def _restart(self, name: str) -> None:
        self.event(f"restart {name}")
        unit = self.units.setdefault(name, Unit())
        if name in self.failing:
            unit.active, unit.sub, unit.pid = "failed", "failed", 0
            return
        unit.active, unit.sub, unit.since = "active", "running", self.clock.now
        unit.pid, unit.cwd = self._pid(), self._working_directory(name)

    def _working_directory(self, name: str) -> Path | None:
        """WorkingDirectory= of the unit file ``name`` starts from."""
        template = re.sub(r"@[^.]+\.", "@.", name)
        found = re.search(r"^WorkingDirectory=(.+)$",
                          self.files.read(paths.UNIT_DIR / template) or "", re.M)
        return Path(found.group(1)) if found else None

    def _reload_or_restart(self, name: str) -> None:
        self.event(f"reload-or-restart {name}")
        if name == paths.FIREWALL_UNIT:
            self.nft_table = True

    # -- nginx ------------------------------------------------------------------------

    def _reload_nginx(self) -> None:
        text = self.files.read(paths.NGINX_UPSTREAM) or ""
        members = {(address, int(port)) for address, port in
                   re.findall(r"server \[?([0-9a-f.:]+?)\]?:(\d+)[ ;]", text)}
        for address, port in members:
            host = self.cluster.at(address) if self.cluster else self
            unit = host.units.get(f"dograh-api@{port}.service", Unit()) if host else Unit()
            if unit.active != "active":
                self.violations.append(f"nginx sends to {address}:{port} before it is READY")
        self.event("nginx " + " ".join(f"{p}" if a == "127.0.0.1" else f"{a}:{p}"
                                       for a, p in sorted(members, key=lambda m: (m[0], m[1]))))
        self.upstream = members
        self._reload_nginx_processes()

    def _reload_nginx_processes(self) -> None:
        for process in self.nginx_processes:
            process.accepting = False
        self.nginx_processes = [p for p in self.nginx_processes if p.connections]
        self.nginx_processes.append(NginxProcess(self._pid(), True, self.clock.now))

    # -- time passes ---------------------------------------------------------------------

    def tick(self) -> None:
        """Starting units become ready (or fail); calls end when their time comes."""
        due = [change for when, change in self.later if self.clock.now >= when]
        self.later = [(when, change) for when, change in self.later if self.clock.now < when]
        for change in due:
            change()
        for name, unit in self.units.items():
            if unit.active == "activating" and name not in self.hanging:
                if name in self.failing:
                    unit.active, unit.sub = "failed", "failed"
                    self.log.append(f"failed {name}")
                else:
                    unit.active, unit.sub, unit.since = "active", "running", self.clock.now
                    unit.pid, unit.cwd = self._pid(), self._working_directory(name)
                    self.log.append(f"ready {name}")
            ending = self.ending.get(name)
            if ending is not None and self.clock.now >= ending and not unit.load.idle:
                unit.load = Load(0, 0, app_calls=0 if unit.load.app_calls is not None else None)

    def _pid(self) -> int:
        self.next_pid += 1
        return self.next_pid


class FakeCluster:
    """Edges and worker hosts on one fake etcd, on one clock. Each host's agent goes
    round whenever a command sleeps (the edge's verbs wait so) and at ``turn``; the
    transient units an agent starts run right after its turn."""

    def __init__(self, edges: dict[str, FakeHost], workers: dict[str, FakeHost]) -> None:
        self.edges = edges
        self.workers = workers
        self.hosts = {**edges, **workers}
        self.clock = next(iter(self.hosts.values())).clock
        self.clock.hosts = list(self.hosts.values())
        self.clock.meanwhile = self.turn
        self.etcd = FakeEtcd(lambda: self.clock.now)
        self.agents: dict[str, Agent] = {}
        self.stopped: set[str] = set()  # hosts whose agent does not run (powered off)
        self.said: dict[str, list[str]] = {name: [] for name in self.hosts}
        self._turning = False
        for name, host in self.hosts.items():
            host.cluster, host.clock = self, self.clock
            host.etcd_client = connect(self.etcd, name)

    @property
    def edge(self) -> FakeHost:
        return next(iter(self.edges.values()))

    def at(self, address: str) -> FakeHost | None:
        return next((host for host in self.workers.values() if host.address == address), None)

    def agent(self, name: str) -> Agent:
        """``name``'s agent, as its dograh-agent.service would run it."""
        if name not in self.agents:
            host = self.hosts[name]

            def ctx() -> Context:
                settings = config.load(CONFIG, files=host.files, machine=host.machine)
                return Context(settings, self.said[name].append, host, gather(host))
            first = ctx()
            client, duty = modes.choose(first.settings).duty(first, ctx)
            self.agents[name] = Agent(client, Keys(first.settings.cluster), duty, self.clock,
                                      self.said[name].append)
        return self.agents[name]

    def turn(self) -> None:
        """Every running agent's cycle, then what each started."""
        if self._turning:
            return
        self._turning = True
        try:
            for name, host in self.hosts.items():
                if name not in self.stopped:
                    self.agent(name).cycle()
                    host.run_background()
        finally:
            self._turning = False

    def run(self, seconds: float) -> None:
        """``seconds`` of the cluster's life, a second at a time."""
        for _ in range(int(seconds)):
            self.clock.sleep(1)

    def power_off(self, name: str) -> None:
        """The host is gone: its agent runs no more, its units and its nginx with it."""
        self.stopped.add(name)
        host = self.hosts[name]
        for unit in host.units.values():
            unit.active, unit.sub, unit.pid = "inactive", "dead", 0
        host.nginx_running, host.upstream = False, set()

    def restart_agent(self, name: str) -> None:
        """systemctl restart dograh-agent: its singletons stop with it (BindsTo=), its
        lease goes back, and a new agent starts."""
        agent = self.agents.pop(name)
        host = self.hosts[name]
        for unit_name, unit in host.units.items():
            if unit_name in SINGLETON_UNITS:
                unit.active, unit.sub, unit.pid = "inactive", "dead", 0
        agent.stop()


ETCD_ENDPOINTS = 'DOGRAH_ETCD_ENDPOINTS="https://10.0.0.10:2379"\n'


def make_cluster(root: Path, edges: dict[str, str], workers: dict[str, str],
                 edge_config: str = "", worker_config: str = "") -> FakeCluster:
    """Edges and worker hosts (name -> address) configured as an admin would: every
    host names its cluster's etcd and itself, each edge its worker hosts, each worker
    host the edges and its own address."""
    roster = " ".join(f"{name}={address}" for name, address in workers.items())
    front = " ".join(edges.values())
    return FakeCluster(
        {name: cluster_host(root / name, address,
                            f'{ETCD_ENDPOINTS}DOGRAH_HOST_NAME={name}\nDOGRAH_HOSTS="{roster}"\n'
                            + edge_config) for name, address in edges.items()},
        {name: cluster_host(root / name, address,
                            f'{ETCD_ENDPOINTS}DOGRAH_HOST_NAME={name}\nDOGRAH_EDGE="{front}"\n'
                            f"UVICORN_HOST={address}\n" + worker_config)
         for name, address in workers.items()})


def cluster_host(root: Path, address: str, config: str) -> FakeHost:
    """A host of a cluster: its config, its etcd password (root's alone) and the CA."""
    host = FakeHost(root, address)
    host.configure(config)
    for path, mode in ((paths.ETCD_DIR / "password", 0o600), (paths.ETCD_DIR / "ca.crt", 0o644)):
        target = host.files.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("secret\n")
        target.chmod(mode)
    return host


def _port(name: str) -> int | None:
    match = re.fullmatch(r"dograh-api@(\d+)\.service", name)
    return int(match.group(1)) if match else None


def dograhctl(host: FakeHost, *args: str, code: int = 0) -> str:
    """dograhctl on the fake host, which must exit with ``code``: what it said."""
    exit_code, out, err = host.dograhctl(*args)
    assert exit_code == code, (exit_code, out, err)
    return out + err
