"""dograhctl doctor: check everything a start needs, and say what to fix.

Everything of the app's (its interpreter, imports, env files) is checked
through ``probe``: as the service user, with the units' environment and
sandbox, never as root. A pass here means the units can start.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from dotenv import dotenv_values

from . import paths, preflight, probe
from .context import Context
from .errors import DograhError
from .plan import ports_of

SERVICE_USER = "dograh"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run(ctx: Context) -> list[Check]:
    settings = ctx.settings
    checks = [
        _interpreter(ctx),
        *[_readable(ctx, path) for path in (settings.config_path, *settings.env_files)],
        _imports(ctx, "worker runtime", "import dograh_systemd.worker.runtime",
                 "the app's venv needs uvicorn (Dograh's requirements have it); "
                 f"{paths.RUNTIME_PATH} comes with the package"),
        _imports(ctx, f"app {settings.app}", _import_app(settings.app),
                 "install the app's requirements in its venv and set its env in "
                 f"{settings.config_path} or DOGRAH_ENV_FILES"),
        _ports(ctx),
        _check("nginx config", ctx.nginx.test, "nginx -t is fine", "fix what nginx -t names"),
    ]
    env = _app_env(ctx)
    for key, default_port in (("REDIS_URL", 6379), ("DATABASE_URL", 5432)):
        if env.get(key):
            checks.append(_reachable(key, env[key], default_port))
    return checks


def _app_env(ctx: Context) -> dict[str, str]:
    """The app's env files as systemd reads them (only to find the services to reach)."""
    env: dict[str, str] = {}
    for path in (ctx.settings.config_path, *ctx.settings.env_files):
        if path.is_file():
            env.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    return env


def _import_app(app: str) -> str:
    module, attribute = app.split(":")
    return (f"import importlib, functools; m = importlib.import_module({module!r}); "
            f"functools.reduce(getattr, {attribute!r}.split('.'), m)")


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1]


def _interpreter(ctx: Context) -> Check:
    python = ctx.settings.python
    name = f"interpreter {python}"
    result = probe.run(ctx, [str(python), "-c", "import sys; print(sys.version)"])
    if result.returncode != 0:
        return Check(name, False, f"does not run as the service user: "
                     f"{_last_line(result.stderr)}",
                     "create the venv, or set DOGRAH_PYTHON to an interpreter the "
                     f"{SERVICE_USER} user can run")
    return Check(name, True, "Python " + result.stdout.split(" ")[0].strip())


def _readable(ctx: Context, path: object) -> Check:
    ok = probe.run(ctx, ["/usr/bin/test", "-r", str(path)]).returncode == 0
    return Check(f"env file {path}", ok, "readable by the service user" if ok else
                 "not readable by the service user",
                 f"chgrp {SERVICE_USER} {path} && chmod g+r {path}")


def _imports(ctx: Context, name: str, code: str, fix: str) -> Check:
    settings = ctx.settings
    result = probe.run(ctx, [
        str(settings.python), "-c",
        f"import sys; sys.path.insert(0, {str(settings.app_dir)!r}); {code}"])
    if result.returncode == 0:
        return Check(name, True, "imports as the service user")
    return Check(name, False, f"does not import: {_last_line(result.stderr)}", fix)


def _ports(ctx: Context) -> Check:
    settings = ctx.settings
    api = settings.api.role
    record = ctx.store.load()
    ours = ports_of(api, record.fleet.of(api.name)) if record else set()
    band = 1 if ours and min(ours) in settings.band_ports(1) else 0
    wanted = set(list(settings.band_ports(band))[:settings.api_workers]) - ours
    try:
        preflight.check_ports_free(settings.host, wanted)
    except DograhError as exc:
        return Check("worker ports", False, str(exc), "stop the other process or change "
                     "UVICORN_BASE_PORT")
    return Check("worker ports", True, f"free for {settings.api_workers} workers")


def _check(name: str, check: Callable[[], None], good: str, fix: str) -> Check:
    try:
        check()
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
