"""The worker's heartbeat on its event loop: watchdog pings, loop lag, the Status line.

It wakes every ``TICK`` seconds. How late each wake-up comes is the loop's
lag; the stall watch sees each one. Watchdog pings go out on systemd's
cadence; the Status line goes out when a count an admin reads changed (at
most every ``STATUS_INTERVAL``), or when only the served total and the lag
moved, every ``SLOW_STATUS_INTERVAL``: PID 1 gets a few messages a second at most.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import sdnotify

from . import contract
from .contract import Load
from .loop_watch import LoopLag, StallWatch

TICK = 0.1


def watchdog_timeout() -> float | None:
    """systemd's WatchdogSec for this process, in seconds; None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return None
    return int(usec) / 1_000_000


def watchdog_interval() -> float | None:
    """How often to ping: a quarter of WatchdogSec."""
    timeout = watchdog_timeout()
    return timeout / 4 if timeout else None


class Heartbeat:
    def __init__(self, notifier: sdnotify.SystemdNotifier, load: Callable[[], Load],
                 registry: bool, lag: LoopLag, stall: StallWatch) -> None:
        self.notifier = notifier
        self.load = load
        self.registry = registry
        self.lag = lag
        self.stall = stall

    def status(self) -> str:
        return contract.format_status(self.load(), self.registry)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = watchdog_interval()
        next_ping = loop.time()
        sent_at, sent_counts, sent_text = loop.time(), self._counts(), self.status()
        while True:
            before = loop.time()
            await asyncio.sleep(TICK)
            now = loop.time()
            self.lag.add(now, now - before, now - before - TICK)
            self.stall.beat()
            parts = []
            if interval and now >= next_ping:
                parts.append("WATCHDOG=1")
                next_ping = now + interval
            counts, text = self._counts(), self.status()
            since = now - sent_at
            if text != sent_text and (
                    (counts != sent_counts and since >= contract.STATUS_INTERVAL)
                    or since >= contract.SLOW_STATUS_INTERVAL):
                parts.append(f"STATUS={text}")
                sent_at, sent_counts, sent_text = now, counts, text
            if parts:
                self.notifier.notify("\n".join(parts))

    def _counts(self) -> tuple[object, ...]:
        """What an admin (and a drain) waits on: every count but the served total."""
        load = self.load()
        return (load.app_calls, load.app_error, load.websockets, load.requests)
