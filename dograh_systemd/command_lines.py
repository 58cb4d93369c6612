"""Every dograhctl command line that one dograhctl builds for another, in one place.

Three callers start a dograhctl of their own: the edge, on its worker hosts
(over SSH, reading the JSON it prints); a command that goes on in the
background (a transient unit: the package's upgrade must not wait for a
drain); and the units that run one on a timer. Like Kamal's commands, each
line here is a pure function that returns an argv list, and a unit test parses
every one with the CLI's own parser: a renamed option fails there, not on a
cluster.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
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


def on_worker_host(args: Sequence[str]) -> list[str]:
    """``args`` for a worker host's own dograhctl (with its own config), printing JSON for
    the edge."""
    return ["dograhctl", *args, "--json"]


# -- the verbs -------------------------------------------------------------------------

def drain(timeout: float | None) -> list[str]:
    """How long leaving workers may drain: ``None`` stops them at once."""
    return ["--no-drain"] if timeout is None else [f"--drain-timeout={timeout:.0f}"]


def scale(workers: int, singletons: Iterable[str], drain_timeout: float | None) -> list[str]:
    """A worker host's own size, with the singletons its edge places there."""
    return ["scale", str(workers), "--singletons", ",".join(sorted(singletons)),
            *drain(drain_timeout)]


def restart(drain_timeout: float | None, force: bool = False) -> list[str]:
    return ["restart", *["--force"] * force, *drain(drain_timeout)]


def restart_as_asked(force: bool, drain_timeout: int | None, no_drain: bool) -> list[str]:
    """``restart`` with the options its caller was given, as given (no drain timeout:
    the config's)."""
    return ["restart", *["--force"] * force, *["--no-drain"] * no_drain,
            *([f"--drain-timeout={drain_timeout}"] if drain_timeout is not None else [])]


def deploy(release: str | None, drain_timeout: float | None) -> list[str]:
    """Onto ``release``; None: back to the config's app, in place."""
    return ["deploy", release or "--in-place", *drain(drain_timeout)]


def rollback(force: bool, drain_timeout: float | None) -> list[str]:
    return ["rollback", *["--force"] * force, *drain(drain_timeout)]


def release_make(source: str, ref: str, release_id: str, layout: str, app: str | None
                 ) -> list[str]:
    return ["release", "make", source, "--ref", ref, "--id", release_id, "--layout", layout,
            *(["--app", app] if app else [])]


def resume(switched: bool = False, background: bool = False) -> list[str]:
    return ["resume", *["--switched"] * switched, *["--background"] * background]


def status() -> list[str]:
    return ["status"]


def rebalance(lock_wait: int | None = None) -> list[str]:
    """``lock_wait``: 0 for a timer's turn, which skips while another command works."""
    return [*([f"--lock-wait={lock_wait}"] if lock_wait is not None else []), "rebalance"]


def metrics(output: Path) -> list[str]:
    return ["metrics", "--output", str(output)]
