"""One changing dograhctl at a time: an flock on a file in /run/lock."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from . import paths


@contextmanager
def exclusive(report: Callable[[str], None]) -> Iterator[None]:
    paths.LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode().strip() or "unknown"
            report(f"waiting for another dograhctl (pid {holder}) to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
