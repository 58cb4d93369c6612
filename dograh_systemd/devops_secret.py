"""Dograh's DOGRAH_DEVOPS_SECRET: its API refuses to start without a real one, and
its call registry answers only with it. dograhctl makes one for a Dograh
checkout that has none.

It goes into /etc/dograh/secrets.env (root:dograh, 0640), which the units read
after every other env file, and is never printed. Once another file sets a
real secret, that file is removed and the admin's secret is the one in use.
"""

from __future__ import annotations

import secrets

from . import paths
from .config import Settings, read_env
from .host.files import Files
from .worker import contract

KEY = contract.APP_CALLS_SECRET
# What Dograh's own .env template ships, and its start script refuses.
PLACEHOLDER = "change-me-dograh-devops-secret"


def is_real(value: str | None) -> bool:
    return bool(value) and value != PLACEHOLDER


def set_by_admin(files: Files, settings: Settings) -> str | None:
    """The value the admin's own env files give the units (a later file wins)."""
    value = None
    for path in settings.unit_env_files:
        if path != paths.SECRETS:
            value = read_env(files, path).get(KEY, value)
    return value


def ensure(files: Files, settings: Settings) -> str | None:
    """Make the secret, or drop the one made earlier; what was done, or None."""
    if settings.checkout is None:
        return None
    made = files.exists(paths.SECRETS)
    if is_real(set_by_admin(files, settings)):
        if made:
            files.unlink(paths.SECRETS)
            return f"removed {paths.SECRETS}: {KEY} is set in the env files now"
        return None
    if made and is_real(read_env(files, paths.SECRETS).get(KEY)):
        return None
    files.write_atomic(paths.SECRETS, f"# Made by dograhctl for Dograh's API; see "
                       f"dograhctl(1).\n{KEY}={secrets.token_hex(32)}\n", mode=0o640,
                       group="dograh")
    return f"made a new {KEY} in {paths.SECRETS} (Dograh's API needs one; it is not printed)"
