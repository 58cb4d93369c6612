"""Dograh's secrets: its API refuses to start without a real DOGRAH_DEVOPS_SECRET (its
call registry answers only with it), and signs its logins with OSS_JWT_SECRET, whose
example value anyone knows. dograhctl makes each one the admin's env files do not set
to a real value, for a Dograh layout.

They go into /etc/dograh/secrets.env (root:dograh, 0640), which the units read
after every other env file, and are never printed. A secret made once is kept
(a new OSS_JWT_SECRET would log everyone out); once the admin sets a real one
elsewhere, dograhctl's copy goes, and the file with it when none is left.
"""

from __future__ import annotations

import secrets

from . import paths
from .config import Settings, read_env
from .host.files import Files
from .worker import contract

DEVOPS = contract.APP_CALLS_SECRET
# Each secret, and the example value Dograh ships for it (its start script refuses the
# first; the second is its code's default).
PLACEHOLDERS = {DEVOPS: "change-me-dograh-devops-secret",
                "OSS_JWT_SECRET": "change-me-in-production"}


def is_real(key: str, value: str | None) -> bool:
    return bool(value) and value != PLACEHOLDERS[key]


def set_by_admin(files: Files, settings: Settings, key: str) -> str | None:
    """The value the admin's own env files give the units (a later file wins)."""
    value = None
    for path in settings.unit_env_files:
        if path != paths.SECRETS:
            value = read_env(files, path).get(key, value)
    return value


def ensure(files: Files, settings: Settings) -> str | None:
    """Make the secrets the admin did not set, or drop those set since; what was done,
    or None."""
    if settings.checkout is None:
        return None
    made = read_env(files, paths.SECRETS)
    wanted = {key: made[key] if is_real(key, made.get(key)) else secrets.token_hex(32)
              for key in PLACEHOLDERS if not is_real(key, set_by_admin(files, settings, key))}
    if wanted == {key: made.get(key) for key in made if key in PLACEHOLDERS} \
            and set(made) <= set(PLACEHOLDERS):
        return None
    if not wanted:
        files.unlink(paths.SECRETS)
        return f"removed {paths.SECRETS}: the env files set every secret Dograh needs now"
    files.write_atomic(paths.SECRETS, "# Made by dograhctl for Dograh's API; see dograhctl(1).\n"
                       + "".join(f"{key}={value}\n" for key, value in wanted.items()),
                       mode=0o640, group="dograh")
    new = sorted(set(wanted) - {key for key in made if is_real(key, made[key])})
    if not new:
        return f"{paths.SECRETS} keeps only the secrets the env files do not set"
    return (f"made a new {' and '.join(new)} in {paths.SECRETS} (Dograh's API needs "
            f"{'them' if len(new) > 1 else 'it'}; never printed)")
