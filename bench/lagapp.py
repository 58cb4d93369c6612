"""The example app, plus its own event loop's lag: what every server in the capacity
benchmark runs, so that each reports its loop lag the same way.

``GET /api/v1/lag`` answers for the process it reaches: its pid, the p95 of its
loop lag over the last 10 s (the worker runtime's own measure), its RSS and the
WebSockets it holds (how the calls are spread over the processes).

``BENCH_FRAME_CPU_MS`` gives every WebSocket message received that much CPU
work on the loop before the app sees it (a voice bot's VAD, resampling and
codec work on each 20 ms frame): how the hop's share shrinks as the app works.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from dograh_systemd.example.app import app
from dograh_systemd.worker.loop_watch import LoopLag

TICK = 0.1
lag = LoopLag()
websockets = 0
FRAME_CPU_SECONDS = float(os.environ.get("BENCH_FRAME_CPU_MS", "0")) / 1000


def work(seconds: float) -> None:
    """Burn this much of the thread's own CPU time (not wall time: a preempted worker
    still does all of its work)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


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

        async def receive_and_work() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "websocket.receive":
                work(FRAME_CPU_SECONDS)
            return message

        try:
            await self.app(scope, receive_and_work if FRAME_CPU_SECONDS else receive, send)
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
