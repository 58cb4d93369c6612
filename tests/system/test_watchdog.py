"""A hung event loop leaves its whole stack in the journal, every time.

Twenty workers hang at once, so one test is twenty runs: frozen with SIGSTOP
(systemd's watchdog then sends SIGABRT and SIGCONT), and blocked by the app
itself (time.sleep in a handler). On both releases uvicorn runs on uvloop (the
package recommends python3-uvloop; the unit tests cover asyncio).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from bench.testbed.container import Container

from .fleet import dograhctl, main_pid

pytestmark = pytest.mark.system

APPS = Path(__file__).resolve().parents[1] / "fixtures/apps"
PORTS = range(8000, 8020)


def workers(ct: Container) -> dict[str, int]:
    ports = [int(p) for p in ct.run("sh", "-c", "systemctl list-units --plain --no-legend "
                                    "--state=active 'dograh-api@*' | sed 's/.*@//; s/\\..*//'"
                                    ).stdout.split()]
    return {f"dograh-api@{port}.service": main_pid(ct, f"dograh-api@{port}.service")
            for port in ports}


def replaced(ct: Container, before: dict[str, int], timeout: float = 90) -> None:
    """Wait until every worker of ``before`` runs as a new process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = {unit: main_pid(ct, unit) for unit in before}
        if all(pid not in (0, before[unit]) for unit, pid in now.items()):
            return
        time.sleep(1)
    pytest.fail(f"the watchdog did not restart every worker: {now}")


def journal_of(ct: Container, pid: int) -> str:
    return ct.run("journalctl", "--no-pager", "-o", "cat", f"_PID={pid}").stdout


def test_twenty_frozen_workers_each_write_their_stack(container: Container) -> None:
    dograhctl(container, "scale", "20", "--no-drain")
    before = workers(container)
    assert len(before) == 20
    for unit, pid in before.items():  # uvicorn's loop="auto" found python3-uvloop
        assert "/uvloop/" in container.run("cat", f"/proc/{pid}/maps").stdout, unit
    container.run("kill", "-STOP", *map(str, before.values()))
    replaced(container, before)
    for unit, pid in before.items():
        text = journal_of(container, pid)
        assert "Watchdog timeout: systemd sent SIGABRT; the event loop is at " in text, (unit, text)
        assert re.search(r'File ".*asyncio/runners.py", line \d+, in run', text), (unit, text)
        assert "Fatal Python error" not in text, (unit, text)
        assert int(container.run("systemctl", "show", "-p", "NRestarts", "--value",
                                 unit).stdout) >= 1
    dograhctl(container, "scale", "2", "--no-drain")


def test_twenty_loops_blocked_by_the_app_each_write_the_blocked_frame(
        container: Container) -> None:
    shutil.copy(APPS / "stalling.py", container.path("/var/lib/dograh/stalling.py"))
    env = container.path("/etc/dograh/dograh.env")
    original = env.read_text()
    env.write_text(original + "DOGRAH_APP=stalling:app\n")
    try:
        dograhctl(container, "scale", "20", "--no-drain")
        before = workers(container)
        assert len(before) == 20
        ports = " ".join(unit.split("@")[1].split(".")[0] for unit in before)
        container.sh(f"for p in {ports}; do curl -s -o /dev/null --max-time 2 "
                     f"http://127.0.0.1:$p/api/v1/stall & done; wait", timeout=30)
        replaced(container, before)
        for unit, pid in before.items():
            text = journal_of(container, pid)
            assert re.search(r"Event loop stalled: it has not run for [\d.]+s .*; the event "
                             r"loop is at .*/stalling.py:\d+ in stall", text), (unit, text)
            assert re.search(r'File ".*/stalling.py", line \d+, in stall\n\s+time.sleep\(60\)',
                             text), (unit, text)
            assert "Watchdog timeout: systemd sent SIGABRT" in text, (unit, text)
    finally:
        env.write_text(original)
        dograhctl(container, "scale", "2", "--no-drain")
