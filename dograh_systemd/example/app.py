"""An example ASGI app shaped like Dograh's API, served when no app is configured.

- ``GET /api/v1/health``: liveness, as Dograh's own.
- ``GET /api/v1/worker``: which worker (port, pid, package version) answered,
  and the client's address and scheme as the app sees them.
- ``WS /api/v1/call``: holds a "call" open, echoing every message, until the
  client hangs up.
- ``WS /api/v1/media``: a telephony media stream's echo: answers every text or
  binary frame (a 20 ms audio frame, as Twilio's JSON events or raw μ-law) with
  the same frame, frame for frame, as a voice bot's transport does.

``DOGRAH_EXAMPLE_STARTUP_SECONDS`` makes it wait that long while it starts, as
an app that connects to its databases or loads models does (default 0).
"""

from __future__ import annotations

import os
import socket
import time

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

from .. import __version__

app = FastAPI(title="dograh-systemd example")
WORKER_PORT = int(os.environ.get("DOGRAH_WORKER_PORT", "0"))
time.sleep(float(os.environ.get("DOGRAH_EXAMPLE_STARTUP_SECONDS", "0")))


@app.get("/api/v1/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


# No response model: FastAPI 0.92 (Debian 12) cannot validate a dict of mixed values.
@app.get("/api/v1/worker", response_model=None)
async def worker(request: Request) -> dict[str, object]:
    return {"port": WORKER_PORT, "pid": os.getpid(), "host": socket.gethostname(),
            "version": __version__,
            "client": request.client.host if request.client else "",
            "scheme": request.url.scheme}


@app.websocket("/api/v1/call")
async def call(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"port": WORKER_PORT, "pid": os.getpid(),
                               "host": socket.gethostname()})
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


@app.websocket("/api/v1/media")
async def media(websocket: WebSocket) -> None:
    await websocket.accept()
    # The raw ASGI messages: one frame in, the same frame out, nothing decoded
    # (Starlette's receive() is in FastAPI 0.92 as in current releases).
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:  # current Starlette: the client left while we sent
        pass
