"""ASGI middleware that counts what a worker holds right now.

A WebSocket scope lives as long as its connection, so the open WebSocket
scopes are the worker's live sockets; the open HTTP scopes are requests in flight.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LiveCounts:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.websockets = 0
        self.requests = 0
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            self.websockets += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.websockets -= 1
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
