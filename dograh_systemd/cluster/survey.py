"""An edge's view of its worker hosts: each host of the roster (DOGRAH_HOSTS: the only
names it knows and the only addresses it dials) by its registration, or the trouble
with it. Nothing a host registers names an address: its ports are dialled at the
address the roster gives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Settings
from ..wire import HostReport, Trouble
from .state import Snapshot


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # from DOGRAH_HOSTS: the only address an edge dials

    def __str__(self) -> str:
        return f"{self.name} ({self.address})"


def roster(settings: Settings) -> list[Host]:
    return [Host(name, address) for name, address in settings.hosts]


@dataclass
class Survey:
    """What each worker host registered, or the trouble with it."""

    reports: dict[Host, HostReport] = field(default_factory=dict)
    trouble: dict[Host, Trouble] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings, snapshot: Snapshot) -> Survey:
        hosts = roster(settings)
        reports, trouble = snapshot.registrations([host.name for host in hosts],
                                                  settings.singletons)
        return cls({host: reports[host.name] for host in hosts if host.name in reports},
                   {host: trouble[host.name] for host in hosts if host.name in trouble})

    def named(self, name: str) -> Host:
        return next(host for host in [*self.reports, *self.trouble] if host.name == name)

    def running(self) -> dict[str, list[str]]:
        """The singletons each registered host runs, by its name."""
        return {host.name: list(report.singletons) for host, report in self.reports.items()}

    def releases(self) -> dict[str, dict[str, str]]:
        """Each registered host's releases and their states, by its name."""
        return {host.name: {r.id: r.state for r in report.releases}
                for host, report in self.reports.items()}

    def unreachable(self) -> dict[str, str]:
        """Why each host in trouble cannot be used, by its name."""
        return {host.name: trouble.why for host, trouble in self.trouble.items()}
