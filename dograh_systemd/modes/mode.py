"""The verbs every mode answers, and the values they take and give.

A mode hands the lower steps what they need of it as arguments (the switch and
the host's own units to the phase machine, the routes to the site, the unit
settings to the templates, what doctor checks): nothing below asks which mode
it works for.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .. import doctor, etcd, paths, templates
from ..cluster import agent
from ..config import Settings
from ..context import Context
from ..errors import DograhError
from ..upstream import Route


@dataclass(frozen=True)
class Change:
    """What ``scale`` or ``restart`` asks for on the command line."""

    api_workers: int | None = None        # None: the config's FASTAPI_WORKERS
    pools: Mapping[str, int] = field(default_factory=dict)
    force: bool = False                   # start even when memory looks short
    drain_timeout: float | None = 300.0   # None: leaving workers stop at once
    # The admin gave the drain timeout (or --no-drain): an edge asks it of every host,
    # which otherwise drains for its own DRAIN_TIMEOUT.
    drain_given: bool = False
    stage: bool = False                   # stop once the new units are READY
    # An edge's: API workers per host.
    per_host: Mapping[str, int] = field(default_factory=dict)
    # A rollback's: go back even though the newer release ran migrations the older
    # one does not know.
    unknown_migrations: bool = False


@dataclass(frozen=True)
class ReleaseRequest:
    """What ``release make`` asks for."""

    source: str | None        # None: DOGRAH_SOURCE
    ref: str | None           # None: DOGRAH_SOURCE_REF
    layout: str | None        # None: DOGRAH_SOURCE_LAYOUT
    app: str | None = None    # None: Dograh's api.app:app, or DOGRAH_APP
    id: str | None = None     # None: a new one (an edge names it for all its hosts)


@dataclass(frozen=True)
class Answer:
    """What a verb has to say: a line or a page for people, JSON for programs, and the
    exit code."""

    text: str
    data: Any = None
    code: int = 0


class Mode(ABC):
    """The verbs every mode answers, and what the phase machine asks of it."""

    # Units of this host rather than of a role (a firewall, a timer); every host
    # writes its metrics for Prometheus.
    host_units: ClassVar[tuple[str, ...]] = (paths.METRICS_UNIT, paths.METRICS_TIMER)

    @property
    def started_units(self) -> tuple[str, ...]:
        """The host units this host enables and starts (a timer starts the others)."""
        return tuple(unit for unit in self.host_units if unit not in paths.TIMED)

    @abstractmethod
    def scale(self, ctx: Context, change: Change) -> Answer:
        """Run the asked-for number of workers."""

    @abstractmethod
    def restart(self, ctx: Context, change: Change) -> Answer:
        """Replace every process with one on the current code and settings, dropping no call."""

    @abstractmethod
    def resume(self, ctx: Context, switched: bool) -> Answer:
        """Finish what an interrupted (or staged) command left, and nothing else."""

    @abstractmethod
    def rebalance(self, ctx: Context) -> Answer:
        """Re-weigh the upstream from the workers' live calls."""

    @abstractmethod
    def status(self, ctx: Context) -> Answer:
        """What runs, against what should; code 1 where they differ."""

    @abstractmethod
    def make_release(self, ctx: Context, request: ReleaseRequest) -> Answer:
        """Build a release, ready to deploy, moving no process."""

    @abstractmethod
    def releases(self, ctx: Context) -> Answer:
        """The releases on this host (or on each worker host)."""

    @abstractmethod
    def deploy(self, ctx: Context, change: Change, release: str | None) -> Answer:
        """Every process onto ``release`` (None: back to the config's app, in place),
        dropping no call."""

    @abstractmethod
    def rollback(self, ctx: Context, change: Change) -> Answer:
        """Every process back onto the release before, dropping no call."""

    @abstractmethod
    def metrics(self, ctx: Context) -> str:
        """This host's metrics in Prometheus' text format."""

    @abstractmethod
    def render(self, ctx: Context, root: Path, dry_run: bool) -> dict[Path, str]:
        """Write the generated files under ``root``; the files that changed."""

    @abstractmethod
    def unit_files(self, ctx: Context) -> dict[Path, str]:
        """Every unit file this host's config renders, by installed path."""

    @abstractmethod
    def checks(self, ctx: Context) -> list[doctor.Check]:
        """What doctor checks on this host."""

    # Whether a changing verb holds this host's lock from start to end (an edge takes it
    # only for its own steps: its agent renders nginx while the hosts carry a change out).
    holds_lock: ClassVar[bool] = True

    def duty(self, ctx: Context, refresh: Callable[[], Context]
             ) -> tuple[etcd.Client, agent.Duty]:
        """What this host's agent does in its cluster, and its client of etcd; ``refresh``
        gives the context as the config stands now."""
        raise DograhError("this host is in no cluster (DOGRAH_ETCD_ENDPOINTS is not set): "
                          "it runs no agent")

    def agent(self, ctx: Context, stop: threading.Event, refresh: Callable[[], Context]
              ) -> None:
        """This host's agent in its cluster, until ``stop``."""
        client, duty = self.duty(ctx, refresh)
        agent.serve(ctx, client, duty, stop)

    def routes(self, settings: Settings) -> tuple[Route, ...]:
        """Where the site sends the paths singletons serve (Dograh's UI)."""
        return ()

    def standing(self, settings: Settings) -> templates.Standing:
        """What this host's units need to know of where it stands."""
        return templates.Standing(host_units=self.host_units)

    @staticmethod
    def refuse(option: str, why: str) -> None:
        raise DograhError(f"{option} {why}")


