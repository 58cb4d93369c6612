"""One changing dograhctl at a time, and no one else can interfere.

The lock file lives in a directory only root may enter (not the
world-writable /run/lock, where any user could hold or pre-create it); it is
opened without following links, and waited on for a bounded time.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DograhError

if TYPE_CHECKING:
    from . import Clock

WAIT = 60.0


class Busy(DograhError):
    """Another dograhctl holds the lock."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


@contextmanager
def exclusive(lock: Path, report: Callable[[str], None], wait: float, owner: int,
              clock: Clock) -> Iterator[None]:
    """``lock`` held for the block; ``owner`` is the uid its directory must belong to."""
    _private_directory(lock.parent, owner)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DograhError(f"cannot open the lock {lock}: {exc.strerror}") from None
    try:
        deadline = clock.monotonic() + wait
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if clock.monotonic() >= deadline:
                    raise Busy(f"another dograhctl ({holder}) has held {lock} for "
                               f"more than {wait:.0f}s; try again when it is done",
                               holder) from None
                if not waiting:
                    report(f"waiting for another dograhctl ({holder}) to finish")
                    waiting = True
                clock.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _private_directory(directory: Path, owner: int) -> None:
    """``directory`` exists, is a real directory, root's, and closed to everyone else."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise DograhError(f"cannot create {directory}: {exc.strerror}") from None
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or info.st_mode & 0o077:
        raise DograhError(f"{directory} is not a directory only root can use; remove it "
                          "and run dograhctl again")


def _holder(fd: int) -> str:
    """'pid N: its command line', from the pid the holder wrote into the lock."""
    pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    if not pid.isdigit():
        return "pid unknown"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    return f"pid {pid}: " + " ".join(a.decode(errors="replace") for a in argv if a)


def holder(lock: Path) -> str | None:
    """Who holds ``lock`` now, without waiting or keeping it; None when nobody does (or
    this user may not look)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return None if pid == str(os.getpid()) else _holder(fd)  # this command's own
    finally:
        os.close(fd)
    return None
