"""ASGI middleware that counts what a worker holds right now.

A WebSocket scope lives as long as its connection, so the open WebSocket
scopes are the worker's live calls; the open HTTP scopes are requests in flight.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

# A worker publishes a changed STATUS= line within this many seconds; dograhctl
# reads it for draining and weighting, so it must be fresh.
STATUS_INTERVAL = 0.1

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LiveCounts:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls = 0
        self.requests = 0
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            self.calls += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.calls -= 1
                self.served += 1
        elif kind == "http":
            self.requests += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.requests -= 1
                self.served += 1
        else:
            await self.app(scope, receive, send)

    def status(self) -> str:
        """The worker's STATUS= line; ``parse_status`` reads it back."""
        return (f"{self.calls} calls, {self.requests} requests in flight, "
                f"{self.served} served")


_STATUS = re.compile(r"^(?:stopping: )?(\d+) calls, (\d+) requests in flight")


def parse_status(text: str) -> tuple[int, int] | None:
    """(live calls, requests in flight) from a worker's Status line; None if it has none yet."""
    match = _STATUS.match(text)
    return (int(match.group(1)), int(match.group(2))) if match else None
