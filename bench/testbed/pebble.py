"""Debian's pebble as a test's ACME server, validating HTTP-01 against nginx on port 80.

It listens with a certificate of its own CA (``CA``, which certbot must trust), and
validates ``name`` at the address the container's /etc/hosts gives it.
"""

from __future__ import annotations

import json

from .container import Container

DIR = "/etc/pebble"
CA = f"{DIR}/ca.pem"


def start(ct: Container, listen: str, name: str, name_at: str,
          validity: int | None = None) -> None:
    """pebble on ``listen`` (an IP address), ``name`` resolving to ``name_at``, issuing
    certificates valid ``validity`` seconds (None: pebble's default)."""
    ct.run("apt-get", "install", "-y", "pebble", "openssl", timeout=300)
    san = f"DNS:localhost,IP:{listen}" if listen == "127.0.0.1" else f"IP:{listen}"
    ct.sh(
        f"mkdir -p {DIR} && cd {DIR} && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=pebble-listener-ca -keyout ca.key -out ca.pem "
        "-addext basicConstraints=critical,CA:TRUE 2>/dev/null && "
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=pebble "
        "-keyout listener.key -out listener.csr 2>/dev/null && "
        f"printf 'subjectAltName={san}\\n' > ext && "
        "openssl x509 -req -in listener.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile ext -out listener.pem 2>/dev/null")
    config = {"listenAddress": f"{listen}:14000", "managementListenAddress": f"{listen}:15000",
              "certificate": f"{DIR}/listener.pem", "privateKey": f"{DIR}/listener.key",
              "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
              "externalAccountBindingRequired": False}
    if validity:
        config["certificateValidityPeriod"] = validity
    ct.path(f"{DIR}/pebble.json").write_text(json.dumps({"pebble": config}))
    hosts = ct.path("/etc/hosts")
    if name not in hosts.read_text():
        hosts.write_text(hosts.read_text() + f"{name_at} {name}\n")
    # No random delays or rejected nonces; every order validated afresh.
    ct.run("systemd-run", "--unit=pebble", "-E", "PEBBLE_VA_NOSLEEP=1",
           "-E", "PEBBLE_WFE_NONCEREJECT=0", "-E", "PEBBLE_AUTHZREUSE=0",
           "/usr/bin/pebble", "-config", f"{DIR}/pebble.json")
    ct.sh(f"until curl -fs --cacert {CA} https://{listen}:14000/dir >/dev/null; "
          "do sleep 0.1; done", timeout=30)


def directory(listen: str) -> str:
    return f"https://{listen}:14000/dir"


def root(ct: Container, listen: str, path: str) -> None:
    """The root certificate pebble issues under, at ``path``: what a client trusts."""
    ct.sh(f"curl -fs --cacert {CA} https://{listen}:15000/roots/0 > {path}")
