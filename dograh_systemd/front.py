"""The front door: the nginx site, its certificate, and whether it answers by address.

HTTPS comes three ways, chosen by DOGRAH_TLS:
- ``files``: the admin's own certificate and key, checked before nginx is touched;
- ``self-signed``: one dograhctl makes for the server names, as Dograh's
  installer does on first boot;
- ``acme``: certbot's, issued over HTTP-01 from the webroot the site serves on
  port 80 (issuing never stops nginx), renewed by certbot's own timer, whose
  deploy hook reloads nginx (a reload keeps every live call). Until certbot
  has issued one, the self-signed certificate serves.

Reachable by address: while Debian's stock default site is enabled and
unmodified, the Dograh site takes its place as nginx's default server (and
gives it back on removal); a default server of the admin's own stays, and
doctor says how to reach the API.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from . import certificates, nginx, paths, templates
from .certificates import Pair
from .config import Settings
from .context import Context
from .errors import DograhError
from .host import Host
from .host.files import Files
from .upstream import Member, Route

# A self-signed certificate this close to its end is made again.
RENEW_DAYS = 30
_DEFAULT_LISTEN = re.compile(r"^\s*listen\s+[^;#]*\bdefault(_server)?\b", re.M)
ACME_PAIR = Pair(paths.ACME_LIVE / "fullchain.pem", paths.ACME_LIVE / "privkey.pem")
SELF_SIGNED_PAIR = Pair(paths.SELF_SIGNED, paths.SELF_SIGNED)


@dataclass(frozen=True)
class Front:
    certificate: Pair | None
    default_server: bool
    # Debian's stock default site is enabled and unmodified: the site takes its place.
    takes_stock_default: bool


def serving(settings: Settings, files: Files) -> Pair | None:
    """The certificate nginx serves for the config, as the files stand."""
    if settings.tls == "off":
        return None
    if settings.tls == "files":
        assert settings.tls_certificate and settings.tls_key  # config checked them
        return Pair(settings.tls_certificate, settings.tls_key)
    if settings.tls == "acme" and files.exists(ACME_PAIR.certificate):
        return ACME_PAIR
    return SELF_SIGNED_PAIR


def is_real(settings: Settings, pair: Pair | None) -> bool:
    """Whether browsers trust the certificate served: the admin's own or certbot's."""
    return pair is not None and pair != SELF_SIGNED_PAIR


def read(ctx: Context) -> Front:
    takes = _stock_default_unmodified(ctx.host)
    return Front(serving(ctx.settings, ctx.files), takes or not _other_default_servers(
        ctx.files, takes), takes)


def prepare(ctx: Context) -> None:
    """Everything the site's certificate needs, before nginx is touched: the admin's
    files are checked (one line names a bad one); a self-signed one is made or
    made again when missing, for other names, or near its end."""
    settings = ctx.settings
    pair = serving(settings, ctx.files)
    if pair is None:
        return
    if settings.tls == "files":
        certificates.read(ctx.host, pair)
        return
    ctx.files.make_directory(paths.ACME_WEBROOT)
    if pair != SELF_SIGNED_PAIR:
        return
    names = _certified_names(settings)
    try:
        facts = certificates.read(ctx.host, pair)
        if all(facts.covers(name) for name in names) and facts.days_left(_now()) > RENEW_DAYS:
            return
    except DograhError:
        pass  # missing or damaged: make it
    certificates.make_self_signed(ctx.host, names, ctx.nginx.test)
    ctx.report(f"made a self-signed certificate for {', '.join(names)} ({paths.SELF_SIGNED})")


def render(ctx: Context, upstream: tuple[Member, ...], routes: tuple[Route, ...]
           ) -> dict[Path, str]:
    """The site, its upstream of ``upstream`` and its ``routes`` to singletons, as the
    host stands now."""
    front = read(ctx)
    return templates.render_nginx(ctx.settings, upstream, ctx.facts, front.certificate,
                                  front.default_server, routes,
                                  hsts=is_real(ctx.settings, front.certificate))


def install(ctx: Context, rendered: dict[Path, str], reload: bool = False) -> bool:
    """The rendered site into nginx, as one transaction with the site's link, the stock
    default site's link when the site takes its place, and nginx.conf's
    worker_connections; True if anything changed. ``reload`` reloads nginx even
    when nothing of ours changed."""
    files = ctx.files
    front = read(ctx)
    remove = (paths.NGINX_STOCK_DEFAULT_LINK,) if front.takes_stock_default else ()
    edits = _raised_connections(ctx)
    # Remembered first, so that removal gives back what it finds here even after
    # an interruption.
    notes = {}
    if remove:
        notes[paths.TOOK_STOCK_DEFAULT] = f"{paths.NGINX_STOCK_DEFAULT}\n"
    if edits and not files.exists(paths.NGINX_CONNECTIONS_RAISED):
        original = nginx.worker_connections(files.read(paths.NGINX_CONF) or "")
        notes[paths.NGINX_CONNECTIONS_RAISED] = \
            f"{original} {nginx.worker_connections(edits[paths.NGINX_CONF])}\n"
    for path, text in notes.items():
        files.write_atomic(path, text)
    try:
        return ctx.nginx.apply(rendered, links={paths.NGINX_SITE_LINK: paths.NGINX_SITE},
                               remove=remove, edits=edits, reload=reload)
    except BaseException:
        for path in notes:
            files.unlink(path)
        raise


def apply(ctx: Context, upstream: tuple[Member, ...], routes: tuple[Route, ...]) -> bool:
    """The site with ``upstream`` and ``routes``, rendered and installed; True if anything
    changed."""
    return install(ctx, render(ctx, upstream, routes))


def _raised_connections(ctx: Context) -> dict[Path, str]:
    """nginx.conf with enough worker_connections for the open files nginx may have."""
    if not ctx.facts.nginx_open_files:
        return {}
    _, connections = nginx.limits(ctx.facts.nginx_open_files)
    conf = nginx.raised(ctx.files.read(paths.NGINX_CONF) or "", connections)
    return {paths.NGINX_CONF: conf} if conf else {}


def issue(ctx: Context) -> str | None:
    """With DOGRAH_TLS=acme, certbot issues the site's certificate when it has none
    for every name yet; what happened, or None. A failure leaves the self-signed
    certificate serving and says so: the fleet itself is not at stake."""
    settings = ctx.settings
    if settings.tls != "acme":
        return None
    if ctx.files.exists(ACME_PAIR.certificate):
        try:
            facts = certificates.read(ctx.host, ACME_PAIR)
            if all(facts.covers(name) for name in settings.public_names):
                return None
        except DograhError:
            pass
    names = settings.public_names
    contact = (["--email", settings.acme_email] if settings.acme_email
               else ["--register-unsafely-without-email"])
    result = ctx.host.run([
        "certbot", "certonly", "--webroot", "--webroot-path", str(paths.ACME_WEBROOT),
        "--cert-name", paths.ACME_CERT_NAME, *[arg for name in names for arg in ("-d", name)],
        "--deploy-hook", str(paths.CERTBOT_DEPLOY_HOOK), "--server", settings.acme_server,
        "--non-interactive", "--agree-tos", *contact])
    if result.returncode != 0:
        return (f"warning: certbot could not issue a certificate for {', '.join(names)} "
                f"({result.last_line}); the self-signed one serves until: dograhctl render")
    return f"certbot issued the site's certificate for {', '.join(names)}"


def certify(ctx: Context, upstream: tuple[Member, ...], routes: tuple[Route, ...]) -> None:
    """Once the site serves its ACME challenges: certbot's certificate, then the site
    again to serve it."""
    done = issue(ctx) if upstream else None
    if done:
        ctx.report(done)
        if not done.startswith("warning"):
            apply(ctx, upstream, routes)


def give_back_stock_default(files: Files) -> None:
    """Enable Debian's stock default site again, if the site took its place and no
    default server of the admin's has come since (two would fail nginx -t)."""
    if not files.exists(paths.TOOK_STOCK_DEFAULT):
        return
    if (files.exists(paths.NGINX_STOCK_DEFAULT)
            and not files.is_link(paths.NGINX_STOCK_DEFAULT_LINK)
            and not _other_default_servers(files, taking_stock=False)):
        files.link(paths.NGINX_STOCK_DEFAULT_LINK, paths.NGINX_STOCK_DEFAULT)
    files.unlink(paths.TOOK_STOCK_DEFAULT)


def _certified_names(settings: Settings) -> list[str]:
    return settings.public_names or ["localhost"]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stock_default_unmodified(host: Host) -> bool:
    """Debian's default site is enabled and as its package shipped it."""
    files = host.files
    if files.link_target(paths.NGINX_STOCK_DEFAULT_LINK) != paths.NGINX_STOCK_DEFAULT:
        return False
    owner = host.run(["dpkg-query", "--search", str(paths.NGINX_STOCK_DEFAULT)]).stdout
    package = owner.split(":", 1)[0].strip()
    if not package:
        return False
    conffiles = host.run(["dpkg-query", "-W", "-f=${Conffiles}\n", package]).stdout
    shipped = {parts[0]: parts[1] for line in conffiles.splitlines()
               if len(parts := line.split()) >= 2}
    current = hashlib.md5(files.read_bytes(paths.NGINX_STOCK_DEFAULT) or b"").hexdigest()
    return shipped.get(str(paths.NGINX_STOCK_DEFAULT)) == current


def _other_default_servers(files: Files, taking_stock: bool) -> bool:
    """Whether an enabled config of the admin's declares a default server."""
    for path in (path for directory in paths.NGINX_ENABLED for path in files.listing(directory)):
        ours = path == paths.NGINX_SITE_LINK
        if ours or (taking_stock and path == paths.NGINX_STOCK_DEFAULT_LINK):
            continue
        if _DEFAULT_LISTEN.search(files.read(path) or ""):
            return True
    return False
