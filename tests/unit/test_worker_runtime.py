"""The worker runtime against a real sd_notify socket and a real uvicorn."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Notifications:
    """A NOTIFY_SOCKET like systemd's, recording (time, message) pairs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.seen: list[tuple[float, str]] = []

    def wait_for(self, predicate: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.seen.append((time.monotonic(), message))
            if predicate in message:
                return message
        raise AssertionError(f"no {predicate!r} within {timeout}s; saw {self.seen[-5:]}")


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notifications]:
    listener = Notifications(tmp_path / "notify")
    yield listener
    listener.sock.close()


def start_worker(notify: Notifications, app: str, port: int, watchdog_usec: int = 400000,
                 loop: str = "auto", **extra_env: str) -> subprocess.Popen[bytes]:
    """The worker runtime as systemd runs it; ``loop="asyncio"`` hides uvloop from
    uvicorn's choice, as on a host without it."""
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(watchdog_usec),
           "DOGRAH_WORKER_PORT": str(port), **extra_env}
    env.pop("WATCHDOG_PID", None)
    argv = ["--app", app, "--app-dir", str(HERE), "--port", str(port)]
    hide = "sys.modules['uvloop'] = None; " if loop == "asyncio" else ""
    launcher = (f"import runpy, sys; {hide}sys.argv = ['worker', *{argv!r}]; "
                "runpy.run_module('dograh_systemd.worker', run_name='__main__')")
    return subprocess.Popen([sys.executable, "-c", launcher], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
def worker(notify: Notifications) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = start_worker(notify, "worker_apps:app", port)
    yield proc, port
    proc.kill()
    proc.wait()


def test_ready_only_once_the_port_accepts(notify: Notifications,
                                          worker: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = worker
    ready = notify.wait_for("READY=1")
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert "STATUS=0 websockets, 0 requests in flight, 0 served, loop lag p95 0 ms" in ready


def test_watchdog_pings_come_from_the_event_loop(
        notify: Notifications, worker: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = worker
    notify.wait_for("READY=1")
    notify.wait_for("WATCHDOG=1")
    first = len(notify.seen)
    notify.wait_for("WATCHDOG=1")
    # Block the loop for 1.5 s: the 0.1 s pings must stop for that long.
    blocker = subprocess.Popen([sys.executable, "-c",
                                f"import urllib.request; urllib.request.urlopen("
                                f"'http://127.0.0.1:{port}/block').read()"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        notify.wait_for("WATCHDOG=1")
    blocker.wait(10)
    pings = [t for t, m in notify.seen[first:] if "WATCHDOG=1" in m]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert min(gaps) < 0.3, "pings should come every 0.1 s while the loop runs"
    assert max(gaps) > 1.2, "a blocked event loop must stop the pings"


def test_status_counts_live_calls(notify: Notifications,
                                  worker: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = worker
    notify.wait_for("READY=1")

    async def hold_two_calls() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/call") as one, \
                websockets.connect(f"ws://127.0.0.1:{port}/call") as two:
            await asyncio.get_running_loop().run_in_executor(
                None, notify.wait_for, "STATUS=2 websockets, 0 requests in flight")
            await one.send("bye")
            await two.send("bye")

    asyncio.run(hold_two_calls())
    notify.wait_for("STATUS=0 websockets, 0 requests in flight")


def test_stopping_on_sigterm(notify: Notifications,
                             worker: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, _ = worker
    notify.wait_for("READY=1")
    proc.send_signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1")
    # uvicorn >= 0.29 re-raises the SIGTERM it handled; systemd counts both as clean.
    assert proc.wait(10) in (0, -signal.SIGTERM)


def test_failed_startup_never_reports_ready(notify: Notifications) -> None:
    proc = start_worker(notify, "worker_apps:failing", free_port())
    code = proc.wait(20)
    assert code != 0
    assert proc.stderr is not None and b"database unreachable" in proc.stderr.read()
    with pytest.raises(AssertionError):
        notify.wait_for("READY=1", timeout=0.5)


def test_pid_1_hears_a_few_messages_a_second_under_load(
        notify: Notifications, worker: tuple[subprocess.Popen[bytes], int]) -> None:
    """Every request changes the served total; PID 1 must not hear of each one."""
    _, port = worker
    notify.wait_for("READY=1")
    loader = subprocess.Popen([sys.executable, "-c", (
        "import http.client, time\n"
        f"c = http.client.HTTPConnection('127.0.0.1', {port})\n"
        "end = time.monotonic() + 6\n"
        "while time.monotonic() < end:\n"
        "    c.request('GET', '/ping'); c.getresponse().read()\n")])
    first = len(notify.seen)
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        notify.wait_for("WATCHDOG=1")
    loader.wait(10)
    statuses = [m for _, m in notify.seen[first:] if "STATUS=" in m]
    # The served total alone refreshes the line every 5 s; nothing sends more
    # than one line per 0.25 s.
    assert 1 <= len(statuses) <= 6 * 4, statuses
    served = int(statuses[-1].split(" served")[0].rsplit(" ", 1)[1])
    assert served > 100, statuses


def test_loop_lag_p95_shows_a_loop_blocked_200_ms_every_second(notify: Notifications) -> None:
    proc = start_worker(notify, "worker_apps:app", free_port(), DOGRAH_TEST_BLOCK="1")
    try:
        notify.wait_for("READY=1")
        deadline = time.monotonic() + 20
        lag = 0
        while time.monotonic() < deadline and lag < 150:
            message = notify.wait_for("STATUS=")
            lag = int(message.split("loop lag p95 ")[1].split(" ms")[0])
        assert lag >= 150, notify.seen[-3:]
    finally:
        proc.kill()
        proc.wait()


LOOPS = ["asyncio", "uvloop"]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_stalled_loop_writes_its_stack(notify: Notifications, loop: str) -> None:
    port = free_port()
    proc = start_worker(notify, "worker_apps:app", port, watchdog_usec=3_000_000, loop=loop)
    try:
        notify.wait_for("READY=1")
        urllib.request.urlopen(f"http://127.0.0.1:{port}/stall", timeout=10).read()
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    text = stderr.decode()
    assert "Event loop stalled: it has not run for" in text, text[-2000:]
    assert re.search(r"the event loop is at .*worker_apps.py:\d+ in stall", text), text[-2000:]
    assert "Stack of the event loop thread (most recent call last):" in text
    assert re.search(r'File ".*worker_apps.py", line \d+, in stall\n\s+time.sleep\(1.6\)', text), \
        text[-3000:]


@pytest.mark.parametrize("loop", LOOPS)
def test_the_watchdog_abort_of_a_stopped_worker_writes_the_stack(notify: Notifications,
                                                                 loop: str) -> None:
    """As systemd's watchdog does to a frozen worker: SIGABRT, then SIGCONT."""
    proc = start_worker(notify, "worker_apps:app", free_port(), loop=loop)
    notify.wait_for("READY=1")
    proc.send_signal(signal.SIGSTOP)
    time.sleep(1.5)
    proc.send_signal(signal.SIGABRT)
    proc.send_signal(signal.SIGCONT)
    code = proc.wait(20)
    text = proc.stderr.read().decode() if proc.stderr else ""
    assert code == -signal.SIGABRT
    assert "Watchdog timeout: systemd sent SIGABRT; the event loop is at " in text, text[-3000:]
    assert re.search(r'File ".*asyncio/.*", line \d+, in run', text), text[-3000:]
    assert "Fatal Python error" not in text
