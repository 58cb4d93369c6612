"""systemctl, and what the running system says about Dograh's units."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import DograhError
from .names import API_TEMPLATE, ARQ_TEMPLATE, SINGLETONS, instance_of
from .plan import Fleet

SHOW_PROPERTIES = ("Id", "ActiveState", "SubState", "MainPID", "MemoryCurrent",
                   "StatusText", "UnitFileState")


def systemctl(*args: str) -> str:
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise DograhError(f"systemctl {' '.join(args)} failed: {detail}")
    return result.stdout


def daemon_reload() -> None:
    systemctl("daemon-reload")


def enable(units: Iterable[str]) -> None:
    if units := list(units):
        systemctl("enable", "--quiet", *units)


def disable(units: Iterable[str]) -> None:
    if units := list(units):
        systemctl("disable", "--quiet", *units)


def start_no_block(units: Iterable[str]) -> None:
    """Queue the starts and return at once: systemd runs them in parallel."""
    if units := list(units):
        systemctl("start", "--no-block", *units)


def reload_or_start(unit: str) -> None:
    """Reload ``unit`` if it is active, else start it; wait for the job to end."""
    systemctl("reload-or-restart", unit)


def restart(unit: str) -> None:
    """Stop then start ``unit``, waiting for both (a stop waits for TimeoutStopSec)."""
    systemctl("restart", unit)


REBALANCE_UNIT = "dograh-rebalance"


def schedule(delay: int, argv: list[str]) -> None:
    """Run ``argv`` once, ``delay`` seconds from now, as a transient timer; replaces a pending one."""
    cancel_scheduled()
    systemctl_run = ["systemd-run", "--quiet", f"--unit={REBALANCE_UNIT}-{time.time_ns()}",
                     f"--on-active={delay}", "--timer-property=AccuracySec=1s",
                     "--timer-property=RemainAfterElapse=no",
                     "--description=Dograh: re-weigh the nginx upstream from live calls", *argv]
    result = subprocess.run(systemctl_run, capture_output=True, text=True)
    if result.returncode != 0:
        raise DograhError(f"scheduling a rebalance failed: {result.stderr.strip()}")


def cancel_scheduled() -> None:
    subprocess.run(["systemctl", "stop", f"{REBALANCE_UNIT}-*.timer"], capture_output=True)


def stop(units: Iterable[str]) -> None:
    if units := list(units):
        systemctl("stop", *units)


@dataclass(frozen=True)
class UnitState:
    unit: str
    active: str
    sub: str
    pid: int
    memory: int | None
    status: str
    enabled: str

    @property
    def ready(self) -> bool:
        return self.active == "active"

    @property
    def failed(self) -> bool:
        """Failed, or waiting to restart after failing: it will not become ready by itself."""
        return self.active == "failed" or self.sub == "auto-restart"


def show(units: Iterable[str]) -> dict[str, UnitState]:
    units = list(units)
    if not units:
        return {}
    text = systemctl("show", "--property=" + ",".join(SHOW_PROPERTIES), *units)
    states = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        memory = props.get("MemoryCurrent", "")
        states[props["Id"]] = UnitState(
            unit=props["Id"], active=props.get("ActiveState", ""), sub=props.get("SubState", ""),
            pid=int(props.get("MainPID") or 0),
            memory=int(memory) if memory.isdigit() else _rss(int(props.get("MainPID") or 0)),
            status=props.get("StatusText", ""), enabled=props.get("UnitFileState", ""))
    return states


def enabled_instances(template: str) -> set[int]:
    """Instances linked into dograh.target.wants: the set that comes back at boot."""
    pattern = re.compile(rf"{re.escape(template)}(\d+)\.service")
    if not paths.TARGET_WANTS.is_dir():
        return set()
    return {int(m.group(1)) for entry in paths.TARGET_WANTS.iterdir()
            if (m := pattern.fullmatch(entry.name))}


def running_instances(template: str) -> set[int]:
    """Instances that are running or on their way up or down."""
    out = systemctl("list-units", "--all", "--plain", "--no-legend", "--full",
                    f"{template}*.service")
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] in ("active", "activating", "reloading",
                                              "deactivating"):
            found.add(instance_of(fields[0]))
    return found


def journal_tail(unit: str, lines: int = 5) -> str:
    result = subprocess.run(["journalctl", "-u", unit, "-n", str(lines), "--no-pager",
                             "-o", "cat"], capture_output=True, text=True)
    return " | ".join(line.strip() for line in result.stdout.splitlines() if line.strip())


def current_fleet() -> Fleet:
    """What runs or is enabled now; either one makes an instance part of the fleet."""
    singletons = show(SINGLETONS)
    return Fleet(
        api_ports=frozenset(enabled_instances(API_TEMPLATE) | running_instances(API_TEMPLATE)),
        arq_indices=frozenset(enabled_instances(ARQ_TEMPLATE) | running_instances(ARQ_TEMPLATE)),
        singletons=frozenset(unit for unit, state in singletons.items()
                             if state.enabled == "enabled" or state.active in ("active", "activating")),
    )


def reset_failed(units: Iterable[str]) -> None:
    if units := list(units):
        subprocess.run(["systemctl", "reset-failed", *units], capture_output=True)


def _rss(pid: int) -> int | None:
    """Resident memory of ``pid``: for hosts where cgroup memory accounting is off."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
