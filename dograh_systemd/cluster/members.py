"""The client of a cluster's etcd that every command and agent of this host uses, as this
host's own user."""

from __future__ import annotations

from .. import etcd
from ..context import Context
from ..errors import DograhError


def joined(ctx: Context) -> bool:
    """Whether this host has what it needs to reach its cluster: the CA of a TLS cluster,
    and its password."""
    settings = ctx.settings
    tls = any(url.startswith("https") for url in settings.etcd_endpoints)
    return bool(settings.etcd_endpoints) and (not tls or ctx.files.exists(settings.etcd_ca)) \
        and ctx.files.exists(settings.etcd_password_file)


def credentials(ctx: Context) -> etcd.Credentials:
    """This host's etcd user, with the password in its root-only file."""
    settings = ctx.settings
    path = settings.etcd_password_file
    private = ctx.files.is_private(path)
    if private is None:
        raise DograhError(f"{path}: no such file; this host joins its cluster with: "
                          "dograhctl etcd join FILE (made by dograhctl etcd create)")
    if not private:
        raise DograhError(f"{path} must be a file only root can read (chmod 600 {path})")
    return etcd.Credentials(settings.etcd_user, (ctx.files.read(path) or "").strip())


def client(ctx: Context) -> etcd.Client:
    """A client of this host's cluster, as its user."""
    settings = ctx.settings
    if not settings.etcd_endpoints:
        raise DograhError("this host is in no cluster: DOGRAH_ETCD_ENDPOINTS is not set")
    ca = settings.etcd_ca if any(url.startswith("https") for url in settings.etcd_endpoints) \
        else None
    if ca is not None and not ctx.files.exists(ca):
        raise DograhError(f"{ca}: no such file (the CA of the cluster's etcd members)")
    return ctx.host.etcd(settings.etcd_endpoints, ctx.files.path(ca) if ca else None,
                         credentials(ctx))
