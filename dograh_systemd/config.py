"""Settings: one env file, read with python-dotenv, validated into one frozen object.

Dograh's own variable names are honoured so that an operator's existing
``.env`` keeps working; the package's own keys start with ``DOGRAH_``. Keys this
module does not know are left alone: the same file is the app's environment.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values

DEFAULT_CONFIG = Path("/etc/dograh/dograh.env")
MAX_API_WORKERS = 64
MAX_ARQ_WORKERS = 32
# A deploy starts a second band of workers this far above the first, as
# Dograh's own rolling update does; bands never overlap (MAX_API_WORKERS < 100).
BAND_OFFSET = 100
MAX_BASE_PORT = 65536 - BAND_OFFSET - MAX_API_WORKERS
# nginx closes idle upstream connections after this; the worker must wait
# longer, or nginx reuses a connection the worker is closing and answers 502.
UPSTREAM_KEEPALIVE_TIMEOUT = 60
WORKER_KEEPALIVE_TIMEOUT = UPSTREAM_KEEPALIVE_TIMEOUT + 15

EXAMPLE_APP = "dograh_systemd.example.app:app"
EXAMPLE_SERVICE = "python3 -m dograh_systemd.example.service"

# Defaults when nothing is configured: the embedded example.
EXAMPLE_DEFAULTS = {
    "DOGRAH_APP": EXAMPLE_APP,
    "DOGRAH_APP_DIR": "/var/lib/dograh",
    "DOGRAH_PYTHON": "/usr/bin/python3",
    "DOGRAH_ARI_MANAGER_COMMAND": f"{EXAMPLE_SERVICE} ari-manager",
    "DOGRAH_CAMPAIGN_ORCHESTRATOR_COMMAND": f"{EXAMPLE_SERVICE} campaign-orchestrator",
    "DOGRAH_ARQ_COMMAND": f"{EXAMPLE_SERVICE} arq-worker",
    "DOGRAH_MIGRATE_COMMAND": "",
    "DOGRAH_ENV_FILES": "",
}


def dograh_defaults(checkout: str) -> dict[str, str]:
    """Defaults for a Dograh checkout: its venv, its api/.env, its own start commands."""
    return {
        "DOGRAH_APP": "api.app:app",
        "DOGRAH_APP_DIR": checkout,
        "DOGRAH_PYTHON": f"{checkout}/venv/bin/python",
        "DOGRAH_ARI_MANAGER_COMMAND": "python -m api.services.telephony.ari_manager",
        "DOGRAH_CAMPAIGN_ORCHESTRATOR_COMMAND":
            "python -m api.services.campaign.campaign_orchestrator",
        "DOGRAH_ARQ_COMMAND": "python -m arq api.tasks.arq.WorkerSettings "
                              "--custom-log-dict api.tasks.arq.LOG_CONFIG",
        "DOGRAH_MIGRATE_COMMAND": "python -m alembic -c api/alembic.ini upgrade head",
        "DOGRAH_ENV_FILES": f"{checkout}/api/.env",
    }

T = TypeVar("T")


class ConfigError(ValueError):
    """A value in the env file is not acceptable; the message names key and file."""


@dataclass(frozen=True)
class Settings:
    config_path: Path
    fastapi_workers: int
    arq_workers: int
    base_port: int
    host: str
    enable_ari_manager: bool
    enable_campaign_orchestrator: bool
    app: str
    app_dir: Path
    python: Path
    ari_manager_command: tuple[str, ...]
    campaign_orchestrator_command: tuple[str, ...]
    arq_command: tuple[str, ...]
    env_files: tuple[Path, ...]
    nginx_listen: str
    nginx_server_name: str
    nginx_location: str
    worker_memory_mb: int
    drain_timeout: int
    checkout: Path | None
    migrate_command: tuple[str, ...]

    def api_ports(self, count: int, band: int = 0) -> frozenset[int]:
        """The ports of ``count`` API workers in ``band`` (0 or 1)."""
        first = self.base_port + band * BAND_OFFSET
        return frozenset(range(first, first + count))

    def resolve_command(self, command: tuple[str, ...]) -> tuple[str, ...]:
        """A command whose program is ``python``/``python3`` runs under DOGRAH_PYTHON."""
        if command[0] in ("python", "python3"):
            return (str(self.python), *command[1:])
        return command


def default_workers() -> int:
    """One API worker per CPU, capped at 8 (Dograh's guidance)."""
    return max(1, min(os.cpu_count() or 1, 8))


def config_path(explicit: str | None = None) -> Path:
    """``--config``, else ``$DOGRAH_CONFIG``, else the packaged default."""
    return Path(explicit or os.environ.get("DOGRAH_CONFIG") or DEFAULT_CONFIG)


def load(path: Path) -> Settings:
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
    return _parse(path, raw)


def _parse(path: Path, raw: dict[str, str]) -> Settings:
    checkout = raw.get("DOGRAH_CHECKOUT", "").strip()
    defaults = EXAMPLE_DEFAULTS
    if checkout:
        try:
            _absolute_path(checkout)
        except ValueError as exc:
            raise ConfigError(f"{path}: DOGRAH_CHECKOUT={checkout!r} is invalid; allowed: "
                              "the absolute path of a Dograh checkout") from exc
        defaults = dograh_defaults(checkout.rstrip("/"))

    def get(key: str, default: str, parse: Callable[[str], T], allowed: str) -> T:
        value = raw.get(key, default).strip()
        try:
            return parse(value)
        except (ValueError, TypeError) as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise ConfigError(f"{path}: {key}={value!r} is invalid{detail}; allowed: {allowed}") from exc

    settings = Settings(
        config_path=path,
        fastapi_workers=get("FASTAPI_WORKERS", str(default_workers()),
                            _int_in(1, MAX_API_WORKERS), f"an integer 1..{MAX_API_WORKERS}"),
        arq_workers=get("ARQ_WORKERS", "1", _int_in(0, MAX_ARQ_WORKERS),
                        f"an integer 0..{MAX_ARQ_WORKERS}"),
        base_port=get("UVICORN_BASE_PORT", "8000", _int_in(1024, MAX_BASE_PORT),
                      f"a port 1024..{MAX_BASE_PORT} (two bands of workers must fit below 65536)"),
        host=get("UVICORN_HOST", "127.0.0.1", _ip_address, "an IP address, e.g. 127.0.0.1"),
        enable_ari_manager=get("ENABLE_ARI_MANAGER", "true", _bool, "true or false"),
        enable_campaign_orchestrator=get("ENABLE_CAMPAIGN_ORCHESTRATOR", "true", _bool,
                                         "true or false"),
        app=get("DOGRAH_APP", defaults["DOGRAH_APP"], _app_ref,
                "module:attribute, e.g. api.app:app"),
        app_dir=get("DOGRAH_APP_DIR", defaults["DOGRAH_APP_DIR"], _absolute_path,
                    "an absolute path"),
        python=get("DOGRAH_PYTHON", defaults["DOGRAH_PYTHON"], _absolute_path,
                   "the absolute path of a Python interpreter"),
        ari_manager_command=get("DOGRAH_ARI_MANAGER_COMMAND",
                                defaults["DOGRAH_ARI_MANAGER_COMMAND"], _command, "a command line"),
        campaign_orchestrator_command=get(
            "DOGRAH_CAMPAIGN_ORCHESTRATOR_COMMAND",
            defaults["DOGRAH_CAMPAIGN_ORCHESTRATOR_COMMAND"], _command, "a command line"),
        arq_command=get("DOGRAH_ARQ_COMMAND", defaults["DOGRAH_ARQ_COMMAND"], _command,
                        "a command line"),
        migrate_command=get("DOGRAH_MIGRATE_COMMAND", defaults["DOGRAH_MIGRATE_COMMAND"],
                            _optional_command, "a command line, or empty for none"),
        env_files=get("DOGRAH_ENV_FILES", defaults["DOGRAH_ENV_FILES"], _path_list,
                      "absolute paths separated by spaces"),
        nginx_listen=get("DOGRAH_NGINX_LISTEN", "80", _listen, "a port, or address:port"),
        nginx_server_name=get("DOGRAH_NGINX_SERVER_NAME", "localhost", _server_names,
                              "host names separated by spaces"),
        nginx_location=get("DOGRAH_NGINX_LOCATION", "/api/", _location,
                           "a URL path that starts and ends with /"),
        worker_memory_mb=get("DOGRAH_WORKER_MEMORY_MB", "400", _int_in(16, 65536),
                             "an integer 16..65536 (MB)"),
        drain_timeout=get("DRAIN_TIMEOUT", "300", _int_in(0, 86400), "seconds, 0..86400"),
        checkout=Path(checkout.rstrip("/")) if checkout else None,
    )
    return settings


# -- value parsers: each raises ValueError with a short reason ------------------

def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"out of range {low}..{high}")
        return number
    return parse


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean")


def _ip_address(value: str) -> str:
    return str(ipaddress.ip_address(value))


_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_APP_REF = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*")


def _app_ref(value: str) -> str:
    if not _APP_REF.fullmatch(value):
        raise ValueError("")
    return value


def _absolute_path(value: str) -> Path:
    # Paths go into unit files and nginx config verbatim: refuse what would
    # need quoting there rather than quote it.
    if not value.startswith("/") or re.search(r"[\s\"'\\%$;]", value):
        raise ValueError("")
    return Path(value)


def _path_list(value: str) -> tuple[Path, ...]:
    return tuple(_absolute_path(item) for item in value.split())


def _command(value: str) -> tuple[str, ...]:
    words = tuple(shlex.split(value))
    if not words:
        raise ValueError("empty")
    if not (words[0].startswith("/") or words[0] in ("python", "python3")):
        raise ValueError("the program must be an absolute path, python or python3")
    return words


def _optional_command(value: str) -> tuple[str, ...]:
    return _command(value) if value.strip() else ()


def _listen(value: str) -> str:
    address, _, port = value.rpartition(":")
    if address:
        _ip_address(address.strip("[]"))
    _int_in(1, 65535)(port)
    return value


def _server_names(value: str) -> str:
    names = value.split()
    if not names or not all(re.fullmatch(r"[A-Za-z0-9_.*~^\-]+", n) for n in names):
        raise ValueError("")
    return " ".join(names)


def _location(value: str) -> str:
    if not re.fullmatch(r"/([A-Za-z0-9_.\-]+/)*", value):
        raise ValueError("")
    return value
