"""systemctl, journalctl and systemd-run: the one way dograhctl talks to systemd.

Every call goes through the host's runner, so the same code drives this host, or
the tests' fake host that records the order of operations.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import DograhError
from .commands import Runner

SHOW_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "MainPID", "MemoryCurrent",
                   "StatusText", "UnitFileState", "ActiveEnterTimestamp", "NRestarts",
                   "ExecMainExitTimestamp", "ExecMainStatus")


@dataclass(frozen=True)
class UnitState:
    unit: str
    load: str
    active: str
    sub: str
    pid: int
    memory: int | None  # cgroup memory; None where accounting is off
    status: str
    enabled: str
    # Wall clock of the last start, in seconds; 0 if it never started.
    since: float
    restarts: int  # automatic restarts since the unit was loaded (NRestarts)
    # Wall clock of when its main process last ended, in seconds; 0 if it has not.
    exited: float = 0.0
    exit_status: int = 0  # its main process's last exit code

    @property
    def ready(self) -> bool:
        """Up and serving."""
        return self.active in ("active", "reloading")

    @property
    def running(self) -> bool:
        """Up, or on its way up or down: a process of it may run."""
        return self.active in ("active", "activating", "deactivating", "reloading")

    @property
    def holding(self) -> bool:
        """Serving, or stopping: it may hold calls (one still starting holds none)."""
        return self.active in ("active", "reloading", "deactivating")

    @property
    def failed(self) -> bool:
        """Failed, or waiting to restart after failing: it will not become ready by itself."""
        return self.active == "failed" or self.sub == "auto-restart"


def parse_show(text: str) -> dict[str, UnitState]:
    """``systemctl show --property=...`` output for several units, by unit name."""
    states = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" not in props:
            continue
        memory = props.get("MemoryCurrent", "")
        states[props["Id"]] = UnitState(
            unit=props["Id"], load=props.get("LoadState", ""),
            active=props.get("ActiveState", ""), sub=props.get("SubState", ""),
            pid=_number(props.get("MainPID")),
            memory=int(memory) if memory.isdigit() else None,
            status=props.get("StatusText", ""), enabled=props.get("UnitFileState", ""),
            since=_timestamp(props.get("ActiveEnterTimestamp", "")),
            restarts=_number(props.get("NRestarts")),
            exited=_timestamp(props.get("ExecMainExitTimestamp", "")),
            exit_status=_number(props.get("ExecMainStatus")))
    return states


class Systemd:
    """systemctl and friends on one host."""

    def __init__(self, run: Runner) -> None:
        self.run = run

    def systemctl(self, *args: str) -> str:
        result = self.run(["systemctl", *args])
        if result.returncode != 0:
            raise DograhError(f"systemctl {' '.join(args)} failed: {result.last_line}")
        return result.stdout

    def show(self, units: Iterable[str]) -> dict[str, UnitState]:
        units = list(units)
        if not units:
            return {}
        # --timestamp=unix gives ActiveEnterTimestamp as @seconds (systemd >= 248).
        text = self.systemctl("show", "--timestamp=unix",
                              "--property=" + ",".join(SHOW_PROPERTIES), *units)
        return parse_show(text)

    def listed(self, pattern: str) -> list[str]:
        """Units matching ``pattern`` that systemd has loaded, in any state."""
        out = self.systemctl("list-units", "--all", "--plain", "--no-legend", "--full",
                             pattern)
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def wanted_by(self, target: str) -> list[str]:
        """The units ``target`` pulls in at boot (its Wants=, from .wants links included)."""
        out = self.systemctl("show", "--property=Wants", "--value", target)
        return out.split()

    def daemon_reload(self) -> None:
        self.systemctl("daemon-reload")

    def enable(self, units: Iterable[str]) -> None:
        if units := list(units):
            self.systemctl("enable", "--quiet", *units)

    def disable(self, units: Iterable[str]) -> None:
        if units := list(units):
            self.systemctl("disable", "--quiet", *units)

    def start(self, units: Iterable[str]) -> None:
        """Start ``units`` and wait for them to be up."""
        if units := list(units):
            self.systemctl("start", *units)

    def start_no_block(self, units: Iterable[str]) -> None:
        """Queue the starts and return at once: systemd runs them in parallel."""
        if units := list(units):
            self.systemctl("start", "--no-block", *units)

    def stop(self, units: Iterable[str]) -> None:
        if units := list(units):
            self.systemctl("stop", *units)

    def stop_no_block(self, units: Iterable[str]) -> None:
        if units := list(units):
            self.systemctl("stop", "--no-block", *units)

    def kill(self, unit: str) -> None:
        """Every process of ``unit`` gone at once (SIGKILL), then the unit stopped."""
        self.run(["systemctl", "kill", "--signal=SIGKILL", unit])
        self.systemctl("stop", "--no-block", unit)

    def restart(self, unit: str) -> None:
        """Stop then start ``unit``, waiting for both (a stop waits for TimeoutStopSec)."""
        self.systemctl("restart", unit)

    def restart_no_block(self, unit: str) -> None:
        self.systemctl("restart", "--no-block", unit)

    def reload_or_restart(self, unit: str) -> None:
        """Reload ``unit`` if it is active, else start it; wait for the job to end."""
        self.systemctl("reload-or-restart", unit)

    def is_active(self, unit: str) -> bool:
        return self.run(["systemctl", "is-active", "--quiet", unit]).returncode == 0

    def reset_failed(self, units: Iterable[str]) -> None:
        """Forget earlier failures of ``units``; a unit systemd does not know is no error."""
        if units := list(units):
            self.run(["systemctl", "reset-failed", *units])

    def journal_tail(self, unit: str, lines: int = 5, own: bool = False) -> str:
        """The unit's last journal lines; with ``own``, only what its processes printed
        (not systemd's word on how it ended)."""
        if not own:
            result = self.run(["journalctl", "-u", unit, "-n", str(lines), "--no-pager",
                               "-o", "cat"])
            return " | ".join(line.strip() for line in result.stdout.splitlines()
                              if line.strip())
        result = self.run(["journalctl", "-u", unit, "-n", str(lines + 20), "--no-pager",
                           "-o", "json", "--output-fields=MESSAGE,_TRANSPORT"])
        printed = []
        for line in result.stdout.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            message = entry.get("MESSAGE") if isinstance(entry, dict) else None
            if entry.get("_TRANSPORT") == "stdout" and isinstance(message, str) \
                    and message.strip():
                printed.append(message.strip())
        return " | ".join(printed[-lines:])

    def run_detached(self, name: str, description: str, argv: Sequence[str]) -> None:
        """Run ``argv`` as the transient service ``name``: it outlives the caller, and
        its outcome stays readable (systemctl status, journalctl -u) until the next
        one. One still at work is stopped first; what it left, the new one finishes."""
        self.discard(name)
        result = self.run(["systemd-run", "--quiet", f"--unit={name}",
                           f"--description={description}", "--remain-after-exit",
                           "--no-block", "--", *argv])
        if result.returncode != 0:
            raise DograhError(f"starting {name} failed: {result.last_line}")

    def discard(self, unit: str) -> None:
        """Stop ``unit`` and forget how it ended; a unit systemd does not know is no error."""
        self.run(["systemctl", "stop", unit])
        self.reset_failed([unit])

    def run_later(self, name: str, delay: int, description: str, argv: Sequence[str]) -> None:
        """Run ``argv`` once, ``delay`` seconds from now, as a transient timer named
        ``name``-*; a pending one of that name is replaced."""
        self.cancel_later(name)
        result = self.run(["systemd-run", "--quiet", f"--unit={name}-{time.time_ns()}",
                           f"--on-active={delay}", "--timer-property=AccuracySec=1s",
                           "--timer-property=RemainAfterElapse=no",
                           f"--description={description}", *argv])
        if result.returncode != 0:
            raise DograhError(f"scheduling {name} failed: {result.last_line}")

    def cancel_later(self, name: str) -> None:
        self.run(["systemctl", "stop", f"{name}-*.timer"])


def _number(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def _timestamp(text: str) -> float:
    """``@1732212345`` (--timestamp=unix) in seconds; 0 when empty."""
    try:
        return float(text.lstrip("@")) if text else 0.0
    except ValueError:
        return 0.0
