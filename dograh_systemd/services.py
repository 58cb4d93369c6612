"""Dograh's own services from Debian, on this host: PostgreSQL with pgvector, and Redis.

``dograhctl services setup`` does what Dograh's Docker stack does with its own
containers, with Debian's servers: PostgreSQL 17 and postgresql-17-pgvector (Debian 13),
redis-server; a role and a database of their own, with a password made here; the
``vector`` extension created as postgres (a migration run as the app's role may not);
DATABASE_URL and REDIS_URL in /etc/dograh/services.env (root:dograh 0640), which the
units read first, so that an admin's own database or Redis stays one key away in
dograh.env; and Dograh's secrets. What it made is noted beside the fleet record, and the
package's purge drops that database and role, and nothing it did not make.
"""

from __future__ import annotations

import re
import secrets

from . import app_secrets, paths
from .context import Context
from .errors import DograhError

DATABASE = ROLE = "dograh"
POSTGRESQL = "postgresql-17"
PACKAGES = (POSTGRESQL, "postgresql-17-pgvector", "redis-server")
UNITS = ("postgresql.service", "redis-server.service")
REDIS_URL = "redis://127.0.0.1:6379/0"
# How long PostgreSQL may take to accept its first connection.
READY_WAIT = 60


def setup(ctx: Context) -> str:
    """PostgreSQL, pgvector and Redis installed, running, and the app's role, database and
    URLs in place; what was done, in one line."""
    _installed(ctx)
    ctx.systemd.enable(UNITS)
    ctx.systemd.start(UNITS)
    _wait_for_postgresql(ctx)
    role = _exists(ctx, "pg_roles", "rolname", ROLE)
    database = _exists(ctx, "pg_database", "datname", DATABASE)
    if not ctx.files.exists(paths.SERVICES_STATE):
        for kind, name, there in (("role", ROLE, role), ("database", DATABASE, database)):
            if there:
                raise DograhError(f"PostgreSQL has a {kind} {name} that dograhctl did not make: "
                                  "to use it, set DATABASE_URL in the config; or drop it first")
    # Named before they are made: a setup killed midway is finished by the next, and the
    # purge drops these (and nothing that was there before).
    ctx.files.write_atomic(paths.SERVICES_STATE,
                           f"DOGRAH_ROLE={ROLE}\nDOGRAH_DATABASE={DATABASE}\n", mode=0o600)
    # The password goes on psql's stdin, never on a command line.
    _psql(ctx, "postgres", f"{'ALTER' if role else 'CREATE'} ROLE {ROLE} LOGIN PASSWORD "
                           f"'{_password(ctx)}';")
    if not database:
        _psql(ctx, "postgres", f"CREATE DATABASE {DATABASE} OWNER {ROLE};")
    _psql(ctx, DATABASE, "CREATE EXTENSION IF NOT EXISTS vector;")
    said = app_secrets.ensure(ctx.files, ctx.settings)
    return (f"PostgreSQL ({DATABASE}, with pgvector) and Redis run here; DATABASE_URL and "
            f"REDIS_URL are in {paths.SERVICES}" + (f"; {said}" if said else ""))


def _installed(ctx: Context) -> None:
    """Debian's packages, or one line on why they cannot be."""
    missing = [package for package in PACKAGES if not _has(ctx, package)]
    if not missing:
        return
    policy = ctx.host.run(["apt-cache", "policy", *missing]).stdout
    unavailable = [package for package in missing
                   if re.search(rf"^{re.escape(package)}:\n\s+Installed: .*\n\s+Candidate: "
                                r"(?!\(none\))", policy, re.M) is None]
    if unavailable:
        raise DograhError(f"{', '.join(unavailable)} is not in this host's Debian (Debian 13 "
                          "has PostgreSQL 17 with pgvector): run Dograh's database elsewhere "
                          "and set DATABASE_URL and REDIS_URL in the config")
    ctx.report(f"installing {', '.join(missing)} from Debian")
    result = ctx.host.run(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install",
                           "-y", "--no-install-recommends", *missing], timeout=1800)
    if result.returncode != 0:
        raise DograhError(f"apt-get install {' '.join(missing)} failed: {result.last_line}")


def _has(ctx: Context, package: str) -> bool:
    found = ctx.host.run(["dpkg-query", "-W", "-f=${Status}", package]).stdout
    return found.endswith("install ok installed")


def _wait_for_postgresql(ctx: Context) -> None:
    deadline = ctx.clock.monotonic() + READY_WAIT
    while ctx.host.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode != 0:
        if ctx.clock.monotonic() >= deadline:
            raise DograhError(f"PostgreSQL does not accept connections within {READY_WAIT}s "
                              "(see: journalctl -u postgresql)")
        ctx.clock.sleep(1)


def _exists(ctx: Context, catalog: str, column: str, name: str) -> bool:
    return bool(_psql(ctx, "postgres", f"SELECT 1 FROM {catalog} WHERE {column} = '{name}';"
                      ).strip())


def _password(ctx: Context) -> str:
    """The role's password, as services.env has it, or a new one written there."""
    found = re.search(rf"^DATABASE_URL=postgresql\+asyncpg://{ROLE}:([A-Za-z0-9_-]+)@",
                      ctx.files.read(paths.SERVICES) or "", re.M)
    if found:
        return found.group(1)
    password = secrets.token_urlsafe(24)
    ctx.files.write_atomic(paths.SERVICES, (
        "# Made by dograhctl services setup: Dograh's database and Redis on this host.\n"
        "# A DATABASE_URL or REDIS_URL in dograh.env wins over these.\n"
        f"DATABASE_URL=postgresql+asyncpg://{ROLE}:{password}@127.0.0.1:5432/{DATABASE}\n"
        f"REDIS_URL={REDIS_URL}\n"), mode=0o640, group="dograh")
    return password


def _psql(ctx: Context, database: str, sql: str) -> str:
    result = ctx.host.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-tA",
                           "-v", "ON_ERROR_STOP=1", "-d", database], input=sql)
    if result.returncode != 0:
        raise DograhError(f"PostgreSQL refused it: {result.last_line}")
    return result.stdout
