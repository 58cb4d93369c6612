"""The worker runtime against a real sd_notify socket and a real uvicorn."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
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


def start_worker(notify: Notifications, app: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000",
           "DOGRAH_WORKER_PORT": str(port)}
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, "-m", "dograh_systemd.worker", "--app", app, "--app-dir", str(HERE),
         "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


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
    assert "STATUS=0 calls, 0 requests in flight, 0 served" in ready


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
                None, notify.wait_for, "STATUS=2 calls, 0 requests in flight")
            await one.send("bye")
            await two.send("bye")

    asyncio.run(hold_two_calls())
    notify.wait_for("STATUS=0 calls, 0 requests in flight, 2 served")


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
