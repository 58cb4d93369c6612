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

from . import certificates, files, nginx, paths, templates
from .certificates import Pair
from .config import Settings
from .context import Context
from .errors import DograhError
from .systemd import Systemd
from .templates import Member

# A self-signed certificate this close to its end is made again.
RENEW_DAYS = 30
_DEFAULT_LISTEN = re.compile(r"^\s*listen\s+[^;#]*\bdefault(_server)?\b", re.M)


@dataclass(frozen=True)
class Front:
    certificate: Pair | None
    default_server: bool
    # Debian's stock default site is enabled and unmodified: the site takes its place.
    takes_stock_default: bool


def serving(settings: Settings) -> Pair | None:
    """The certificate nginx serves for the config, as the files stand."""
    if settings.tls == "off":
        return None
    if settings.tls == "files":
        assert settings.tls_certificate and settings.tls_key  # config checked them
        return Pair(settings.tls_certificate, settings.tls_key)
    if settings.tls == "acme" and (paths.ACME_LIVE / "fullchain.pem").exists():
        return Pair(paths.ACME_LIVE / "fullchain.pem", paths.ACME_LIVE / "privkey.pem")
    return Pair(paths.SELF_SIGNED_CERTIFICATE, paths.SELF_SIGNED_KEY)


def read(ctx: Context) -> Front:
    takes = _stock_default_unmodified(ctx.systemd)
    return Front(serving(ctx.settings), takes or not _other_default_servers(takes), takes)


def prepare(ctx: Context) -> None:
    """Everything the site's certificate needs, before nginx is touched: the admin's
    files are checked (one line names a bad one); a self-signed one is made or
    made again when missing, for other names, or near its end."""
    settings = ctx.settings
    pair = serving(settings)
    if pair is None:
        return
    if settings.tls == "files":
        certificates.read(ctx.systemd, pair)
        return
    paths.ACME_WEBROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    if pair.certificate != paths.SELF_SIGNED_CERTIFICATE:
        return
    names = _certified_names(settings)
    try:
        facts = certificates.read(ctx.systemd, pair)
        if all(facts.covers(name) for name in names) and facts.days_left(_now()) > RENEW_DAYS:
            return
    except DograhError:
        pass  # missing or damaged: make it
    certificates.make_self_signed(ctx.systemd, pair, names)
    ctx.report(f"made a self-signed certificate for {', '.join(names)} ({pair.certificate})")


def apply(ctx: Context, upstream: tuple[Member, ...], reload: bool = False) -> bool:
    """The site and its upstream into nginx, as one transaction; True if anything changed."""
    front = read(ctx)
    rendered = templates.render_nginx(ctx.settings, upstream, ctx.facts, front.certificate,
                                      front.default_server)
    remove = (paths.NGINX_STOCK_DEFAULT_LINK,) if front.takes_stock_default else ()
    edits = _raised_connections(ctx)
    # Remembered first, so that removal gives back what it finds here even after
    # an interruption.
    notes = {}
    if remove:
        notes[paths.TOOK_STOCK_DEFAULT] = f"{paths.NGINX_STOCK_DEFAULT}\n"
    if edits and not paths.NGINX_CONNECTIONS_RAISED.exists():
        original = nginx.worker_connections(files.read(paths.NGINX_CONF) or "")
        notes[paths.NGINX_CONNECTIONS_RAISED] = \
            f"{original} {nginx.worker_connections(edits[paths.NGINX_CONF])}\n"
    for path, text in notes.items():
        files.write_atomic(path, text)
    try:
        return ctx.nginx.apply(rendered, reload=reload, remove=remove, edits=edits)
    except BaseException:
        for path in notes:
            path.unlink(missing_ok=True)
        raise


def _raised_connections(ctx: Context) -> dict[Path, str]:
    """nginx.conf with enough worker_connections for the open files nginx may have."""
    if not ctx.facts.nginx_open_files:
        return {}
    _, connections = nginx.limits(ctx.facts.nginx_open_files)
    conf = nginx.raised(files.read(paths.NGINX_CONF) or "", connections)
    return {paths.NGINX_CONF: conf} if conf else {}


def issue(ctx: Context) -> str | None:
    """With DOGRAH_TLS=acme, certbot issues the site's certificate when it has none
    for every name yet; what happened, or None. A failure leaves the self-signed
    certificate serving and says so: the fleet itself is not at stake."""
    settings = ctx.settings
    if settings.tls != "acme":
        return None
    live = Pair(paths.ACME_LIVE / "fullchain.pem", paths.ACME_LIVE / "privkey.pem")
    if live.certificate.exists():
        try:
            facts = certificates.read(ctx.systemd, live)
            if all(facts.covers(name) for name in settings.public_names):
                return None
        except DograhError:
            pass
    names = settings.public_names
    contact = (["--email", settings.acme_email] if settings.acme_email
               else ["--register-unsafely-without-email"])
    result = ctx.systemd.run([
        "certbot", "certonly", "--webroot", "--webroot-path", str(paths.ACME_WEBROOT),
        "--cert-name", paths.ACME_CERT_NAME, *[arg for name in names for arg in ("-d", name)],
        "--deploy-hook", str(paths.CERTBOT_DEPLOY_HOOK), "--server", settings.acme_server,
        "--non-interactive", "--agree-tos", *contact])
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return (f"warning: certbot could not issue a certificate for {', '.join(names)} "
                f"({why}); the self-signed one serves until: dograhctl render")
    return f"certbot issued the site's certificate for {', '.join(names)}"


def certify(ctx: Context, upstream: tuple[Member, ...]) -> None:
    """Once the site serves its ACME challenges: certbot's certificate, then the site
    again to serve it."""
    done = issue(ctx) if upstream else None
    if done:
        ctx.report(done)
        if not done.startswith("warning"):
            apply(ctx, upstream)


def give_back_stock_default() -> None:
    """Enable Debian's stock default site again, if the site took its place and no
    default server of the admin's has come since (two would fail nginx -t)."""
    if not paths.TOOK_STOCK_DEFAULT.exists():
        return
    if (paths.NGINX_STOCK_DEFAULT.exists() and not paths.NGINX_STOCK_DEFAULT_LINK.is_symlink()
            and not _other_default_servers(taking_stock=False)):
        paths.NGINX_STOCK_DEFAULT_LINK.symlink_to(paths.NGINX_STOCK_DEFAULT)
    paths.TOOK_STOCK_DEFAULT.unlink()


def _certified_names(settings: Settings) -> list[str]:
    return settings.public_names or ["localhost"]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stock_default_unmodified(systemd: Systemd) -> bool:
    """Debian's default site is enabled and as its package shipped it."""
    link = paths.NGINX_STOCK_DEFAULT_LINK
    if not link.is_symlink() or link.resolve() != paths.NGINX_STOCK_DEFAULT.resolve():
        return False
    owner = systemd.run(["dpkg-query", "--search", str(paths.NGINX_STOCK_DEFAULT)]).stdout
    package = owner.split(":", 1)[0].strip()
    if not package:
        return False
    conffiles = systemd.run(["dpkg-query", "-W", "-f=${Conffiles}\n", package]).stdout
    shipped = {parts[0]: parts[1] for line in conffiles.splitlines()
               if len(parts := line.split()) >= 2}
    current = hashlib.md5(paths.NGINX_STOCK_DEFAULT.read_bytes()).hexdigest()
    return shipped.get(str(paths.NGINX_STOCK_DEFAULT)) == current


def _other_default_servers(taking_stock: bool) -> bool:
    """Whether an enabled config of the admin's declares a default server."""
    for path in (path for directory in paths.NGINX_ENABLED for path in directory.glob("*")):
        ours = path == paths.NGINX_SITE_LINK
        if ours or (taking_stock and path == paths.NGINX_STOCK_DEFAULT_LINK):
            continue
        if _DEFAULT_LISTEN.search(files.read(path) or ""):
            return True
    return False
