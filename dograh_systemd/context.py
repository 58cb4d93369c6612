"""What every step of a command is handed: the settings, how it reports, the host and
its facts. Where this host stands (its mode) is not here: the mode hands each step what
it needs of it, as arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .config import Settings
from .facts import Facts
from .host import Clock, Host
from .host.files import Files
from .host.systemd import Systemd
from .nginx import Nginx
from .record import Store

Report = Callable[[str], None]


@dataclass
class Context:
    settings: Settings
    report: Report
    host: Host
    facts: Facts

    @property
    def systemd(self) -> Systemd:
        return self.host.systemd

    @property
    def files(self) -> Files:
        return self.host.files

    @property
    def clock(self) -> Clock:
        return self.host.clock

    @property
    def nginx(self) -> Nginx:
        return Nginx(self.host)

    @property
    def store(self) -> Store:
        return Store(self.host.files)
