"""Serve an ASGI app with uvicorn and speak sd_notify to systemd.

READY=1 is sent once the app's startup finished and the port accepts a
connection; the heartbeat on the serving event loop pings the watchdog and
publishes the Status line, with the app's own count of live calls when it
has a call registry; a stalled loop gets its stack written to the journal;
STOPPING=1 marks shutdown. Works with uvicorn 0.17.6 (Debian 12)
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
from .app_calls import AppCalls
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
    # The app's call registry: its path and the header that carries the secret.
    calls_path: str | None = None
    calls_header: str = "X-Dograh-Devops-Secret"


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
                 notifier: sdnotify.SystemdNotifier, startup_pings: StartupPings,
                 app_calls: AppCalls | None) -> None:
        super().__init__(config)
        self.counts = counts
        self.notifier = notifier
        self.startup_pings = startup_pings
        self.app_calls = app_calls
        self.calls_read: tuple[int | None, str | None] = (None, None)
        self.lag = LoopLag()
        self.stall = StallWatch(threading.get_ident(),
                                watchdog_timeout() or contract.WATCHDOG_TIMEOUT)
        self.heartbeat = Heartbeat(notifier, self.load, registry=app_calls is not None,
                                   lag=self.lag, stall=self.stall)
        self.tasks: list[asyncio.Task[None]] = []

    def load(self) -> Load:
        app_calls, app_error = self.calls_read
        return Load(websockets=self.counts.websockets, requests=self.counts.requests,
                    served=self.counts.served, lag_p95_ms=self.lag.p95_ms(),
                    app_calls=app_calls, app_error=app_error)

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets=sockets)
        if self.should_exit or not self.started:
            return
        await self._wait_until_accepting()
        if self.app_calls:
            self.calls_read = await self.app_calls.read()
        self.startup_pings.stop()
        self.notifier.notify(f"READY=1\nSTATUS={self.heartbeat.status()}")
        self.stall.start()
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self.heartbeat.run()))
        if self.app_calls:
            self.tasks.append(loop.create_task(self._follow_app_calls(self.app_calls)))

    async def _follow_app_calls(self, app_calls: AppCalls) -> None:
        while True:
            await asyncio.sleep(contract.APP_CALLS_INTERVAL)
            self.calls_read = await app_calls.read()

    async def _wait_until_accepting(self) -> None:
        host = self.config.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        _, writer = await asyncio.open_connection(host, self.config.port)
        writer.close()

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self.notifier.notify(f"STOPPING=1\nSTATUS=stopping: {self.heartbeat.status()}")
        self.stall.stop()
        for task in self.tasks:
            task.cancel()
        await super().shutdown(sockets=sockets)


def serve(options: WorkerOptions) -> int:
    """Run the worker until it is told to stop; the exit code for the process."""
    write_stacks_on_abort(threading.get_ident())
    notifier = sdnotify.SystemdNotifier()
    pings = StartupPings(notifier, watchdog_interval())
    notifier.notify(f"STATUS=starting {options.app}")
    sys.path.insert(0, str(options.app_dir))
    app = import_from_string(options.app)
    counts = LiveCounts(app)
    app_calls = (AppCalls(app, options.calls_path, options.calls_header, options.port)
                 if options.calls_path else None)
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
    server = NotifyingServer(config, counts, notifier, pings, app_calls)
    server.run()
    pings.stop()
    return 0 if server.started else 3
