"""From what the edges ask of a worker host to the local verb that gets it there (pure).

A worker host carries out what its desired/NAME key asks with the verbs it has
on its own (release make, deploy, rollback, restart, scale), one at a time, each
as a dograhctl command its agent starts: every one of them is resumable, takes
the host's lock, and waits for the edges' switch like any change on a worker
host. Releases every host makes come first; then the release, a restart, and the
number of API workers (a scale, which also brings in the host's edited config). A
drain lasts the host's own DRAIN_TIMEOUT unless the admin gave another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .. import command_lines
from ..wire import Build, Desired, Drain


@dataclass(frozen=True)
class Local:
    """What a worker host runs, as its registration says."""

    api: int                     # API workers of its fleet
    release: str                 # "": the config's app
    previous_release: str
    releases: Mapping[str, str]  # each release it has, and its state
    restarted: int               # the last restart it carried out


@dataclass(frozen=True)
class Step:
    """The next dograhctl command to run, or why there is none to run."""

    args: list[str]
    doing: str
    restart: int = 0  # the restart it carries out, when it is one
    refused: str = ""
    finishes: bool = False  # the generation is carried out once it succeeded


def drain(asked: Drain) -> list[str]:
    return command_lines.drain_as_asked(asked.timeout, asked.stop_at_once)


def next_step(desired: Desired | None, done: int, local: Local, builds: Mapping[str, Build]
              ) -> Step | None:
    """The step that brings ``local`` closer to ``desired`` (carried out up to generation
    ``done``) and to the releases every host makes; None once nothing is left."""
    for release_id, build in builds.items():
        if release_id not in local.releases:
            return Step(command_lines.release_make(build.source, build.commit or build.ref,
                                                   release_id, build.layout, build.app or None),
                        f"making release {release_id}")
    if desired is None or desired.generation <= done:
        return None
    wanted = desired.release
    if wanted is not None and wanted != local.release:
        if wanted and local.releases.get(wanted) != "ready":
            return Step([], "", refused=f"release {wanted} is not ready here "
                                        f"({local.releases.get(wanted, 'missing')})")
        if wanted and wanted == local.previous_release:
            return Step(command_lines.rollback(desired.unknown_migrations,
                                               drain(desired.drain)), f"rolling back to {wanted}")
        return Step(command_lines.deploy(wanted or None, drain(desired.drain)),
                    f"deploying {wanted or 'its config app, in place'}")
    if desired.restart > local.restarted:
        return Step(command_lines.restart(drain(desired.drain)), "restarting",
                    restart=desired.restart)
    # Also at the count asked: the host's own scale brings in what changed in its config
    # (a base port, an edited env file), as a scale run on the host itself would.
    return Step(command_lines.scale(desired.api, drain(desired.drain)),
                f"scaling to {desired.api} API workers", finishes=True)
