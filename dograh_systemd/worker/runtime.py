"""Serve an ASGI app with uvicorn and speak sd_notify to systemd.

READY=1 is sent once the app's startup finished and the port accepts a
connection; WATCHDOG=1 comes from the serving event loop, so a blocked loop
stops the pings; STATUS= carries the live counts; STOPPING=1 marks shutdown.
Works with uvicorn 0.17.6 (Debian 12) through current releases: it only uses
Server.startup/shutdown and Server.started, which all of them have.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import sdnotify
import uvicorn
from uvicorn.importer import import_from_string

from .live_counts import STATUS_INTERVAL, LiveCounts


@dataclass(frozen=True)
class WorkerOptions:
    app: str
    app_dir: Path
    host: str
    port: int
    keep_alive: int
    stop_timeout: int


def watchdog_interval() -> float | None:
    """How often to ping: a quarter of WatchdogSec, or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 4


class StartupPings:
    """Keeps the watchdog fed from a thread while the app imports and starts.

    systemd arms the watchdog when the process starts; a large app may take
    longer than WatchdogSec to import. TimeoutStartSec still bounds a hang.
    """

    def __init__(self, notifier: sdnotify.SystemdNotifier, interval: float | None) -> None:
        self._stop = threading.Event()
        self._thread = None
        if interval:
            self._thread = threading.Thread(target=self._run, args=(notifier, interval),
                                            name="startup-watchdog", daemon=True)
            self._thread.start()

    def _run(self, notifier: sdnotify.SystemdNotifier, interval: float) -> None:
        while not self._stop.wait(interval):
            notifier.notify("WATCHDOG=1")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


class NotifyingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, counts: LiveCounts,
                 notifier: sdnotify.SystemdNotifier, startup_pings: StartupPings) -> None:
        super().__init__(config)
        self.counts = counts
        self.notifier = notifier
        self.startup_pings = startup_pings
        self.heartbeat: asyncio.Task[None] | None = None

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets=sockets)
        if self.should_exit or not self.started:
            return
        await self._wait_until_accepting()
        self.startup_pings.stop()
        self.notifier.notify(f"READY=1\nSTATUS={self.counts.status()}")
        self.heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _wait_until_accepting(self) -> None:
        host = self.config.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        _, writer = await asyncio.open_connection(host, self.config.port)
        writer.close()

    async def _beat(self) -> None:
        """Publish changed counts promptly; ping the watchdog on its own cadence."""
        interval = watchdog_interval()
        loop = asyncio.get_running_loop()
        next_ping = loop.time()
        last_status = ""
        while True:
            parts = []
            if interval and loop.time() >= next_ping:
                parts.append("WATCHDOG=1")
                next_ping = loop.time() + interval
            status = self.counts.status()
            if status != last_status:
                parts.append(f"STATUS={status}")
                last_status = status
            if parts:
                self.notifier.notify("\n".join(parts))
            await asyncio.sleep(STATUS_INTERVAL)

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self.notifier.notify(f"STOPPING=1\nSTATUS=stopping: {self.counts.status()}")
        if self.heartbeat:
            self.heartbeat.cancel()
        await super().shutdown(sockets=sockets)


def serve(options: WorkerOptions) -> int:
    """Run the worker until it is told to stop; the exit code for the process."""
    notifier = sdnotify.SystemdNotifier()
    pings = StartupPings(notifier, watchdog_interval())
    notifier.notify(f"STATUS=starting {options.app}")
    sys.path.insert(0, str(options.app_dir))
    counts = LiveCounts(import_from_string(options.app))
    extra = {}
    if "timeout_graceful_shutdown" in inspect.signature(uvicorn.Config).parameters:
        # Bound a stop below systemd's TimeoutStopSec (uvicorn >= 0.22).
        extra["timeout_graceful_shutdown"] = options.stop_timeout
    config = uvicorn.Config(
        counts,
        host=options.host,
        port=options.port,
        timeout_keep_alive=options.keep_alive,
        # nginx logs every request already; the journal keeps the app's own logs.
        access_log=False,
        use_colors=False,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        **extra,
    )
    server = NotifyingServer(config, counts, notifier, pings)
    server.run()
    pings.stop()
    return 0 if server.started else 3
