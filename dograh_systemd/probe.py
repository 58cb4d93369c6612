"""Run a command the way the units run the app: never as root, never in root's environment.

The command runs as a transient unit with the API worker unit's own [Service]
settings (user, env files, working directory, sandbox), so a probe that
passes means a unit can do the same, and nothing of the app's ever runs as
root or sees root's environment (an env file's LD_PRELOAD= line included).
"""

from __future__ import annotations

from collections.abc import Sequence

from . import paths, templates
from .context import Context
from .systemd import Completed

# What makes the unit a long-running service rather than its environment.
_SERVICE_ONLY = ("Type", "NotifyAccess", "ExecStart", "ExecReload", "Restart", "RestartSec",
                 "TimeoutStartSec", "TimeoutStopSec", "WatchdogSec", "WatchdogSignal",
                 "SyslogIdentifier")


def unit_properties(ctx: Context) -> list[str]:
    """The API worker unit's [Service] settings that a one-off command can take."""
    text = templates.render_units(ctx.settings, ctx.facts)[
        paths.UNIT_DIR / ctx.settings.api.role.unit_file]
    service = text.split("\n[Service]\n", 1)[1].split("\n[", 1)[0]
    properties = []
    for line in service.splitlines():
        key = line.split("=", 1)[0]
        if line and not line.startswith("#") and "=" in line and key not in _SERVICE_ONLY \
                and "%i" not in line:
            properties.append(line)
    return properties


def run(ctx: Context, argv: Sequence[str], timeout: int = 120) -> Completed:
    """``argv`` as the service user, in the units' environment and sandbox."""
    return ctx.systemd.run(["systemd-run", "--quiet", "--pipe", "--wait", "--collect",
                        "--service-type=exec", f"--property=RuntimeMaxSec={timeout}",
                        *[f"--property={p}" for p in unit_properties(ctx)],
                        "--", *argv])
