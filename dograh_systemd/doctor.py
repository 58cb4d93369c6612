"""dograhctl doctor: check everything a start needs, and say what to fix.

Everything of the app's (its interpreter, imports, env files) is checked
through ``probe``: as the service user, with the units' environment and
sandbox, never as root. A pass here means the units can start. Which groups
of checks apply is the mode's to say: a host's own API workers, its nginx site.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import app_secrets, capacity, certificates, etcd, front, paths, preflight, probe, units
from .certificates import Pair
from .cluster import members
from .cluster.keys import Keys
from .config import read_env
from .context import Context
from .errors import DograhError
from .record import Fleet
from .upstream import Member, dial_address

SERVICE_USER = "dograh"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def for_workers(ctx: Context, rendered: Mapping[str, str], front: bool) -> list[Check]:
    """What API workers of this host's own need: their interpreter, env files, imports and
    ports, the services the app reaches, Dograh's own needs and the call ceiling.
    ``rendered``: the unit files the config renders now, by name; ``front``: this host's
    nginx carries their calls."""
    settings = ctx.settings
    checks = [
        _interpreter(ctx),
        *[_readable(ctx, path) for path in settings.unit_env_files
          # What dograhctl makes when needed is optional.
          if path not in (paths.SECRETS, paths.SERVICES) or ctx.files.exists(path)],
        _imports(ctx, "worker runtime", "import dograh_systemd.worker.runtime",
                 "the app's venv needs uvicorn (Dograh's requirements have it); "
                 f"{paths.RUNTIME_PATH} comes with the package"),
        _imports(ctx, f"app {settings.app}", _import_app(settings.app),
                 "install the app's requirements in its venv and set its env in "
                 f"{settings.config_path} or DOGRAH_ENV_FILES"),
        _ports(ctx),
    ]
    env = _app_env(ctx)
    for key, default_port in (("REDIS_URL", 6379), ("DATABASE_URL", 5432)):
        if env.get(key):
            checks.append(_reachable(ctx, key, env[key], default_port))
    if settings.checkout:
        checks += [*(_secret(env, name) for name in app_secrets.PLACEHOLDERS),
                   _tool(ctx, "node", "node --version", NODE_AT_LEAST,
                         "Dograh's API runs an MCP validator on Node >= 22.6 (Debian's is "
                         "older): install one and name its bin/ in DOGRAH_TOOLS_PATH"),
                   _tool(ctx, "ffmpeg", "ffmpeg -version", None,
                         "apt install ffmpeg, or name the directory of yours in "
                         "DOGRAH_TOOLS_PATH")]
    if settings.calls_path:
        checks.append(_call_registry(ctx, env.get(app_secrets.DEVOPS, ""), rendered))
    checks.append(_ceiling(ctx, front))
    return checks


def for_cluster(ctx: Context) -> Check:
    """A cluster's etcd answers this host's user."""
    settings = ctx.settings
    name = f"etcd {' '.join(settings.etcd_endpoints)}"
    try:
        found, revision = members.client(ctx).range(Keys(settings.cluster).prefix, prefix=True)
    except (DograhError, etcd.Unavailable) as exc:
        return Check(name, False, str(exc), "start etcd where it runs, or fix DOGRAH_ETCD_* "
                     "and the password file (dograhctl etcd join FILE writes them)")
    return Check(name, True, f"answers {settings.etcd_user}: {len(found)} key(s) of cluster "
                 f"{settings.cluster} at revision {revision}")


def for_site(ctx: Context) -> list[Check]:
    """What this host's nginx site needs: a config nginx takes, its certificate and its
    renewal, and how requests by address reach it."""
    settings = ctx.settings
    checks = [_check("nginx config", ctx.nginx.test, "nginx -t is fine",
                     "fix what nginx -t names")]
    pair = front.serving(settings, ctx.files)
    if pair:
        checks.append(_certificate(ctx, pair))
    if settings.tls == "acme":
        checks.append(_acme_renewal(ctx))
    checks.append(_by_address(ctx))
    return checks


def _ceiling(ctx: Context, front: bool) -> Check:
    """The host's call ceiling; a limit a setting could lift must not bind before memory."""
    record = ctx.store.load()
    ceiling = capacity.measure(ctx, record.fleet if record else Fleet(), front)
    lift = ceiling.short_of_memory
    return Check("call ceiling", lift is None, ceiling.describe(), lift or "")


# A certificate this close to its end fails the check.
DAYS_LEFT_AT_LEAST = 7


def _certificate(ctx: Context, pair: Pair) -> Check:
    name = f"certificate {pair.certificate}"
    try:
        facts = certificates.read(ctx.host, pair)
    except DograhError as exc:
        return Check(name, False, str(exc), "fix DOGRAH_TLS_CERTIFICATE and DOGRAH_TLS_KEY, or "
                     "run dograhctl render")
    wanted = ctx.settings.public_names or ["localhost"]
    missing = [host for host in wanted if not facts.covers(host)]
    days = facts.days_left(datetime.datetime.now(datetime.UTC))
    detail = f"covers {', '.join(wanted)}, {days} days left"
    if missing:
        return Check(name, False, f"does not cover {', '.join(missing)}",
                     "a certificate for DOGRAH_NGINX_SERVER_NAME (dograhctl render makes or "
                     "issues one for self-signed and acme)")
    if days < DAYS_LEFT_AT_LEAST:
        return Check(name, False, detail, "renew it (acme: certbot renew)")
    return Check(name, True, detail + (" (self-signed: browsers warn)"
                                       if ctx.settings.tls == "self-signed" else ""))


def _acme_renewal(ctx: Context) -> Check:
    name = "ACME renewal"
    conf = ctx.files.read(paths.ACME_RENEWAL) or ""
    if f"renew_hook = {paths.CERTBOT_DEPLOY_HOOK}" not in conf:
        return Check(name, False, f"{paths.ACME_RENEWAL} has no deploy hook that reloads nginx",
                     "run dograhctl render (it asks certbot for the certificate with the hook)")
    timer = ctx.host.run(["systemctl", "is-enabled", "certbot.timer"]).stdout.strip()
    if timer != "enabled":
        return Check(name, False, f"certbot.timer is {timer or 'missing'}",
                     "systemctl enable --now certbot.timer")
    return Check(name, True, "certbot.timer renews it; the deploy hook reloads nginx")


def _by_address(ctx: Context) -> Check:
    names = ctx.settings.nginx_server_name
    if front.read(ctx).default_server:
        return Check("reached by address", True, "the site is nginx's default server")
    return Check("reached by address", True, "an nginx site of the admin's is the default "
                 f"server: requests by address go there; the API answers for {names}")


NODE_AT_LEAST = (22, 6)


def _secret(env: dict[str, str], name: str) -> Check:
    if app_secrets.is_real(name, env.get(name)):
        return Check(name, True, "set (not the placeholder)")
    return Check(name, False, "missing or Dograh's example value: its API will not start, or "
                 "anyone can sign its logins", "run dograhctl scale (it makes one), or set a "
                 "real one in the env files")


def _tool(ctx: Context, name: str, command: str, at_least: tuple[int, ...] | None,
          fix: str) -> Check:
    """A program the app runs, found on the units' PATH, as the service user."""
    result = probe.run(ctx, ["/bin/sh", "-c", command])
    first = (result.stdout.strip().splitlines() or [""])[0]
    if result.returncode != 0:
        return Check(name, False, "not found on the units' PATH", fix)
    found = re.search(r"(\d+)\.(\d+)", first)
    version = tuple(int(part) for part in found.groups()) if found else ()
    if at_least and version < at_least:
        return Check(name, False, f"{first}, older than {'.'.join(map(str, at_least))}", fix)
    return Check(name, True, first)


def _call_registry(ctx: Context, secret: str, rendered: Mapping[str, str]) -> Check:
    """The app's call registry answers a running worker, with the secret. It asks the
    running fleet: when that runs an earlier configuration, the check says so."""
    settings = ctx.settings
    name = f"call registry {settings.calls_path}"
    record = ctx.store.load()
    role_units = record.fleet.of(settings.api.role.name) if record else ()
    running = [unit for unit, state in ctx.systemd.show(role_units).items() if state.ready]
    if not running:
        return Check(name, False, "no API worker runs to ask", "start them: dograhctl scale")
    behind = _running_an_earlier_config(ctx, rendered)
    asked = f"{running[0]} (the running fleet" + (", which runs an earlier configuration)"
                                                  if behind else ")")
    port = settings.api.role.port(running[0])
    address = Member(dial_address(settings.host), port).endpoint
    fix_behind = ("the running fleet runs an earlier configuration: move it onto the "
                  "configured app with dograhctl restart, then run doctor again")
    try:
        code, body = ctx.host.machine.http_get(f"http://{address}{settings.calls_path}",
                                               {settings.calls_header: secret})
        if code != 200:
            return Check(name, False, f"{asked} answers HTTP {code}", fix_behind if behind
                         else f"check {app_secrets.DEVOPS} and DOGRAH_CALLS_HEADER")
        calls = json.loads(body)["active_calls"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Check(name, False, f"{asked} does not answer it ({exc})",
                     fix_behind if behind else "check DOGRAH_CALLS_PATH")
    return Check(name, True, f"{asked} holds {calls} call(s)")


def _running_an_earlier_config(ctx: Context, rendered: Mapping[str, str]) -> bool:
    """Whether the API workers run another definition than the config renders now."""
    record = ctx.store.load()
    return record is not None and ctx.settings.api.role.name in units.behind(
        ctx.files, ctx.settings, record.fleet, rendered)


def _app_env(ctx: Context) -> dict[str, str]:
    """The app's env files as systemd reads them (only to find the services to reach)."""
    env: dict[str, str] = {}
    for path in ctx.settings.unit_env_files:
        env.update(read_env(ctx.files, path))
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
    record = ctx.store.load()
    ours = set(record.fleet.api_ports()) if record else set()
    band = 1 if ours and min(ours) in settings.band_ports(1) else 0
    wanted = set(list(settings.band_ports(band))[:settings.api_workers]) - ours
    try:
        preflight.check_ports_free(ctx.host.machine, settings.host, wanted)
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


def _reachable(ctx: Context, key: str, url: str, default_port: int) -> Check:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or default_port
    why = ctx.host.machine.reachable(host, port)
    if why:
        return Check(key, False, f"{host}:{port} does not answer ({why})",
                     f"start the service, or fix {key}")
    return Check(key, True, f"{host}:{port} answers")
