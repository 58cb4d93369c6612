"""Every kind of process the package runs, as one table.

A role names its unit, its template, how many instances the config asks for
and which command it runs, with defaults for the embedded example and for a
Dograh checkout. Config parsing, rendering, planning and status all read this
table: adding a singleton is one entry here (its template is shared).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    MIGRATION = "migration"  # a oneshot that runs before every other unit
    API = "api"              # uvicorn workers behind nginx; the instance name is the port
    POOL = "pool"            # interchangeable workers; the instance name is an index
    SINGLETON = "singleton"  # exactly one instance, or none


@dataclass(frozen=True)
class Role:
    name: str
    kind: Kind
    unit: str            # unit name without ".service" (and without "@" for templates)
    template: str        # the file in units/ that renders its unit
    title: str           # what it is, for Description= and status
    count_key: str = ""  # API and POOL: the key with the instance count
    count_min: int = 0
    count_max: int = 0
    enable_key: str = ""  # SINGLETON: the key that switches it on
    enabled_by_default: bool = True
    command_key: str = ""
    example_command: str = ""
    dograh_command: str = ""
    # Seconds systemd waits for a stop: a singleton or pool worker finishes its work first.
    stop_timeout: int = 60
    # Its working directory, relative to DOGRAH_APP_DIR (the app's by default),
    # and variables of its own.
    directory: str = ""
    environment: tuple[str, ...] = ()
    # A path the nginx site sends to it, and the port it serves on.
    route: str = ""
    route_port: int = 0

    @property
    def is_template(self) -> bool:
        return self.kind in (Kind.API, Kind.POOL)

    @property
    def unit_file(self) -> str:
        return f"{self.unit}@.service" if self.is_template else f"{self.unit}.service"

    def instance(self, name: int | str) -> str:
        """The unit of one instance: dograh-api@8000.service, or the unit itself."""
        return f"{self.unit}@{name}.service" if self.is_template else self.unit_file

    def instance_name(self, unit: str) -> str:
        """``8000`` for dograh-api@8000.service."""
        return unit.removeprefix(f"{self.unit}@").removesuffix(".service")

    def port(self, unit: str) -> int:
        """An API worker's port: its instance name."""
        return int(self.instance_name(unit))

    def owns(self, unit: str) -> bool:
        if self.is_template:
            return unit.startswith(f"{self.unit}@") and unit.endswith(".service")
        return unit == self.unit_file

    def names(self, unit: str) -> bool:
        """Whether dograhctl gives this name: instances are numbered (port or
        index); one named otherwise was made by hand and is left alone."""
        return self.owns(unit) and (not self.is_template or self.instance_name(unit).isdigit())


def default_api_workers(cpus: int) -> int:
    """One API worker per CPU, capped at 8 (Dograh's guidance)."""
    return max(1, min(cpus, 8))


EXAMPLE_SERVICE = "python3 -m dograh_systemd.example.service"
MAX_API_WORKERS = 64

ROLES: tuple[Role, ...] = (
    Role(name="migrate", kind=Kind.MIGRATION, unit="dograh-migrate",
         template="dograh-migrate.service.j2", title="Dograh database migrations",
         command_key="DOGRAH_MIGRATE_COMMAND", example_command="",
         dograh_command="python -m alembic -c api/alembic.ini upgrade head", stop_timeout=600),
    Role(name="api", kind=Kind.API, unit="dograh-api", template="dograh-api@.service.j2",
         title="Dograh API worker", count_key="FASTAPI_WORKERS", count_min=1,
         count_max=MAX_API_WORKERS),
    Role(name="arq", kind=Kind.POOL, unit="dograh-arq", template="dograh-arq@.service.j2",
         title="Dograh ARQ worker", count_key="ARQ_WORKERS", count_min=0, count_max=32,
         command_key="DOGRAH_ARQ_COMMAND", example_command=f"{EXAMPLE_SERVICE} arq-worker",
         dograh_command="python -m arq api.tasks.arq.WorkerSettings "
                        "--custom-log-dict api.tasks.arq.LOG_CONFIG",
         # ARQ finishes its current job on SIGTERM before it exits.
         stop_timeout=300),
    Role(name="ari-manager", kind=Kind.SINGLETON, unit="dograh-ari-manager",
         template="dograh-singleton.service.j2", title="Dograh ARI manager (Asterisk channels)",
         enable_key="ENABLE_ARI_MANAGER", command_key="DOGRAH_ARI_MANAGER_COMMAND",
         example_command=f"{EXAMPLE_SERVICE} ari-manager",
         dograh_command="python -m api.services.telephony.ari_manager"),
    Role(name="campaign-orchestrator", kind=Kind.SINGLETON, unit="dograh-campaign-orchestrator",
         template="dograh-singleton.service.j2",
         title="Dograh campaign orchestrator (campaign scheduling)",
         enable_key="ENABLE_CAMPAIGN_ORCHESTRATOR",
         command_key="DOGRAH_CAMPAIGN_ORCHESTRATOR_COMMAND",
         example_command=f"{EXAMPLE_SERVICE} campaign-orchestrator",
         dograh_command="python -m api.services.campaign.campaign_orchestrator"),
    # Dograh's Next.js UI, on the Node that DOGRAH_TOOLS_PATH puts first on
    # PATH (it needs Node >= 22.6; Debian 12 and 13 ship 18 and 20).
    Role(name="ui", kind=Kind.SINGLETON, unit="dograh-ui", template="dograh-singleton.service.j2",
         title="Dograh UI (Next.js)", enable_key="ENABLE_DOGRAH_UI", enabled_by_default=False,
         command_key="DOGRAH_UI_COMMAND", example_command="/usr/bin/env node server.js",
         dograh_command="/usr/bin/env node server.js", directory="ui",
         environment=("NODE_ENV=production",), route="/", route_port=3010),
)



def of_kind(kind: Kind) -> tuple[Role, ...]:
    return tuple(role for role in ROLES if role.kind is kind)


API = of_kind(Kind.API)[0]


def role_of(unit: str, roles: tuple[Role, ...] = ROLES) -> Role | None:
    """The role a unit name belongs to, or None for a unit that is not ours."""
    return next((role for role in roles if role.owns(unit)), None)
