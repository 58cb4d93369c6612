"""Run a command the way the units run the app: never as root, never in root's environment.

The command runs as a transient unit with the units' own environment and
sandbox (user, env files, working directory, hardening), so a probe that
passes means a unit can do the same, and nothing of the app's ever runs as
root or sees root's environment (an env file's LD_PRELOAD= line included).
"""

from __future__ import annotations

from collections.abc import Sequence

from . import templates
from .context import Context
from .host.commands import Completed


def run(ctx: Context, argv: Sequence[str], timeout: int = 120) -> Completed:
    """``argv`` as the service user, in the units' environment and sandbox."""
    properties = templates.probe_properties(ctx.settings, ctx.facts)
    return ctx.host.run(["systemd-run", "--quiet", "--pipe", "--wait", "--collect",
                         "--service-type=exec", f"--property=RuntimeMaxSec={timeout}",
                         *[f"--property={p}" for p in properties], "--", *argv])
