"""The example app, plus its own event loop's lag: what every server in the capacity
benchmark runs, so that each reports its loop lag the same way.

``GET /api/v1/lag`` answers for the process it reaches: its pid, the p95 of its
loop lag over the last 10 s (the worker runtime's own measure), its RSS and the
WebSockets it holds (how the calls are spread over the processes).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from dograh_systemd.example.app import app
from dograh_systemd.worker.loop_watch import LoopLag

TICK = 0.1
lag = LoopLag()
websockets = 0


class CountWebSockets:
    """Counts this process's open WebSockets."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        global websockets
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        websockets += 1
        try:
            await self.app(scope, receive, send)
        finally:
            websockets -= 1


app.add_middleware(CountWebSockets)


async def _tick() -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(TICK)
        now = loop.time()
        lag.add(now, now - before, now - before - TICK)


@app.on_event("startup")
async def _measure() -> None:
    app.state.lag_ticker = asyncio.get_running_loop().create_task(_tick())


@app.get("/api/v1/lag", response_model=None)
async def loop_lag() -> dict[str, int]:
    status = Path("/proc/self/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return {"pid": os.getpid(), "p95_ms": lag.p95_ms(), "rss_kb": rss, "websockets": websockets}
