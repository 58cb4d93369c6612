"""Where this host stands, decided once from the config, as uvicorn picks its supervisor:

    SingleHost   (single.py)  everything here: this host's nginx in front of its workers
    WorkerHost   (worker.py)  DOGRAH_EDGE is set: API workers, ARQ workers and the
                              singletons placed here, behind the edge's nginx
    Edge         (edge.py)    DOGRAH_HOSTS is set: the front door of the worker hosts,
                              one nginx upstream over every worker of every host

Each mode answers the verbs of mode.py; ``choose`` is the only place that tells
them apart. A single host and a worker host share what runs a fleet of units on
this host (local.py); the operation they carry out is the one phase machine
of operation.py, whose switch is the mode's.
"""

from __future__ import annotations

from ..config import Settings
from .edge import Edge
from .mode import Mode
from .single import SingleHost
from .worker import WorkerHost


def choose(settings: Settings) -> Mode:
    """The mode the config puts this host in."""
    if settings.hosts:
        return Edge()
    if settings.edges:
        return WorkerHost()
    return SingleHost()
