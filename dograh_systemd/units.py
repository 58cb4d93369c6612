"""The fleet's units on the host: their files, the instances systemd knows, and what
each role's processes run on.

A role's *definition* is a digest of its unit file and of the app's
environment (the env files without dograhctl's own keys): when the config
renders a different one, processes started earlier run something else. The
digest is keyed with a secret only root can read, so the world-readable fleet
record gives nobody a way to test guesses of the app's secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from . import paths
from .config import Settings, package_keys, read_env
from .host import Host
from .host.files import Files
from .record import Fleet
from .roles import Role, role_of


def by_name(rendered: Mapping[Path, str]) -> dict[str, str]:
    return {path.name: text for path, text in rendered.items() if path.parent == paths.UNIT_DIR}


def on_host(host: Host, roles: Iterable[Role], host_units: bool = False) -> list[str]:
    """Every instance of the roles' units (and with ``host_units``, the host's own units)
    that systemd knows, loaded in any state, or that dograh.target pulls in at boot:
    what runs, or would after a reboot."""
    systemd = host.systemd
    seen = set(systemd.listed("dograh-*")) | set(systemd.wanted_by(paths.TARGET))
    roles = tuple(roles)
    return sorted(unit for unit in seen
                  if role_of(unit, roles) or (host_units and unit in paths.HOST_UNITS))


def installed(files: Files, settings: Settings) -> dict[str, str]:
    """The generated unit files on disk that the role table knows, by name."""
    found = {}
    for name in unit_file_names(settings):
        path = paths.UNIT_DIR / name
        if files.is_generated(path):
            found[name] = files.read(path) or ""
    return found


def unit_file_names(settings: Settings) -> list[str]:
    """Every unit file name the role table and the host units can render."""
    return [r.role.unit_file for r in settings.roles.values()] + [paths.TARGET,
                                                                   *paths.HOST_UNITS]


def install(host: Host, texts: Mapping[str, str]) -> list[str]:
    """Write the unit files of ``texts`` that differ on disk; the names that did."""
    changes = host.files.changed({paths.UNIT_DIR / name: text for name, text in texts.items()})
    for path, text in changes.items():
        host.files.write_generated(path, text)
    if changes:
        host.systemd.daemon_reload()
    return sorted(path.name for path in changes)


def prune(host: Host, settings: Settings, keep: Mapping[str, str]) -> None:
    """Remove generated unit files the role table knows but ``keep`` does not name."""
    dropped = [paths.UNIT_DIR / name for name in unit_file_names(settings)
               if name not in keep and host.files.is_generated(paths.UNIT_DIR / name)]
    for path in dropped:
        host.files.unlink(path)
    if dropped:
        host.systemd.daemon_reload()


def app_environment(files: Files, settings: Settings) -> str:
    """The app's own keys from every env file, in a stable form."""
    own = package_keys(tuple(r.role for r in settings.roles.values()))
    lines = []
    for path in settings.unit_env_files:
        if not files.exists(path):
            lines.append(f"# {path}: missing")
            continue
        lines.append(f"# {path}")
        env = read_env(files, path)
        lines += [f"{key}={env[key]}" for key in sorted(env) if key not in own]
    return "\n".join(lines)


def definitions(files: Files, settings: Settings, texts: Mapping[str, str],
                key: bytes) -> dict[str, str]:
    """Per role with a unit file in ``texts``, the digest keyed with ``key`` of what its
    processes run on."""
    environment = app_environment(files, settings)
    digests = {}
    for role_settings in settings.roles.values():
        text = texts.get(role_settings.role.unit_file)
        if text is not None:
            digest = hmac.new(key, f"{text}\n{environment}".encode(), hashlib.sha256)
            digests[role_settings.role.name] = digest.hexdigest()[:16]
    return digests


def behind(files: Files, settings: Settings, fleet: Fleet, rendered: Mapping[str, str]
           ) -> list[str]:
    """The roles whose processes run other definitions than the config renders now (as
    root only: the digests are keyed with root's secret; none otherwise)."""
    key = digest_key(files)
    if key is None:
        return []
    return [name for name, digest in definitions(files, settings, rendered, key).items()
            if fleet.of(name) and fleet.definitions.get(name) != digest]


def digest_key(files: Files) -> bytes | None:
    """The key of the definitions' digests; None when there is none yet, or this
    user may not read it (it is root's alone)."""
    try:
        key = files.read(paths.DIGEST_KEY)
    except PermissionError:
        return None
    return key.encode() if key else None


def make_digest_key(files: Files) -> bytes:
    """The key of the definitions' digests, made on first use (root only)."""
    key = digest_key(files)
    if key is None:
        key = secrets.token_hex(32).encode()
        files.write_atomic(paths.DIGEST_KEY, key.decode(), mode=0o600)
    return key
