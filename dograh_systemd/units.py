"""The unit files on disk, and what each role's processes run on.

A role's *definition* is a digest of its unit file and of the app's
environment (the env files without dograhctl's own keys): when the config
renders a different one, processes started earlier run something else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from . import files, paths
from .config import Settings, package_keys
from .systemd import Systemd
from .templates import unit_file_names


def by_name(rendered: Mapping[Path, str]) -> dict[str, str]:
    return {path.name: text for path, text in rendered.items()}


def installed(settings: Settings) -> dict[str, str]:
    """The generated unit files on disk that the role table knows, by name."""
    found = {}
    for name in unit_file_names(settings):
        path = paths.UNIT_DIR / name
        if files.is_generated(path):
            found[name] = files.read(path) or ""
    return found


def install(systemd: Systemd, texts: Mapping[str, str]) -> bool:
    """Write the unit files of ``texts`` that differ on disk; True if any did."""
    changes = files.changed({paths.UNIT_DIR / name: text for name, text in texts.items()})
    for path, text in changes.items():
        files.write_generated(path, text)
    if changes:
        systemd.daemon_reload()
    return bool(changes)


def prune(systemd: Systemd, settings: Settings, keep: Mapping[str, str]) -> None:
    """Remove generated unit files the role table knows but ``keep`` does not name."""
    dropped = [paths.UNIT_DIR / name for name in unit_file_names(settings)
               if name not in keep and files.is_generated(paths.UNIT_DIR / name)]
    for path in dropped:
        path.unlink()
    if dropped:
        systemd.daemon_reload()


def app_environment(settings: Settings) -> str:
    """The app's own keys from every env file, in a stable form."""
    own = package_keys(tuple(r.role for r in settings.roles.values()))
    lines = []
    for path in settings.unit_env_files:
        if not path.is_file():
            lines.append(f"# {path}: missing")
            continue
        lines.append(f"# {path}")
        env = dotenv_values(path)
        lines += [f"{key}={env[key]}" for key in sorted(env) if key not in own]
    return "\n".join(lines)


def definitions(settings: Settings, texts: Mapping[str, str]) -> dict[str, str]:
    """Per role with a unit file in ``texts``, the digest of what its processes run on."""
    environment = app_environment(settings)
    digests = {}
    for role_settings in settings.roles.values():
        text = texts.get(role_settings.role.unit_file)
        if text is not None:
            digest = hashlib.sha256(f"{text}\n{environment}".encode()).hexdigest()
            digests[role_settings.role.name] = digest[:16]
    return digests
