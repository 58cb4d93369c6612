"""What every step of a command is handed: the settings and the ways to reach the system."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import Settings
from .facts import Facts, gather
from .nginx import Nginx
from .record import Store
from .systemd import Systemd

Report = Callable[[str], None]


class Clock:
    """Wall clock, monotonic clock and sleep; a test replaces it to run without waiting."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Context:
    settings: Settings
    report: Report
    systemd: Systemd
    nginx: Nginx
    store: Store
    clock: Clock
    facts: Facts

    @classmethod
    def here(cls, settings: Settings, report: Report) -> Context:
        """This host's systemd, nginx and fleet record."""
        systemd = Systemd()
        return cls(settings, report, systemd, Nginx(systemd), Store(), Clock(), gather(systemd))
