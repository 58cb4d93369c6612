"""What a certificate says, and a self-signed one made to order; all with Debian's openssl."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DograhError
from .systemd import Systemd


@dataclass(frozen=True)
class Pair:
    """A certificate (with its chain) and its private key, as nginx is given them."""

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


def read(openssl: Systemd, pair: Pair, certificate_key: str = "DOGRAH_TLS_CERTIFICATE",
         key_key: str = "DOGRAH_TLS_KEY") -> Facts:
    """The certificate's names and end date, after checking both files and that the key
    is the certificate's; a problem is one line naming the file."""
    for key, path in ((certificate_key, pair.certificate), (key_key, pair.key)):
        if not path.is_file():
            raise DograhError(f"{key}={path}: no such file")
    info = openssl.run(["openssl", "x509", "-noout", "-enddate", "-ext", "subjectAltName",
                        "-in", str(pair.certificate)])
    if info.returncode != 0:
        raise DograhError(f"{certificate_key}={pair.certificate}: not a PEM certificate "
                          "openssl can read")
    public = openssl.run(["openssl", "x509", "-noout", "-pubkey", "-in", str(pair.certificate)])
    private = openssl.run(["openssl", "pkey", "-pubout", "-in", str(pair.key)])
    if private.returncode != 0:
        raise DograhError(f"{key_key}={pair.key}: not a PEM private key openssl can read")
    if private.stdout != public.stdout:
        raise DograhError(f"{key_key}={pair.key}: not the key of {pair.certificate}")
    ending = re.search(r"notAfter=(.+)", info.stdout)
    if ending is None:
        raise DograhError(f"{certificate_key}={pair.certificate}: it has no end date")
    not_after = datetime.datetime.strptime(ending.group(1).strip(), "%b %d %H:%M:%S %Y %Z")
    names = re.findall(r"(?:DNS|IP Address):([^,\s]+)", info.stdout)
    return Facts(tuple(names), not_after.replace(tzinfo=datetime.UTC))


def make_self_signed(openssl: Systemd, pair: Pair, names: list[str]) -> None:
    """A certificate for ``names`` and 127.0.0.1, signed by its own key; the key
    never leaves root (0600). Browsers warn about it: it is the first-boot
    default, until a real one is configured or issued."""
    pair.certificate.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    alt = ",".join([*(f"DNS:{name}" for name in names), "IP:127.0.0.1", "IP:::1"])
    result = openssl.run([
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "825", "-subj", f"/CN={names[0]}",
        "-addext", f"subjectAltName={alt}",
        # Without it openssl marks the certificate a CA, which browsers refuse.
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "extendedKeyUsage=serverAuth",
        "-keyout", str(pair.key), "-out", str(pair.certificate)])
    if result.returncode != 0:
        raise DograhError(f"making a self-signed certificate failed: "
                          f"{(result.stderr.strip().splitlines() or ['no output'])[-1]}")
    pair.key.chmod(0o600)
