"""What every step of a command is handed: the settings, the host, and this host's mode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Settings
from .facts import Facts
from .host import Clock, Host
from .host.files import Files
from .host.systemd import Systemd
from .nginx import Nginx
from .record import Store

if TYPE_CHECKING:
    from .modes import Mode

Report = Callable[[str], None]


@dataclass
class Context:
    settings: Settings
    report: Report
    host: Host
    facts: Facts
    mode: Mode

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
