"""dograhctl doctor: check everything a start needs, and say what to fix.

Imports run as the service user, with the units' environment and import path,
so a pass here means the units can start.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from . import nginx, paths, preflight, systemd
from .config import Settings
from .errors import DograhError
from .names import API_TEMPLATE
from .plan import current_band

SERVICE_USER = "dograh"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run(settings: Settings) -> list[Check]:
    env = unit_environment(settings)
    checks = [
        _interpreter(settings),
        *[_readable(path) for path in (settings.config_path, *settings.env_files)],
        _imports(settings, env, "worker runtime", "import dograh_systemd.worker.runtime",
                 "the app's venv needs uvicorn (Dograh's requirements have it); "
                 f"{paths.RUNTIME_PATH} comes with the package"),
        _imports(settings, env, f"app {settings.app}", _import_app(settings.app),
                 "install the app's requirements in its venv and set its env in "
                 f"{settings.config_path} or DOGRAH_ENV_FILES"),
        _ports(settings),
        _check("nginx config", nginx.test, "nginx -t is fine", "fix what nginx -t names"),
    ]
    for key, default_port in (("REDIS_URL", 6379), ("DATABASE_URL", 5432)):
        if env.get(key):
            checks.append(_reachable(key, env[key], default_port))
    return checks


def unit_environment(settings: Settings) -> dict[str, str]:
    """The environment the units give the app: its env files, then the runtime path."""
    env: dict[str, str] = {}
    for path in (settings.config_path, *settings.env_files):
        if path.is_file():
            env.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    env["PYTHONPATH"] = str(paths.RUNTIME_PATH)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env


def _import_app(app: str) -> str:
    module, attribute = app.split(":")
    return (f"import importlib, functools; m = importlib.import_module({module!r}); "
            f"functools.reduce(getattr, {attribute!r}.split('.'), m)")


def _interpreter(settings: Settings) -> Check:
    name = f"interpreter {settings.python}"
    if not os.access(settings.python, os.X_OK):
        return Check(name, False, "missing or not executable",
                     "create the venv, or set DOGRAH_PYTHON to an existing interpreter")
    version = subprocess.run([str(settings.python), "-c", "import sys; print(sys.version)"],
                             capture_output=True, text=True)
    return Check(name, version.returncode == 0, "Python " + version.stdout.split(" ")[0].strip(),
                 "the interpreter does not run")


def _as_service_user(argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={SERVICE_USER}", f"--regid={SERVICE_USER}", "--init-groups",
            "--", *argv]


def _readable(path: Path) -> Check:
    ok = subprocess.run(_as_service_user(["test", "-r", str(path)])).returncode == 0
    return Check(f"env file {path}", ok, "readable by the service user" if ok else
                 "not readable by the service user",
                 f"chgrp {SERVICE_USER} {path} && chmod g+r {path}")


def _imports(settings: Settings, env: dict[str, str], name: str, code: str, fix: str) -> Check:
    result = subprocess.run(
        _as_service_user([str(settings.python), "-c",
                          f"import sys; sys.path.insert(0, {str(settings.app_dir)!r}); {code}"]),
        capture_output=True, text=True, env=env, cwd=settings.app_dir, timeout=120)
    if result.returncode == 0:
        return Check(name, True, "imports as the service user")
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return Check(name, False, f"does not import: {last}", fix)


def _ports(settings: Settings) -> Check:
    ours = systemd.running_instances(API_TEMPLATE)
    band = current_band(settings, systemd.current_fleet())
    wanted = settings.api_ports(settings.fastapi_workers, band) - ours
    try:
        preflight.check_ports_free(settings.host, wanted)
    except DograhError as exc:
        return Check("worker ports", False, str(exc), "stop the other process or change "
                     "UVICORN_BASE_PORT")
    return Check("worker ports", True, f"free for {settings.fastapi_workers} workers")


def _check(name: str, probe: Callable[[], None], good: str, fix: str) -> Check:
    try:
        probe()
    except DograhError as exc:
        return Check(name, False, str(exc), fix)
    return Check(name, True, good)


def _reachable(key: str, url: str, default_port: int) -> Check:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return Check(key, False, f"{host}:{port} does not answer ({exc.strerror or exc})",
                     f"start the service, or fix {key}")
    return Check(key, True, f"{host}:{port} answers")
