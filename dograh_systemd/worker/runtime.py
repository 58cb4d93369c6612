"""Serve an ASGI app with uvicorn and speak sd_notify to systemd.

READY=1 is sent once the app's startup finished and the port accepts a
connection; the heartbeat on the serving event loop pings the watchdog and
publishes the Status line; a stalled loop gets its stack written to the
journal; STOPPING=1 marks shutdown. Works with uvicorn 0.17.6 (Debian 12)
through current releases: it only uses Server.startup/shutdown and
Server.started, which all of them have.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import sdnotify
import uvicorn
from uvicorn.importer import import_from_string

from . import contract
from .contract import Load
from .heartbeat import Heartbeat, watchdog_interval, watchdog_timeout
from .live_counts import LiveCounts
from .loop_watch import LoopLag, StallWatch, write_stacks_on_abort


@dataclass(frozen=True)
class WorkerOptions:
    app: str
    app_dir: Path
    host: str
    port: int
    trusted_proxy: str


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
        self.lag = LoopLag()
        self.stall = StallWatch(threading.get_ident(),
                                watchdog_timeout() or contract.WATCHDOG_TIMEOUT)
        self.heartbeat = Heartbeat(notifier, self.load, registry=False, lag=self.lag,
                                   stall=self.stall)
        self.beating: asyncio.Task[None] | None = None

    def load(self) -> Load:
        return Load(websockets=self.counts.websockets, requests=self.counts.requests,
                    served=self.counts.served, lag_p95_ms=self.lag.p95_ms())

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets=sockets)
        if self.should_exit or not self.started:
            return
        await self._wait_until_accepting()
        self.startup_pings.stop()
        self.notifier.notify(f"READY=1\nSTATUS={self.heartbeat.status()}")
        self.stall.start()
        self.beating = asyncio.get_running_loop().create_task(self.heartbeat.run())

    async def _wait_until_accepting(self) -> None:
        host = self.config.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        _, writer = await asyncio.open_connection(host, self.config.port)
        writer.close()

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self.notifier.notify(f"STOPPING=1\nSTATUS=stopping: {self.heartbeat.status()}")
        self.stall.stop()
        if self.beating:
            self.beating.cancel()
        await super().shutdown(sockets=sockets)


def serve(options: WorkerOptions) -> int:
    """Run the worker until it is told to stop; the exit code for the process."""
    write_stacks_on_abort(threading.get_ident())
    notifier = sdnotify.SystemdNotifier()
    pings = StartupPings(notifier, watchdog_interval())
    notifier.notify(f"STATUS=starting {options.app}")
    sys.path.insert(0, str(options.app_dir))
    counts = LiveCounts(import_from_string(options.app))
    extra = {}
    if "timeout_graceful_shutdown" in inspect.signature(uvicorn.Config).parameters:
        # Bound a stop below systemd's TimeoutStopSec (uvicorn >= 0.22).
        extra["timeout_graceful_shutdown"] = contract.GRACEFUL_SHUTDOWN
    config = uvicorn.Config(
        counts,
        host=options.host,
        port=options.port,
        timeout_keep_alive=contract.WORKER_KEEPALIVE,
        # nginx logs every request already; the journal keeps the app's own logs.
        access_log=False,
        use_colors=False,
        proxy_headers=True,
        forwarded_allow_ips=options.trusted_proxy,
        **extra,
    )
    server = NotifyingServer(config, counts, notifier, pings)
    server.run()
    pings.stop()
    return 0 if server.started else 3
