"""Render every unit and nginx file from the jinja2 templates.

Templates are the only source of generated files; undefined variables are
errors, so a template and the settings can never silently disagree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from pathlib import Path

import jinja2

from . import files, paths
from .config import UPSTREAM_KEEPALIVE_TIMEOUT, WORKER_KEEPALIVE_TIMEOUT, Settings


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
    return " ".join(_exec_word(w) for w in words)


def _environment(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["exec_line"] = _exec_line
    return env


def _header(template: Path, settings: Settings) -> str:
    mark = files.GENERATED_MARK.removeprefix("# ")
    return (f"{mark} from {template}; do not edit. "
            f"Change {settings.config_path} and run: dograhctl render")


def nginx_host(host: str) -> str:
    """The address nginx dials for a worker bound to ``host``."""
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"[{address}]" if address.version == 6 else str(address)


def nginx_listens(listen: str) -> list[str]:
    """A bare port listens on IPv4 and IPv6, as Debian's default site does."""
    return [listen, f"[::]:{listen}"] if listen.isdigit() else [listen]


def _launched(settings: Settings, command: tuple[str, ...]) -> tuple[str, ...]:
    """A ``python -m MODULE`` command runs under DOGRAH_PYTHON, through the launcher
    that keeps colour codes out of the journal."""
    resolved = settings.resolve_command(command)
    if resolved is not command and command[1:2] == ("-m",):
        return (resolved[0], "-m", "dograh_systemd.worker.plain_output", *resolved[1:])
    return resolved


def _context(settings: Settings) -> dict[str, object]:
    return {
        "config_path": settings.config_path,
        "env_files": settings.env_files,
        "app": settings.app,
        "app_dir": settings.app_dir,
        "app_dir_in_home": settings.app_dir.is_relative_to("/home")
        or settings.app_dir.is_relative_to("/root"),
        "python": settings.python,
        "host": settings.host,
        "worker_keepalive": WORKER_KEEPALIVE_TIMEOUT,
        "upstream_keepalive": UPSTREAM_KEEPALIVE_TIMEOUT,
        "arq_command": _launched(settings, settings.arq_command),
        "ari_manager_command": _launched(settings, settings.ari_manager_command),
        "campaign_orchestrator_command": _launched(settings,
                                                   settings.campaign_orchestrator_command),
        "migrate_command": settings.resolve_command(settings.migrate_command)
        if settings.migrate_command else (),
        "runtime_path": paths.RUNTIME_PATH,
        "nginx_listens": nginx_listens(settings.nginx_listen),
        "nginx_server_name": settings.nginx_server_name,
        "nginx_location": settings.nginx_location,
        "upstream_path": paths.NGINX_UPSTREAM,
        "host_for_nginx": nginx_host(settings.host),
    }


MIGRATE_UNIT = "dograh-migrate.service"


def unit_templates() -> list[Path]:
    """The unit templates; partials (``_*.j2``) are only included by them."""
    return [t for t in sorted(paths.UNIT_TEMPLATES.glob("*.j2")) if not t.name.startswith("_")]


def render_units(settings: Settings) -> dict[Path, str]:
    """Every unit file the settings call for, keyed by its installed path."""
    env = _environment(paths.UNIT_TEMPLATES)
    context = _context(settings)
    rendered = {}
    for template in unit_templates():
        if template.stem == MIGRATE_UNIT and not settings.migrate_command:
            continue
        text = env.get_template(template.name).render(context, header=_header(template, settings))
        rendered[paths.UNIT_DIR / template.stem] = text
    return rendered


def render_nginx(settings: Settings, api_ports: Iterable[int],
                 weights: Mapping[int, int] | None = None) -> dict[Path, str]:
    """The nginx site and its upstream listing ``api_ports`` (weight 1 unless given)."""
    ports = sorted(api_ports)
    if not ports:
        raise ValueError("an nginx upstream needs at least one API worker")
    env = _environment(paths.NGINX_TEMPLATES)
    context = _context(settings)
    site = paths.NGINX_TEMPLATES / "dograh-site.j2"
    upstream = paths.NGINX_TEMPLATES / "dograh-upstream.j2"
    return {
        paths.NGINX_SITE: env.get_template(site.name).render(context, header=_header(site, settings)),
        paths.NGINX_UPSTREAM: env.get_template(upstream.name).render(
            context, header=_header(upstream, settings), api_ports=ports,
            weights={port: (weights or {}).get(port, 1) for port in ports}),
    }
