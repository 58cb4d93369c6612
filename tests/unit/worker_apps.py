"""ASGI apps for the worker runtime tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket

app = FastAPI()


@app.get("/block")
async def block() -> dict[str, str]:
    time.sleep(1.5)  # blocks the event loop on purpose
    return {"blocked": "1.5s"}


@app.websocket("/call")
async def call(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()


@asynccontextmanager
async def _failing_startup(_: FastAPI) -> AsyncIterator[None]:
    raise RuntimeError("database unreachable")
    yield


failing = FastAPI(lifespan=_failing_startup)
