"""The host seam: every way dograhctl reaches the machine it runs on, in one object.

    run       any program: systemctl and friends (through ``systemd``), nginx,
              openssl, dpkg-query, certbot, nft, git
    etcd      a client of the cluster's etcd
    files     the file system, under a root (``/`` here; a staging root, or a
              test's directory)
    machine   what only the kernel knows: free ports, memory, CPUs, nginx's
              processes and their limits
    clock     wall clock, monotonic clock and sleep
    lock      one changing dograhctl at a time

``Host.here()`` is this machine. The tests' fake host (tests/unit/fake_host.py)
builds the same object over pretend parts, so every verb runs without root,
without real ports and without touching the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .. import etcd, paths
from .commands import Runner, run_here
from .files import Files
from .lock import exclusive, holder
from .machine import Machine
from .systemd import Systemd

Report = Callable[[str], None]


class Clock:
    """Wall clock, monotonic clock and sleep."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Host:
    def __init__(self, run: Runner, files: Files, machine: Machine, clock: Clock) -> None:
        self.run = run
        self.systemd = Systemd(run)
        self.files = files
        self.machine = machine
        self.clock = clock

    @classmethod
    def here(cls) -> Host:
        return cls(run_here, Files(), Machine(), Clock())

    @contextmanager
    def lock(self, report: Report, wait: float, lock: Path = paths.LOCK) -> Iterator[None]:
        """The lock (the fleet's, or ``lock``), waited on for ``wait`` seconds at most
        (else ``lock.Busy``)."""
        with exclusive(self.files.path(lock), report, wait, self.files.owner, self.clock):
            yield

    def etcd(self, endpoints: Sequence[str], ca: Path | None,
             credentials: etcd.Credentials | None) -> etcd.Client:
        """A client of the etcd cluster at ``endpoints``."""
        return etcd.Client(endpoints, ca, credentials)

    def lock_holder(self) -> str | None:
        """The dograhctl at work right now, if one holds the lock."""
        return holder(self.files.path(paths.LOCK))
