"""gunicorn's uvicorn worker with the loop and WebSocket implementation the voice
benchmark names (``BENCH_UVICORN_LOOP``, ``BENCH_UVICORN_WS``); gunicorn's command
line has no way to pass uvicorn's options."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker  # type: ignore[import-not-found]


class Worker(UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**UvicornWorker.CONFIG_KWARGS,
                     **{key: os.environ[f"BENCH_UVICORN_{key.upper()}"] for key in ("loop", "ws")
                        if f"BENCH_UVICORN_{key.upper()}" in os.environ}}
