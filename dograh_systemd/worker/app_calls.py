"""The app's own count of live calls, read from its call registry inside the worker.

Dograh keeps a registry of live pipeline runs per process and answers
``GET /api/v1/health/active-calls`` (header ``X-Dograh-Devops-Secret``) with
``{"active_calls": N, ...}``. A run stays registered after its WebSocket
closed, while its post-call work (the recording upload) goes on, so this
count, not the sockets, says when a worker may stop. The request goes to the
app in-process, as an ASGI call, past the worker's own counters: no socket,
no port, and it is not one of the requests the worker counts.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from . import contract
from .live_counts import ASGIApp


class AppCalls:
    def __init__(self, app: ASGIApp, path: str, header: str, port: int) -> None:
        self.app = app
        self.path = path
        self.header = header
        self.port = port

    async def read(self) -> tuple[int | None, str | None]:
        """(the app's live calls, None), or (None, why they could not be read)."""
        try:
            status, body = await asyncio.wait_for(self._get(), contract.APP_CALLS_TIMEOUT)
        except TimeoutError:
            return None, f"no answer in {contract.APP_CALLS_TIMEOUT:g}s"
        except Exception as exc:  # the app's own failure, whatever it is
            return None, type(exc).__name__
        if status != 200:
            return None, f"HTTP {status}"
        try:
            calls = json.loads(body)["active_calls"]
        except (ValueError, KeyError, TypeError):
            return None, "no active_calls in the answer"
        if not isinstance(calls, int) or calls < 0:
            return None, "no active_calls in the answer"
        return calls, None

    async def _get(self) -> tuple[int, bytes]:
        secret = os.environ.get(contract.APP_CALLS_SECRET, "")
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": self.path, "raw_path": self.path.encode(), "query_string": b"",
            "root_path": "", "client": ("127.0.0.1", 0), "server": ("127.0.0.1", self.port),
            "headers": [(b"host", f"127.0.0.1:{self.port}".encode()),
                        (self.header.lower().encode(), secret.encode())],
        }
        status = 0
        body = bytearray()
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, bytes(body)
