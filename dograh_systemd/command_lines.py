"""Every dograhctl command line that one dograhctl builds for another, in one place.

Three callers start a dograhctl of their own: a worker host's agent, carrying
out what the edges ask of it (a transient unit each); a command that goes on
in the background (the package's upgrade must not wait for a drain); and the
units that run one (the agent itself, the metrics timer). Like Kamal's
commands, each line here is a pure function that returns an argv list, and a
unit test parses every one with the CLI's own parser: a renamed option fails
there, not on a cluster.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

# What the package installs, for the lines a unit file runs.
INSTALLED = "/usr/bin/dograhctl"


# -- who runs it -----------------------------------------------------------------------

def here(config: Path, args: Sequence[str]) -> list[str]:
    """``args`` for the dograhctl that runs now (its interpreter, its package), with this
    command's config: what a transient unit of this host runs."""
    return [sys.executable, "-m", "dograh_systemd", "--config", str(config), *args]


def installed(config: Path, args: Sequence[str]) -> list[str]:
    """``args`` for the installed dograhctl with ``config``: what a unit file runs."""
    return [INSTALLED, "--config", str(config), *args]


# -- the verbs -------------------------------------------------------------------------

def drain_as_asked(timeout: int | None, stop_at_once: bool) -> list[str]:
    """How long leaving workers may drain, as the admin said: no word for the host's own
    DRAIN_TIMEOUT, or ``stop_at_once``."""
    if stop_at_once:
        return ["--no-drain"]
    return [f"--drain-timeout={timeout}"] if timeout is not None else []


def scale(workers: int, drain: Sequence[str]) -> list[str]:
    return ["scale", str(workers), *drain]


def restart(drain: Sequence[str], force: bool = False) -> list[str]:
    return ["restart", *["--force"] * force, *drain]


def deploy(release: str | None, drain: Sequence[str]) -> list[str]:
    """Onto ``release``; None: back to the config's app, in place."""
    return ["deploy", release or "--in-place", *drain]


def rollback(force: bool, drain: Sequence[str]) -> list[str]:
    return ["rollback", *["--force"] * force, *drain]


def release_make(source: str, ref: str, release_id: str, layout: str, app: str | None
                 ) -> list[str]:
    return ["release", "make", source, "--ref", ref, "--id", release_id, "--layout", layout,
            *(["--app", app] if app else [])]


def resume(switched: bool = False) -> list[str]:
    return ["resume", *["--switched"] * switched]


def rebalance(lock_wait: int | None = None) -> list[str]:
    """``lock_wait``: 0 for a turn that skips while another command works."""
    return [*([f"--lock-wait={lock_wait}"] if lock_wait is not None else []), "rebalance"]


def metrics(output: Path) -> list[str]:
    return ["metrics", "--output", str(output)]


def agent() -> list[str]:
    return ["agent"]
