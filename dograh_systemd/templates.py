"""Render every unit and nginx file from the jinja2 templates.

Templates are the only source of generated files. Undefined variables are
errors, and so is any rendered value holding a control character: a newline
inside a value would start a new line, even a new section, in a unit file.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import command_lines, nginx, paths, values
from .certificates import Pair
from .config import RoleSettings, Settings
from .facts import ASSUMED, Facts
from .host.files import GENERATED_MARK
from .roles import Kind
from .upstream import Member, Route, dial_address
from .worker import contract


def _finalize(value: object) -> object:
    if isinstance(value, str | Path):
        values.no_control_characters(str(value))
    return value


# Strict-Transport-Security's max-age: a year, without preload or subdomains,
# which only the admin can promise.
HSTS_MAX_AGE = 365 * 24 * 3600


def _exec_word(word: object) -> str:
    """Quote one word for a unit's ExecStart= (systemd.service(5), "Command lines")."""
    text = str(word)
    if text == "%i":
        return text
    text = text.replace("%", "%%").replace("$", "$$")
    if text and not any(c in text for c in " \t\"'\\;"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _exec_line(words: Iterable[object]) -> str:
    return " ".join(_exec_word(values.no_control_characters(str(w))) for w in words)


@functools.cache
def _environment(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_finalize,
    )
    env.filters["exec_line"] = _exec_line
    return env


def _header(template: Path, settings: Settings) -> str:
    mark = GENERATED_MARK.removeprefix("# ")
    return (f"{mark} from {template}; do not edit. "
            f"Change {settings.config_path} and run: dograhctl scale")


def _listens(listen: tuple[str | None, int]) -> list[str]:
    """A bare port listens on IPv4 and IPv6, as Debian's default site does."""
    address, port = listen
    if address is None:
        return [str(port), f"[::]:{port}"]
    return [Member(address, port).endpoint]


def _launched(settings: Settings, command: tuple[str, ...]) -> tuple[str, ...]:
    """A ``python -m MODULE`` command runs under DOGRAH_PYTHON, through the launcher
    that keeps colour codes out of the journal."""
    resolved = settings.resolve_command(command)
    if resolved is not command and command[1:2] == ("-m",):
        return (resolved[0], "-m", "dograh_systemd.worker.plain_output", *resolved[1:])
    return resolved


@dataclass(frozen=True)
class Standing:
    """What the units of this host need to know of where it stands; its mode says."""

    # Units of this host rather than of a role (a firewall, a timer).
    host_units: tuple[str, ...] = ()
    # The unit that must let the edges alone in before a worker serves (a worker host's
    # firewall), or none.
    firewall: str = ""
    # The unit that starts the singletons, which they are bound to (a cluster's agent,
    # which holds their leases), or none: they run with the fleet.
    holder: str = ""
    # Seconds a cluster's agent may go without a ping before systemd ends it (it holds
    # leases: shorter than they last).
    agent_watchdog: int = 0
    # Where a singleton that serves a route listens for nginx, and the address nginx
    # connects to the workers from (the one whose forwarded headers they trust; empty:
    # the address it dials them on, an nginx of this host).
    route_host: str = "127.0.0.1"
    trusted_proxy: str = ""


def _context(settings: Settings, facts: Facts, standing: Standing = Standing()
             ) -> dict[str, object]:
    migration = next((r for r in settings.roles.values()
                      if r.role.kind is Kind.MIGRATION and r.count), None)
    return {
        "config_path": settings.config_path,
        "env_files": settings.unit_env_files,
        # Files dograhctl makes when they are needed: none is no error.
        "optional_env_files": (paths.SERVICES, paths.SECRETS),
        "app": settings.app,
        "app_dir": settings.app_dir,
        "paths_in_home": settings.paths_in_home,
        "python": settings.python,
        "host": settings.host,
        "trusted_proxy": standing.trusted_proxy or dial_address(settings.host),
        "firewall": standing.firewall,
        "floating": bool(settings.front_addresses),
        "firewall_rules": paths.FIREWALL_RULES,
        "holder": standing.holder,
        "leader_dir": paths.LEADER_DIR,
        "run_dir": paths.RUN_DIR,
        "state_dir": paths.STATE_DIR,
        "agent_command": command_lines.installed(settings.config_path, command_lines.agent()),
        "agent_watchdog": standing.agent_watchdog,
        "cluster": settings.cluster,
        "route_host": standing.route_host,
        "textfile_dir": paths.TEXTFILE_DIR,
        # What the host's timers run: dograhctl, from the one place its lines are built.
        "metrics_command": command_lines.installed(
            settings.config_path, command_lines.metrics(paths.METRICS_FILE)),

        "edges": settings.edges,
        "edge_families": {family: addresses for family, addresses in (
            ("ip", [a for a in settings.edges if ":" not in a]),
            ("ip6", [a for a in settings.edges if ":" in a])) if addresses},
        "calls_path": settings.calls_path,
        "calls_header": settings.calls_header,
        "tools_path": settings.tools_path,
        "runtime_path": paths.RUNTIME_PATH,
        "migration_unit": migration.role.unit_file if migration else "",
        "contract": contract,
        "facts": facts,
        "nginx_listens": _listens(settings.nginx_listen),
        "snippets": paths.NGINX_SNIPPETS,
        "acme_webroot": paths.ACME_WEBROOT,
        # The other edges, which may hold an ACME challenge this edge is asked for.
        "acme_peers": [Member(peer, settings.nginx_listen[1]).endpoint
                       for peer in settings.front_peers],
        "nginx_server_name": settings.nginx_server_name,
        "nginx_location": settings.nginx_location,
        "upstream_path": paths.NGINX_UPSTREAM,
    }


def _render_role(env: jinja2.Environment, settings: Settings, context: dict[str, object],
                 role_settings: RoleSettings) -> str:
    role = role_settings.role
    template = paths.UNIT_TEMPLATES / role.template
    command = role_settings.command
    if role.kind is Kind.MIGRATION:
        command = settings.resolve_command(command)
    elif command:
        command = _launched(settings, command)
    return env.get_template(role.template).render(
        context, header=_header(template, settings), role=role, command=command)


def render_units(settings: Settings, facts: Facts = ASSUMED, standing: Standing = Standing()
                 ) -> dict[Path, str]:
    """Every unit file the config calls for, dograh.target and the host's own units (what
    this host runs beside the roles: a worker host's firewall, the edge's timer); keyed
    by installed path. A switched-off singleton keeps its (disabled) unit; a migration
    needs a command."""
    env = _environment(paths.UNIT_TEMPLATES)
    context = _context(settings, facts, standing)
    rendered = {}
    for role_settings in settings.roles.values():
        role = role_settings.role
        if role.kind is Kind.MIGRATION and not role_settings.command:
            continue
        rendered[paths.UNIT_DIR / role.unit_file] = _render_role(env, settings, context,
                                                                 role_settings)
    target = paths.UNIT_TEMPLATES / f"{paths.TARGET}.j2"
    rendered[paths.UNIT_DIR / paths.TARGET] = env.get_template(target.name).render(
        context, header=_header(target, settings))
    for name in standing.host_units:
        template = paths.UNIT_TEMPLATES / f"{name}.j2"
        rendered[paths.UNIT_DIR / name] = env.get_template(template.name).render(
            context, header=_header(template, settings))
    return rendered


def probe_properties(settings: Settings, facts: Facts = ASSUMED) -> list[str]:
    """The units' environment and sandbox as ``systemd-run --property`` values, so that a
    check runs the way the units run the app."""
    env = _environment(paths.UNIT_TEMPLATES)
    text = env.get_template("probe.properties.j2").render(_context(settings, facts))
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def render_etcd_defaults(settings: Settings, member: dict[str, object]) -> str:
    """/etc/default/etcd for one member of the cluster's etcd."""
    env = _environment(paths.UNIT_TEMPLATES)
    name = "etcd.default.j2"
    return env.get_template(name).render(
        member, header=_header(paths.UNIT_TEMPLATES / name, settings))


def render_keepalived(settings: Settings) -> dict[Path, str]:
    """keepalived's config for this edge's part in the floating address, and the
    drop-in that restarts Debian's keepalived.service."""
    env = _environment(paths.UNIT_TEMPLATES)
    conf, drop_in = "keepalived.conf.j2", "keepalived-dograh.conf.j2"
    address, port = settings.https_listen if settings.tls != "off" else settings.nginx_listen
    scheme = "https" if settings.tls != "off" else "http"
    host = Member(address or "127.0.0.1", port).endpoint
    # HTTPS is asked by address, whatever its certificate names.
    check = f"{'--insecure ' if scheme == 'https' else ''}{scheme}://{host}/api/v1/health"
    return {
        paths.KEEPALIVED_CONF: env.get_template(conf).render(
            header=_header(paths.UNIT_TEMPLATES / conf, settings),
            host_name=settings.host_name, interface=settings.front_interface,
            router_id=settings.front_router_id, priority=settings.front_priority,
            peers=settings.front_peers, check_url=check,
            ipv4=[a for a in settings.front_addresses if ":" not in a],
            ipv6=[a for a in settings.front_addresses if ":" in a]),
        paths.KEEPALIVED_DROP_IN: env.get_template(drop_in).render(
            header=_header(paths.UNIT_TEMPLATES / drop_in, settings)),
    }


def render_build_gitconfig(settings: Settings) -> dict[Path, str]:
    """git's global config for the build user, while it fetches a release."""
    env = _environment(paths.UNIT_TEMPLATES)
    name = "dograh-build.gitconfig.j2"
    return {paths.BUILD_GITCONFIG: env.get_template(name).render(
        header=_header(paths.UNIT_TEMPLATES / name, settings))}


def render_firewall(settings: Settings, standing: Standing, running: Iterable[int] = ()
                    ) -> dict[Path, str]:
    """A worker host's nftables table, and the drop-in that puts it back whenever
    nftables.service loads its own ruleset (which begins with ``flush ruleset``).

    The edge alone reaches both bands of API worker ports, the ports of API
    workers that still run elsewhere (a base port that moved), and the port of
    each routed singleton.
    """
    bands = [settings.band_ports(band) for band in (0, 1)]
    outside = sorted({port for port in running if not any(port in band for band in bands)})
    routed = [r.role.route_port for r in settings.routed]
    ports = ", ".join([*(f"{band[0]}-{band[-1]}" for band in bands),
                       *map(str, sorted({*outside, *routed}))])
    env = _environment(paths.UNIT_TEMPLATES)
    context = _context(settings, ASSUMED, standing)
    rendered = {}
    for path, name in ((paths.FIREWALL_RULES, "dograh-firewall.nft.j2"),
                       (paths.NFTABLES_DROP_IN, "nftables-dograh.conf.j2")):
        rendered[path] = env.get_template(name).render(
            context, header=_header(paths.UNIT_TEMPLATES / name, settings),
            firewall_ports=ports)
    return rendered


def render_nginx(settings: Settings, members: Iterable[Member], facts: Facts = ASSUMED,
                 certificate: Pair | None = None, default_server: bool = False,
                 routes: Iterable[Route] = (), hsts: bool = False) -> dict[Path, str]:
    """The nginx site, and its upstream of ``members``; HTTPS with ``certificate``,
    nginx's default server (it answers requests by address) with ``default_server``,
    ``routes`` to singletons, and Strict-Transport-Security with ``hsts`` (a
    certificate browsers trust) unless the config turns it off."""
    members = sorted(members, key=lambda m: (m.address, m.port))
    if not members:
        raise ValueError("an nginx upstream needs at least one API worker")
    env = _environment(paths.NGINX_TEMPLATES)
    context = _context(settings, facts)
    site = paths.NGINX_TEMPLATES / "dograh-site.j2"
    upstream = paths.NGINX_TEMPLATES / "dograh-upstream.j2"
    rendered = {
        paths.NGINX_SITE: env.get_template(site.name).render(
            context, header=_header(site, settings), certificate=certificate,
            default_server=default_server, routes=routes,
            https_listens=_listens(settings.https_listen),
            # The redirect keeps a port other than HTTPS's own.
            https_port="" if settings.https_listen[1] == 443 else f":{settings.https_listen[1]}",
            hsts=hsts and settings.hsts, hsts_max_age=HSTS_MAX_AGE),
        paths.NGINX_UPSTREAM: env.get_template(upstream.name).render(
            context, header=_header(upstream, settings), members=members),
    }
    capacity = paths.NGINX_TEMPLATES / "dograh-capacity.j2"
    rendered[paths.NGINX_CAPACITY] = env.get_template(capacity.name).render(
        context, header=_header(capacity, settings),
        open_files=nginx.limits(facts.nginx_open_files)[0] if facts.nginx_open_files else None,
        shutdown_timeout=nginx.shutdown_timeout(settings.drain_timeout))
    return rendered
