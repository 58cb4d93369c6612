"""A fake host behind dograhctl's seams: systemctl, journalctl, systemd-run, nginx and a clock.

It keeps unit states the way systemd reports them, serves the real ``Systemd``
parser its ``show`` output, and logs every change in order, so tests assert
the order of operations the zero-downtime promise depends on. It also checks
two rules as they happen: nginx never lists a worker that is not READY, and no
API worker stops while nginx still lists it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dograh_systemd import paths
from dograh_systemd.config import Settings
from dograh_systemd.context import Clock, Context
from dograh_systemd.facts import Facts
from dograh_systemd.nginx import Nginx
from dograh_systemd.record import Store
from dograh_systemd.systemd import Completed, Systemd
from dograh_systemd.worker import contract
from dograh_systemd.worker.contract import Load


class Killed(BaseException):
    """The command was killed here (SIGKILL): nothing after this point runs."""


@dataclass
class Unit:
    active: str = "inactive"
    sub: str = "dead"
    enabled: bool = False
    since: float = 0.0
    pid: int = 0
    load: Load = field(default_factory=lambda: Load(websockets=0, requests=0))


class FakeClock(Clock):
    def __init__(self, system: FakeSystem) -> None:
        self.system = system
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.system.tick()


class FakeSystem:
    def __init__(self) -> None:
        self.units: dict[str, Unit] = {}
        self.log: list[str] = []
        self.violations: list[str] = []
        self.failing: set[str] = set()       # units that fail to start
        self.ending: dict[str, float] = {}   # unit -> when its calls end (fake time)
        self.kill_at: Callable[[str], bool] = lambda event: False
        self.clock = FakeClock(self)
        self.upstream: set[int] = set()      # ports nginx sends to, as last reloaded
        self.next_pid = 100
        self.nginx_tests_fail = False

    # -- the runner --------------------------------------------------------------

    def run(self, argv: Sequence[str]) -> Completed:
        argv = list(argv)
        program, args = argv[0], argv[1:]
        if program == "systemctl":
            return self._systemctl(args)
        if program == "journalctl":
            return Completed(0, "app: database unreachable\n", "")
        if program == "systemd-run":
            self.event("systemd-run " + " ".join(a for a in args if a.startswith("--unit")))
            return Completed(0, "", "")
        if program == "nginx":
            if self.nginx_tests_fail:
                return Completed(1, "", "nginx: [emerg] unknown directive \"bogus\"\n")
            return Completed(0, "", "")
        raise AssertionError(f"unexpected command {argv}")

    def _systemctl(self, args: list[str]) -> Completed:
        verb = args[0]
        names = [a for a in args[1:] if not a.startswith("-")]
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
            return Completed(0, "", "")
        if verb in ("daemon-reload", "reset-failed"):
            self.event(verb)
            return Completed(0, "", "")
        for name in names:
            getattr(self, "_" + verb.replace("-", "_"))(name)
        return Completed(0, "", "")

    def _show(self, name: str) -> str:
        unit = self.units.get(name, Unit())
        registry = unit.load.app_calls is not None or unit.load.app_error is not None
        status = contract.format_status(unit.load, registry) if unit.active == "active" else ""
        return (f"Id={name}\nLoadState=loaded\nActiveState={unit.active}\nSubState={unit.sub}\n"
                f"MainPID={unit.pid}\nMemoryCurrent={50 * 1024 * 1024}\nStatusText={status}\n"
                f"UnitFileState={'enabled' if unit.enabled else 'disabled'}\n"
                f"ActiveEnterTimestamp=@{int(unit.since)}\nNRestarts=0\nResult=success")

    # -- systemctl verbs -----------------------------------------------------------

    def _enable(self, name: str) -> None:
        if name.startswith("dograh-") and name != paths.TARGET:
            self.units.setdefault(name, Unit()).enabled = True
            self.event(f"enable {name}")

    def _disable(self, name: str) -> None:
        if name in self.units:
            self.units[name].enabled = False
            self.event(f"disable {name}")

    def _start(self, name: str) -> None:
        if name == paths.TARGET:
            self.event(f"start {name}")
            return
        unit = self.units.setdefault(name, Unit())
        if unit.active == "active":
            return
        self.event(f"start {name}")
        unit.active, unit.sub = "activating", "start"

    def _stop(self, name: str) -> None:
        unit = self.units.get(name)
        if unit is None or unit.active == "inactive":
            return
        port = _port(name)
        if port in self.upstream:
            self.violations.append(f"{name} stopped while nginx still sends to it")
        if unit.load.websockets:
            self.event(f"cut {unit.load.websockets} calls of {name}")
        self.event(f"stop {name}")
        unit.active, unit.sub, unit.pid, unit.load = "inactive", "dead", 0, Load(0, 0)

    def _restart(self, name: str) -> None:
        self.event(f"restart {name}")
        unit = self.units.setdefault(name, Unit())
        unit.active, unit.sub, unit.since = "active", "running", self.clock.now
        unit.pid = self._pid()

    def _reload_or_restart(self, name: str) -> None:
        self.event(f"reload-or-restart {name}")

    # -- time passes ---------------------------------------------------------------

    def tick(self) -> None:
        """Starting units become ready (or fail); calls end when their time comes."""
        for name, unit in self.units.items():
            if unit.active == "activating":
                if name in self.failing:
                    unit.active, unit.sub = "failed", "failed"
                    self.event(f"failed {name}")
                else:
                    unit.active, unit.sub, unit.since = "active", "running", self.clock.now
                    unit.pid = self._pid()
                    self.event(f"ready {name}")
            ending = self.ending.get(name)
            if ending is not None and self.clock.now >= ending and not unit.load.idle:
                unit.load = Load(0, 0, app_calls=0 if unit.load.app_calls is not None else None)

    def _pid(self) -> int:
        self.next_pid += 1
        return self.next_pid

    def event(self, text: str) -> None:
        self.log.append(text)
        if self.kill_at(text):
            raise Killed(text)

    # -- set-up helpers for tests ---------------------------------------------------------

    def running(self, *names: str, calls: int = 0) -> None:
        for name in names:
            self.units[name] = Unit("active", "running", True, self.clock.now - 3600,
                                    self._pid(), Load(websockets=calls, requests=0))

    def active(self) -> list[str]:
        return sorted(n for n, u in self.units.items() if u.active == "active")

    def enabled(self) -> list[str]:
        return sorted(n for n, u in self.units.items() if u.enabled)


class FakeNginx(Nginx):
    """nginx -t and reloads; a reload reads the upstream dograhctl wrote."""

    def __init__(self, systemd: Systemd, system: FakeSystem) -> None:
        super().__init__(systemd)
        self.system = system

    def reload(self, timeout: float = 10) -> None:
        text = paths.NGINX_UPSTREAM.read_text() if paths.NGINX_UPSTREAM.exists() else ""
        ports = {int(p) for p in re.findall(r"server \S+:(\d+)", text)}
        for port in ports:
            name = f"dograh-api@{port}.service"
            if self.system.units.get(name, Unit()).active != "active":
                self.system.violations.append(f"nginx sends to {name} before it is READY")
        self.system.upstream = ports
        self.system.event("nginx " + " ".join(map(str, sorted(ports))))


def context(system: FakeSystem, settings: Settings, report: Callable[[str], None]) -> Context:
    systemd = Systemd(system.run)
    return Context(settings, report, systemd, FakeNginx(systemd, system), Store(),
                   system.clock, Facts())


def point_paths_at(monkeypatch: object, root: Path) -> None:
    """Every file dograhctl writes goes under ``root``."""
    for name in ("UNIT_DIR", "NGINX_SITE", "NGINX_SITE_LINK", "NGINX_UPSTREAM", "STATE_DIR",
                 "RECORD", "RUN_DIR", "LOCK", "SECRETS", "NGINX_STOCK_DEFAULT",
                 "NGINX_STOCK_DEFAULT_LINK", "TOOK_STOCK_DEFAULT", "TLS_DIR",
                 "SELF_SIGNED_CERTIFICATE", "SELF_SIGNED_KEY", "ACME_WEBROOT", "ACME_LIVE",
                 "ACME_RENEWAL", "NGINX_CONF", "NGINX_CAPACITY", "NGINX_CONNECTIONS_RAISED"):
        value = getattr(paths, name)
        monkeypatch.setattr(paths, name, root / value.relative_to("/"))  # type: ignore[attr-defined]
    monkeypatch.setattr(paths, "NGINX_ENABLED",  # type: ignore[attr-defined]
                        tuple(root / d.relative_to("/") for d in paths.NGINX_ENABLED))


def _port(name: str) -> int | None:
    match = re.fullmatch(r"dograh-api@(\d+)\.service", name)
    return int(match.group(1)) if match else None
