"""ASGI apps for the worker runtime tests."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket

app = FastAPI()


@app.get("/block")
async def block() -> dict[str, str]:
    time.sleep(1.5)  # blocks the event loop on purpose
    return {"blocked": "1.5s"}


@app.get("/stall")
async def stall() -> dict[str, str]:
    time.sleep(1.6)  # longer than a third of the tests' 3 s watchdog
    return {"stalled": "1.6s"}


@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"pong": "yes"}


@app.on_event("startup")
async def _every_second_block_200_ms() -> None:
    """With DOGRAH_TEST_BLOCK=1, the loop is blocked 200 ms of every second."""
    if os.environ.get("DOGRAH_TEST_BLOCK"):
        async def blocker() -> None:
            while True:
                await asyncio.sleep(0.8)
                time.sleep(0.2)
        app.state.blocker = asyncio.get_running_loop().create_task(blocker())


@app.websocket("/call")
async def call(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()


@asynccontextmanager
async def _failing_startup(_: FastAPI) -> AsyncIterator[None]:
    raise RuntimeError("database unreachable")
    yield


failing = FastAPI(lifespan=_failing_startup)
