"""A cluster's etcd, from Debian's etcd-server: one command creates it, one joins a host.

    dograhctl etcd create --member NAME=ADDRESS ...   (on the first member)
        a CA of the cluster's own; for each member a certificate (peer and client TLS)
        and the key pair etcd signs its tokens with (JWT, which every member of 3.4
        and 3.5 accepts alike); for each host a user that may write its own keys
        only, with a password; and for each other host one file to join with.
        This host's member starts, and once a majority of members runs (each joins
        with its file meanwhile) the users are made and etcd's auth is enabled. Run
        again, it finishes what it had not.
    dograhctl etcd join FILE                        (on every other host)
        the CA, the host's password and the cluster's keys of the config; on a member
        its certificate and /etc/default/etcd, read by Debian's own etcd.service,
        which it starts.

    dograhctl etcd create --existing URL ... --ca FILE --root-password-file FILE
        an etcd cluster the site runs already (Patroni's, say): only the users and
        the files to join with.

Debian's etcd-server starts a one-member etcd of its own as it installs; a
member's data directory is only ever replaced while it holds nothing but that.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import etcd, paths, templates
from ..context import Context
from ..errors import DograhError
from .keys import Keys

CA_CERTIFICATE = paths.ETCD_DIR / "ca.crt"
CA_KEY = paths.ETCD_DIR / "ca.key"
ROOT_PASSWORD = paths.ETCD_DIR / "root.password"
MEMBER_DIR = paths.ETCD_DIR / "member"
JOIN_DIR = paths.ETCD_DIR / "join"
DATA_DIR = Path("/var/lib/etcd/default")
ETCD_UNIT = "etcd.service"
CLIENT_PORT, PEER_PORT = 2379, 2380
# How long create waits for a majority of members to run.
QUORUM_WAIT = 900
# What a file to join with may hold, and how large each part may be.
PARTS = ("ca.crt", "password", "cluster.env", "member.crt", "member.key", "jwt.key",
         "jwt.pub", "etcd.default")
PART_LIMIT = 64 << 10
# The keys of the config a join writes.
CONFIG_KEYS = ("DOGRAH_ETCD_ENDPOINTS", "DOGRAH_CLUSTER", "DOGRAH_HOST_NAME")


@dataclass(frozen=True)
class Cluster:
    """What create is asked to make."""

    name: str
    members: tuple[tuple[str, str], ...]  # name, address: the hosts that run etcd
    edges: tuple[str, ...]
    workers: tuple[str, ...]

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(f"https://{_url_host(address)}:{CLIENT_PORT}"
                     for _, address in self.members)

    @property
    def hosts(self) -> tuple[str, ...]:
        return (*self.edges, *self.workers)


def user(name: str) -> str:
    return f"dograh-{name}"


# -- create ---------------------------------------------------------------------------

def create(ctx: Context, cluster: Cluster) -> str:
    """The cluster's CA, certificates, users and join files; this host's member; then, once
    a majority runs, its users and auth. What it did, in one line."""
    me = ctx.settings.host_name
    if me not in dict(cluster.members):
        raise DograhError(f"this host ({me}) is not one of the members named; run create on "
                          "one of them (or set DOGRAH_HOST_NAME)")
    if not ctx.files.exists(Path("/usr/bin/etcd")):
        raise DograhError("etcd-server is not installed here: apt install etcd-server "
                          "etcd-client")
    _make_ca(ctx)
    root_password = _secret(ctx, ROOT_PASSWORD)
    jwt = _jwt_keys(ctx)
    bundles = {}
    for host in cluster.hosts:
        password = _secret(ctx, paths.ETCD_DIR / "users" / host)
        parts = {"ca.crt": ctx.files.read(CA_CERTIFICATE) or "", "password": password,
                 "cluster.env": _cluster_env(cluster.name, cluster.endpoints, host)}
        address = dict(cluster.members).get(host)
        if address is not None:
            certificate, key = _member_certificate(ctx, host, address)
            parts |= {"member.crt": certificate, "member.key": key, **jwt,
                      "etcd.default": _etcd_defaults(ctx, cluster, host, address)}
        bundles[host] = parts
    for host, parts in bundles.items():
        if host != me:
            ctx.files.write_atomic(JOIN_DIR / f"{host}.tar", _tar(parts), mode=0o600)
    _install(ctx, bundles[me])
    local = ctx.host.etcd([f"https://127.0.0.1:{CLIENT_PORT}"],
                          ctx.files.path(CA_CERTIFICATE), None)
    ctx.report(f"waiting for a majority of {len(cluster.members)} members; on each other "
               f"host run: dograhctl etcd join {JOIN_DIR}/NAME.tar")
    _wait_for_quorum(ctx, local, root_password)
    _set_up_users(ctx, local, cluster, root_password)
    return (f"etcd cluster {cluster.name} runs with {len(cluster.members)} member(s); "
            f"{len(cluster.hosts)} host(s) have a user; join files: {JOIN_DIR}")


def create_users(ctx: Context, cluster: Cluster, endpoints: Sequence[str], ca: Path,
                 root_password: str) -> str:
    """An existing etcd cluster: the users of ``cluster``'s hosts, and their join files."""
    client = ctx.host.etcd(endpoints, ctx.files.path(ca), etcd.Credentials("root",
                                                                           root_password))
    for host in cluster.hosts:
        password = _secret(ctx, paths.ETCD_DIR / "users" / host)
        parts = {"ca.crt": ctx.files.read(ca) or "", "password": password,
                 "cluster.env": _cluster_env(cluster.name, tuple(endpoints), host)}
        ctx.files.write_atomic(JOIN_DIR / f"{host}.tar", _tar(parts), mode=0o600)
    _set_up_users(ctx, client, cluster, root_password, enable=False)
    return f"{len(cluster.hosts)} host(s) of cluster {cluster.name} have a user; join files: " \
           f"{JOIN_DIR}"


# -- join -----------------------------------------------------------------------------

def join(ctx: Context, bundle: bytes) -> str:
    """This host into the cluster its join file describes."""
    parts = _untar(bundle)
    for needed in ("ca.crt", "password", "cluster.env"):
        if needed not in parts:
            raise DograhError(f"the join file has no {needed}: make it with dograhctl etcd "
                              "create")
    keys = _env(parts["cluster.env"])
    if set(keys) != set(CONFIG_KEYS):
        raise DograhError("the join file's cluster.env is not one dograhctl etcd create made")
    _install(ctx, parts)
    member = " and its etcd member starts" if "etcd.default" in parts else ""
    return (f"{keys['DOGRAH_HOST_NAME']} joined cluster {keys['DOGRAH_CLUSTER']}{member}; "
            f"its agent starts with: dograhctl scale")


def _install(ctx: Context, parts: Mapping[str, str]) -> None:
    """A join file's parts in place: the CA, the password, the config's keys, and on a
    member its certificate and etcd's own config, then etcd itself."""
    files = ctx.files
    files.make_directory(paths.ETCD_DIR)
    if files.read(CA_CERTIFICATE) != parts["ca.crt"]:
        files.write_atomic(CA_CERTIFICATE, parts["ca.crt"])
    files.write_atomic(paths.ETCD_DIR / "password", parts["password"] + "\n", mode=0o600)
    _set_config(ctx, _env(parts["cluster.env"]))
    if "etcd.default" not in parts:
        return
    if not files.exists(Path("/usr/bin/etcd")):
        raise DograhError("this host is a member of the cluster's etcd, but etcd-server is "
                          "not installed: apt install etcd-server etcd-client")
    files.make_directory(MEMBER_DIR, mode=0o750)
    for name in ("member.crt", "member.key", "jwt.key", "jwt.pub"):
        files.write_atomic(MEMBER_DIR / name, parts[name], mode=0o640, group="etcd")
    ctx.host.run(["chgrp", "etcd", str(files.path(MEMBER_DIR))])
    if files.read(paths.ETCD_DEFAULTS) != parts["etcd.default"]:
        _fresh_data_only(ctx)
        ctx.systemd.stop([ETCD_UNIT])
        files.remove_tree(DATA_DIR)
        files.write_atomic(paths.ETCD_DEFAULTS, parts["etcd.default"])
    ctx.systemd.enable([ETCD_UNIT])
    # A member waits for a majority as it starts: the others may not run yet.
    ctx.systemd.start_no_block([ETCD_UNIT])


def _fresh_data_only(ctx: Context) -> None:
    """The member's data directory holds nothing but what Debian's first start made (a
    member of its own with no key), or there is none: only then may it go."""
    if not ctx.files.exists(DATA_DIR / "member"):
        return
    if ctx.files.read(paths.ETCD_DEFAULTS) and ctx.files.is_generated(paths.ETCD_DEFAULTS):
        return  # ours: a member of this cluster that is set up again
    try:
        client = ctx.host.etcd([f"http://127.0.0.1:{CLIENT_PORT}"], None, None)
        found, revision = client.range("\0", prefix=True)
    except etcd.Unavailable as exc:
        raise DograhError(f"this host's etcd has data of its own ({DATA_DIR}) and does not "
                          f"answer ({exc}); move it away first") from None
    if found or revision > 1:
        raise DograhError(f"this host's etcd holds {len(found)} key(s) (revision {revision}): "
                          f"it is a cluster of its own; use it as an existing cluster, or "
                          f"move {DATA_DIR} away first")


def _set_config(ctx: Context, keys: Mapping[str, str]) -> None:
    """The config file with ``keys`` set, every other line as it was."""
    path = ctx.settings.config_path
    lines = (ctx.files.read(path) or "").splitlines()
    kept = [line for line in lines if line.split("=", 1)[0].strip() not in keys]
    text = "\n".join([*kept, *(f'{key}="{value}"' for key, value in keys.items())]) + "\n"
    if text != (ctx.files.read(path) or ""):
        ctx.files.write_atomic(path, text, mode=0o640, group="dograh")


# -- etcd's own -----------------------------------------------------------------------

def _wait_for_quorum(ctx: Context, client: etcd.Client, root_password: str) -> None:
    deadline = ctx.clock.monotonic() + QUORUM_WAIT
    root = ctx.host.etcd(client.endpoints, ctx.files.path(CA_CERTIFICATE),
                         etcd.Credentials("root", root_password))
    while True:
        try:
            client.range("\0")
            return
        except etcd.Refused:
            try:  # auth is on already: this create ran before
                root.range("\0")
                return
            except etcd.Unavailable:
                pass
        except etcd.Unavailable:
            pass
        if ctx.clock.monotonic() >= deadline:
            raise DograhError(f"no majority of the members ran within {QUORUM_WAIT}s; join "
                              "them, then run dograhctl etcd create again")
        ctx.clock.sleep(2)


def _set_up_users(ctx: Context, client: etcd.Client, cluster: Cluster, root_password: str,
                  enable: bool = True) -> None:
    """root, and each host's role and user: read everything of the cluster, write its own
    keys only. Then auth on. Each step holds when it holds already."""
    keys = Keys(cluster.name)
    root = ctx.host.etcd(client.endpoints, ctx.files.path(CA_CERTIFICATE),
                         etcd.Credentials("root", root_password))
    try:
        client.range("\0")
        admin = client  # auth is off yet
    except etcd.Refused:
        admin = root
    _ensure(admin, "/v3/auth/user/add", {"name": "root", "password": root_password})
    _ensure(admin, "/v3/auth/role/add", {"name": "root"})
    _ensure(admin, "/v3/auth/user/grant", {"user": "root", "role": "root"})
    for host in cluster.hosts:
        name = user(host)
        password = (ctx.files.read(paths.ETCD_DIR / "users" / host) or "").strip()
        _ensure(admin, "/v3/auth/role/add", {"name": name})
        own = [(keys.prefix, True, "READ")]
        if host in cluster.edges:
            own += [(keys.edge(host), False, "READWRITE"), (keys.ack(host), False, "READWRITE"),
                    (keys.prefix + "desired/", True, "READWRITE"),
                    (keys.prefix + "releases/", True, "READWRITE"),
                    (keys.placement, False, "READWRITE")]
        else:
            own += [(keys.host(host), False, "READWRITE"),
                    (keys.prefix + "leaders/", True, "READWRITE")]
        for key, prefix, kind in own:
            perm = {"permType": kind, "key": etcd.b64(key)}
            if prefix:
                perm["range_end"] = etcd.b64(etcd.prefix_end(key))
            _ensure(admin, "/v3/auth/role/grant", {"name": name, "perm": perm})
        _ensure(admin, "/v3/auth/user/add", {"name": name, "password": password})
        admin.call("/v3/auth/user/changepw", {"name": name, "password": password})
        _ensure(admin, "/v3/auth/user/grant", {"user": name, "role": name})
    if enable and admin is client:
        client.call("/v3/auth/enable", {})
        ctx.report("etcd's auth is on: every host uses its own user")


def _ensure(client: etcd.Client, path: str, body: dict[str, object]) -> None:
    try:
        client.call(path, body)
    except etcd.Refused as exc:
        if "already exists" not in str(exc) and "already granted" not in str(exc):
            raise DograhError(f"etcd refused {path.rsplit('/', 2)[-2]} "
                              f"{path.rsplit('/', 1)[-1]}: {exc}") from None


def _etcd_defaults(ctx: Context, cluster: Cluster, host: str, address: str) -> str:
    return templates.render_etcd_defaults(ctx.settings, {
        "name": host, "address": _url_host(address), "cluster": cluster.name,
        "initial": ",".join(f"{name}=https://{_url_host(a)}:{PEER_PORT}"
                            for name, a in cluster.members),
        "data_dir": DATA_DIR, "member_dir": MEMBER_DIR, "ca": CA_CERTIFICATE,
        "client_port": CLIENT_PORT, "peer_port": PEER_PORT})


# -- certificates ---------------------------------------------------------------------

def _make_ca(ctx: Context) -> None:
    if ctx.files.exists(CA_KEY) and ctx.files.exists(CA_CERTIFICATE):
        return
    ctx.files.make_directory(paths.ETCD_DIR)
    # A CA as strict verifiers want one (Python 3.13's default): its key usage said.
    _openssl(ctx, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-days", "3650", "-subj", "/CN=dograh-systemd etcd CA",
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                   "-keyout", str(ctx.files.path(CA_KEY)),
                   "-out", str(ctx.files.path(CA_CERTIFICATE))], "making the cluster's CA")
    ctx.files.path(CA_KEY).chmod(0o600)


def _member_certificate(ctx: Context, host: str, address: str) -> tuple[str, str]:
    """A certificate for ``host``'s member: a server and a client of its peers, for its
    address, loopback and its name."""
    work = paths.ETCD_DIR / "made"
    ctx.files.make_directory(work, mode=0o700)
    key, request, certificate = (work / f"{host}.key", work / f"{host}.csr",
                                 work / f"{host}.crt")
    if not ctx.files.exists(certificate):
        extensions = work / f"{host}.ext"
        ctx.files.write_atomic(extensions, "basicConstraints=critical,CA:FALSE\n"
                               "keyUsage=critical,digitalSignature,keyEncipherment\n"
                               "extendedKeyUsage=serverAuth,clientAuth\n"
                               "subjectKeyIdentifier=hash\n"
                               "authorityKeyIdentifier=keyid,issuer\n"
                               f"subjectAltName=IP:{address},IP:127.0.0.1,DNS:{host},"
                               "DNS:localhost\n", mode=0o600)
        _openssl(ctx, ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-subj", f"/CN={host}", "-keyout", str(ctx.files.path(key)),
                       "-out", str(ctx.files.path(request))], f"making {host}'s key")
        _openssl(ctx, ["x509", "-req", "-in", str(ctx.files.path(request)), "-days", "3650",
                       "-CA", str(ctx.files.path(CA_CERTIFICATE)),
                       "-CAkey", str(ctx.files.path(CA_KEY)), "-CAcreateserial",
                       "-extfile", str(ctx.files.path(extensions)),
                       "-out", str(ctx.files.path(certificate))], f"signing {host}'s certificate")
    return ctx.files.read(certificate) or "", ctx.files.read(key) or ""


def _jwt_keys(ctx: Context) -> dict[str, str]:
    """The key pair every member signs and checks its tokens with."""
    private, public = paths.ETCD_DIR / "made" / "jwt.key", paths.ETCD_DIR / "made" / "jwt.pub"
    ctx.files.make_directory(private.parent, mode=0o700)
    if not ctx.files.exists(public):
        _openssl(ctx, ["ecparam", "-name", "prime256v1", "-genkey", "-noout",
                       "-out", str(ctx.files.path(private))], "making the token key")
        _openssl(ctx, ["ec", "-in", str(ctx.files.path(private)), "-pubout",
                       "-out", str(ctx.files.path(public))], "making the token key")
    return {"jwt.key": ctx.files.read(private) or "", "jwt.pub": ctx.files.read(public) or ""}


def _openssl(ctx: Context, args: list[str], doing: str) -> None:
    result = ctx.host.run(["openssl", *args])
    if result.returncode != 0:
        raise DograhError(f"{doing} failed: {result.last_line}")


def _secret(ctx: Context, path: Path) -> str:
    """The password kept at ``path`` (root's alone), made the first time."""
    found = (ctx.files.read(path) or "").strip()
    if not found:
        found = secrets.token_urlsafe(24)
        ctx.files.make_directory(path.parent, mode=0o700)
        ctx.files.write_atomic(path, found + "\n", mode=0o600)
    return found


# -- the join file --------------------------------------------------------------------

def _cluster_env(name: str, endpoints: Sequence[str], host: str) -> str:
    return json.dumps({"DOGRAH_ETCD_ENDPOINTS": " ".join(endpoints), "DOGRAH_CLUSTER": name,
                       "DOGRAH_HOST_NAME": host})


def _env(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except ValueError:
        raise DograhError("the join file's cluster.env is damaged") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise DograhError("the join file's cluster.env is damaged")
    return data


def _tar(parts: Mapping[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, text in parts.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _untar(data: bytes) -> dict[str, str]:
    """The parts of a join file: known names only, each a plain file of a bounded size."""
    parts = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive.getmembers():
                if member.name not in PARTS or not member.isfile() or member.size > PART_LIMIT:
                    raise DograhError(f"the join file holds {member.name!r}, which no join "
                                      "file of dograhctl's does")
                handle = archive.extractfile(member)
                assert handle is not None
                parts[member.name] = handle.read().decode()
    except (tarfile.TarError, UnicodeDecodeError):
        raise DograhError("the join file is not one dograhctl etcd create made") from None
    return parts


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
