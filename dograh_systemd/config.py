"""Settings: one env file, read with python-dotenv, validated into one frozen object.

Dograh's own variable names are honoured so that an operator's existing
``.env`` keeps working; the package's own keys start with ``DOGRAH_``. Keys this
module does not know are left alone: the same file is the app's environment.
The keys of each role (count, switch, command) come from the role table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values

from . import values
from .roles import MAX_API_WORKERS, ROLES, Kind, Role, default_api_workers

DEFAULT_CONFIG = Path("/etc/dograh/dograh.env")
# A deploy starts a second band of workers this far above the first, as
# Dograh's own rolling update does; bands never overlap (at most 64 workers).
BAND_OFFSET = 100
MAX_BASE_PORT = 65535 - BAND_OFFSET - MAX_API_WORKERS + 1

EXAMPLE_APP = "dograh_systemd.example.app:app"

# Defaults of the keys that depend on the layout: the embedded example, or a
# Dograh checkout (its venv, its api/.env).
EXAMPLE_LAYOUT = {
    "DOGRAH_APP": EXAMPLE_APP,
    "DOGRAH_APP_DIR": "/var/lib/dograh",
    "DOGRAH_PYTHON": "/usr/bin/python3",
    "DOGRAH_ENV_FILES": "",
}


def dograh_layout(checkout: str) -> dict[str, str]:
    return {
        "DOGRAH_APP": "api.app:app",
        "DOGRAH_APP_DIR": checkout,
        "DOGRAH_PYTHON": f"{checkout}/venv/bin/python",
        "DOGRAH_ENV_FILES": f"{checkout}/api/.env",
    }


T = TypeVar("T")


class ConfigError(ValueError):
    """A value in the env file is not acceptable; the message names key and file."""


@dataclass(frozen=True)
class RoleSettings:
    role: Role
    # Instances the config asks for: a count, or 1/0 for a switch or a command.
    count: int
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    config_path: Path
    roles: Mapping[str, RoleSettings]
    base_port: int
    host: str
    app: str
    app_dir: Path
    python: Path
    env_files: tuple[Path, ...]
    nginx_listen: tuple[str | None, int]
    nginx_server_name: str
    nginx_location: str
    worker_memory_mb: int
    drain_timeout: int
    checkout: Path | None

    def role(self, name: str) -> RoleSettings:
        return self.roles[name]

    @property
    def api(self) -> RoleSettings:
        """The API workers' role (the table has exactly one)."""
        return next(r for r in self.roles.values() if r.role.kind is Kind.API)

    @property
    def api_workers(self) -> int:
        return self.api.count

    def band_ports(self, band: int) -> range:
        """Every port API workers of ``band`` (0 or 1) may use."""
        first = self.base_port + band * BAND_OFFSET
        return range(first, first + MAX_API_WORKERS)

    def resolve_command(self, command: tuple[str, ...]) -> tuple[str, ...]:
        """A command whose program is ``python``/``python3`` runs under DOGRAH_PYTHON."""
        if command and command[0] in ("python", "python3"):
            return (str(self.python), *command[1:])
        return command

    @property
    def paths_in_home(self) -> bool:
        """Whether the units need a home directory: the app, its Python or an env file."""
        return any(path.is_relative_to("/home") or path.is_relative_to("/root")
                   for path in (self.app_dir, self.python, *self.env_files))


def config_path(explicit: str | None = None) -> Path:
    """``--config``, else ``$DOGRAH_CONFIG``, else the packaged default; always absolute,
    since unit files name it in EnvironmentFile=."""
    path = Path(explicit or os.environ.get("DOGRAH_CONFIG") or DEFAULT_CONFIG)
    if not path.is_absolute():
        raise ConfigError(f"{path}: the config file must be given as an absolute path "
                          "(unit files name it)")
    return path


def load(path: Path, roles: tuple[Role, ...] = ROLES) -> Settings:
    """Read and validate ``path``; a missing default file means all defaults."""
    if path.exists():
        try:
            raw = {k: v for k, v in dotenv_values(path).items() if v is not None}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    elif path == DEFAULT_CONFIG:
        raw = {}
    else:
        raise ConfigError(f"{path}: no such config file")
    return parse(path, raw, roles)


@dataclass(frozen=True)
class Key:
    """One key of dograhctl's own: its Settings field, parser, and what it allows."""

    name: str
    field: str
    parse: Callable[[str], Any]
    allowed: str
    default: str = ""


KEYS = (
    Key("UVICORN_BASE_PORT", "base_port", values.int_in(1024, MAX_BASE_PORT),
        f"a port 1024..{MAX_BASE_PORT} (two bands of workers must fit below 65536)", "8000"),
    Key("UVICORN_HOST", "host", values.ip_address,
        "an IP address without a scope id, e.g. 127.0.0.1", "127.0.0.1"),
    Key("DOGRAH_APP", "app", values.app_ref, "module:attribute, e.g. api.app:app"),
    Key("DOGRAH_APP_DIR", "app_dir", values.absolute_path, "an absolute path"),
    Key("DOGRAH_PYTHON", "python", values.absolute_path,
        "the absolute path of a Python interpreter"),
    Key("DOGRAH_ENV_FILES", "env_files", values.path_list, "absolute paths separated by spaces"),
    Key("DOGRAH_NGINX_LISTEN", "nginx_listen", values.listen, "a port, or address:port", "80"),
    Key("DOGRAH_NGINX_SERVER_NAME", "nginx_server_name", values.server_names,
        "host names separated by spaces", "localhost"),
    Key("DOGRAH_NGINX_LOCATION", "nginx_location", values.location,
        "a URL path that starts and ends with /", "/api/"),
    Key("DOGRAH_WORKER_MEMORY_MB", "worker_memory_mb", values.int_in(16, 65536),
        "an integer 16..65536 (MB)", "400"),
    Key("DRAIN_TIMEOUT", "drain_timeout", values.int_in(0, 86400), "seconds, 0..86400", "300"),
)
CHECKOUT_KEY = Key("DOGRAH_CHECKOUT", "checkout",
                   lambda v: values.absolute_path(v) if v else None,
                   "the absolute path of a Dograh checkout")


def package_keys(roles: tuple[Role, ...] = ROLES) -> frozenset[str]:
    """Every key dograhctl reads; the rest of the env file is the app's own."""
    role_keys = {key for role in roles
                 for key in (role.count_key, role.enable_key, role.command_key) if key}
    return frozenset(key.name for key in (CHECKOUT_KEY, *KEYS)) | role_keys


def parse(path: Path, raw: Mapping[str, str], roles: tuple[Role, ...] = ROLES) -> Settings:
    def get(key: str, default: str, parse_value: Callable[[str], T], allowed: str) -> T:
        value = raw.get(key, default).strip()
        try:
            return parse_value(values.no_control_characters(value))
        except (ValueError, TypeError) as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise ConfigError(f"{path}: {key}={value!r} is invalid{detail}; "
                              f"allowed: {allowed}") from None

    def read(key: Key, layout: Mapping[str, str] = EXAMPLE_LAYOUT) -> Any:
        return get(key.name, layout.get(key.name, key.default), key.parse, key.allowed)

    checkout = read(CHECKOUT_KEY)
    layout = dograh_layout(str(checkout)) if checkout else EXAMPLE_LAYOUT

    def role_settings(role: Role) -> RoleSettings:
        command: tuple[str, ...] = ()
        if role.command_key:
            default = role.dograh_command if checkout else role.example_command
            optional = role.kind is Kind.MIGRATION
            command = get(role.command_key, default,
                          values.optional_command if optional else values.command,
                          "a command line, or empty for none" if optional else "a command line")
        if role.kind is Kind.MIGRATION:
            count = 1 if command else 0
        elif role.kind is Kind.SINGLETON:
            count = int(get(role.enable_key, "true", values.boolean, "true or false"))
        else:
            default_count = default_api_workers() if role.kind is Kind.API else 1
            count = get(role.count_key, str(default_count),
                        values.int_in(role.count_min, role.count_max),
                        f"an integer {role.count_min}..{role.count_max}")
        return RoleSettings(role, count, command)

    settings = Settings(config_path=path, checkout=checkout,
                        roles={role.name: role_settings(role) for role in roles},
                        **{key.field: read(key, layout) for key in KEYS})
    port = settings.nginx_listen[1]
    for band in (0, 1):
        if port in settings.band_ports(band):
            raise ConfigError(
                f"{path}: DOGRAH_NGINX_LISTEN={raw.get('DOGRAH_NGINX_LISTEN', '80')!r} is "
                f"invalid (port {port} is one the API workers may use: "
                + " and ".join(f"{b[0]}-{b[-1]}" for b in map(settings.band_ports, (0, 1)))
                + "); allowed: a port outside them, or another UVICORN_BASE_PORT")
    return settings
