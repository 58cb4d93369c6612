"""What a certificate says, and a self-signed one made to order; all with Debian's openssl.

A self-signed certificate and its key live in one PEM file that nginx is given
for both (``ssl_certificate`` and ``ssl_certificate_key``): replacing that one
file with a rename swaps them as a pair, so nginx never finds a key that does
not match its certificate. A new one is made beside the old, checked (it
parses, its key is its own, it covers every name, ``nginx -t`` takes it), and
only then renamed into place; a failure leaves the serving one untouched.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import DograhError
from .host import Host

# A certificate's common name is at most 64 characters; the names it covers go
# in subjectAltName, which has no such limit.
COMMON_NAME = "dograh-systemd self-signed"


@dataclass(frozen=True)
class Pair:
    """A certificate (with its chain) and its private key, as nginx is given them
    (the same file for both when they are kept together)."""

    certificate: Path
    key: Path


@dataclass(frozen=True)
class Facts:
    names: tuple[str, ...]      # DNS names and addresses in subjectAltName
    not_after: datetime.datetime

    def days_left(self, now: datetime.datetime) -> int:
        return (self.not_after - now).days

    def covers(self, name: str) -> bool:
        return any(name == own or (own.startswith("*.") and name.split(".", 1)[-1] == own[2:])
                   for own in self.names)


def read(host: Host, pair: Pair, certificate_key: str = "DOGRAH_TLS_CERTIFICATE",
         key_key: str = "DOGRAH_TLS_KEY") -> Facts:
    """The certificate's names and end date, after checking both files and that the key
    is the certificate's; a problem is one line naming the file."""
    for key, path in ((certificate_key, pair.certificate), (key_key, pair.key)):
        if not host.files.exists(path):
            raise DograhError(f"{key}={path}: no such file")
    certificate, private = str(host.files.path(pair.certificate)), str(host.files.path(pair.key))
    info = host.run(["openssl", "x509", "-noout", "-enddate", "-ext", "subjectAltName",
                     "-in", certificate])
    if info.returncode != 0:
        raise DograhError(f"{certificate_key}={pair.certificate}: not a PEM certificate "
                          "openssl can read")
    public = host.run(["openssl", "x509", "-noout", "-pubkey", "-in", certificate])
    own = host.run(["openssl", "pkey", "-pubout", "-in", private])
    if own.returncode != 0:
        raise DograhError(f"{key_key}={pair.key}: not a PEM private key openssl can read")
    if own.stdout != public.stdout:
        raise DograhError(f"{key_key}={pair.key}: not the key of {pair.certificate}")
    ending = re.search(r"notAfter=(.+)", info.stdout)
    if ending is None:
        raise DograhError(f"{certificate_key}={pair.certificate}: it has no end date")
    not_after = datetime.datetime.strptime(ending.group(1).strip(), "%b %d %H:%M:%S %Y %Z")
    names = re.findall(r"(?:DNS|IP Address):([^,\s]+)", info.stdout)
    return Facts(tuple(names), not_after.replace(tzinfo=datetime.UTC))


def make_self_signed(host: Host, names: list[str], nginx_test: Callable[[], None]) -> None:
    """A certificate for ``names`` and loopback, signed by its own key, into
    paths.SELF_SIGNED (root's alone) once it passed every check; its public half
    also goes to paths.SELF_SIGNED_CERTIFICATE for clients to trust. Browsers warn
    about it: it is the first-boot default, until a real one is configured or
    issued."""
    files = host.files
    files.make_directory(paths.TLS_DIR)
    new = paths.TLS_DIR / ".self-signed.pem.new"
    key, certificate = paths.TLS_DIR / ".self-signed.key.new", paths.TLS_DIR / ".self-signed.crt.new"
    alt = ",".join([*(f"DNS:{name}" for name in names), "IP:127.0.0.1", "IP:::1"])
    try:
        result = host.run([
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "825", "-subj", f"/CN={COMMON_NAME}",
            "-addext", f"subjectAltName={alt}",
            # Without it openssl marks the certificate a CA, which browsers refuse.
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "extendedKeyUsage=serverAuth",
            "-keyout", str(files.path(key)), "-out", str(files.path(certificate))])
        if result.returncode != 0:
            raise DograhError(f"making a self-signed certificate failed, the serving one is "
                              f"unchanged: {result.last_line}")
        pem = (files.read(key) or "") + (files.read(certificate) or "")
        files.write_atomic(new, pem, mode=0o600)
        made = read(host, Pair(new, new))
        missing = [name for name in names if not made.covers(name)]
        if missing:
            raise DograhError(f"the self-signed certificate made does not cover "
                              f"{', '.join(missing)}; the serving one is unchanged")
        previous = files.read(paths.SELF_SIGNED)
        files.write_atomic(paths.SELF_SIGNED, pem, mode=0o600)
        try:
            nginx_test()
        except DograhError as exc:
            if previous is None:
                files.unlink(paths.SELF_SIGNED)
            else:
                files.write_atomic(paths.SELF_SIGNED, previous, mode=0o600)
            raise DograhError(f"nginx refuses the new self-signed certificate, the serving "
                              f"one is unchanged: {exc}") from None
        files.write_atomic(paths.SELF_SIGNED_CERTIFICATE, files.read(certificate) or "")
    finally:
        for leftover in (new, key, certificate):
            if files.exists(leftover):  # a read-only directory refuses even an unlink
                files.unlink(leftover)
