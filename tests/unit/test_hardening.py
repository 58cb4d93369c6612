"""Hardening: certificates never half-made, HTTPS done fully, no secret guessable from a
world-readable file, every input one line, doctor says what it asks, and old nginx
generations are bounded and shown."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from dograh_systemd import paths, units
from dograh_systemd.host.commands import Completed, run_here

from .conftest import context
from .fake_host import FakeHost

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

LONG_NAME = "a-rather-long-host-name-for-a-voice-platform-service.region-one.example.com"


def with_openssl(host: FakeHost, refuse_requests: bool = False) -> None:
    """The machine's own openssl, which needs no root; or one that fails to make one."""
    def openssl(args: list[str]) -> Completed:
        if refuse_requests and args[:1] == ["req"]:
            return Completed(1, "", "req: Error adding subject name attribute\n")
        return run_here(["openssl", *args])
    host.commands["openssl"] = openssl


def test_a_self_signed_certificate_is_made_whole_for_a_long_name(host: FakeHost) -> None:
    assert len(LONG_NAME) > 64  # longer than a common name may be
    host.configure(f"DOGRAH_TLS=self-signed\nDOGRAH_NGINX_SERVER_NAME={LONG_NAME}\n")
    with_openssl(host)
    code, _, err = host.dograhctl("scale", "2")
    assert code == 0, err
    pem = host.files.path(paths.SELF_SIGNED)
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    text = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName",
                           "-in", str(pem)], capture_output=True, text=True, check=True).stdout
    assert "CN = dograh-systemd self-signed" in text and f"DNS:{LONG_NAME}" in text
    site = host.files.read(paths.NGINX_SITE) or ""
    assert f"ssl_certificate {paths.SELF_SIGNED};" in site
    assert f"ssl_certificate_key {paths.SELF_SIGNED};" in site  # one file: one pair
    assert not [p for p in host.files.listing(paths.TLS_DIR) if p.name.startswith(".")]


def renamed_while_serving(host: FakeHost) -> str | None:
    """A fleet serving a self-signed pair for one name, its config then given another:
    the pair it serves."""
    host.configure("DOGRAH_TLS=self-signed\nDOGRAH_NGINX_SERVER_NAME=voice.example.com\n")
    with_openssl(host)
    assert host.dograhctl("scale", "2")[0] == 0
    host.configure("DOGRAH_TLS=self-signed\nDOGRAH_NGINX_SERVER_NAME=other.example.com\n")
    return host.files.read(paths.SELF_SIGNED)


def test_a_failed_renewal_leaves_the_serving_pair_untouched(host: FakeHost) -> None:
    serving = renamed_while_serving(host)
    with_openssl(host, refuse_requests=True)
    code, _, err = host.dograhctl("render")
    assert code == 1
    assert err == ("dograhctl: making a self-signed certificate failed, the serving one is "
                   "unchanged: req: Error adding subject name attribute\n")
    assert host.files.read(paths.SELF_SIGNED) == serving
    assert not [p for p in host.files.listing(paths.TLS_DIR) if p.name.startswith(".")]


def test_a_certificate_nginx_refuses_is_put_back(host: FakeHost) -> None:
    serving = renamed_while_serving(host)
    host.nginx_tests_fail = True
    code, _, err = host.dograhctl("render")
    assert code == 1 and "nginx refuses the new self-signed certificate" in err
    assert host.files.read(paths.SELF_SIGNED) == serving


@pytest.mark.parametrize(("tls", "hsts"), [("files", True), ("self-signed", False)])
def test_https_on_another_port_redirects_there_with_hsts_when_trusted(
        host: FakeHost, tmp_path: Path, tls: str, hsts: bool) -> None:
    with_openssl(host)
    certificate, key = tmp_path / "site.crt", tmp_path / "site.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", "/CN=x",
                    "-addext", "subjectAltName=DNS:voice.example.com", "-keyout", str(key),
                    "-out", str(certificate)], capture_output=True, check=True)
    for path in (certificate, key):
        host.files.write_atomic(Path("/etc/ssl/site") / path.name, path.read_text())
    host.configure(f"DOGRAH_TLS={tls}\nDOGRAH_NGINX_HTTPS_LISTEN=8443\n"
                   "DOGRAH_NGINX_SERVER_NAME=voice.example.com\n"
                   "DOGRAH_TLS_CERTIFICATE=/etc/ssl/site/site.crt\n"
                   "DOGRAH_TLS_KEY=/etc/ssl/site/site.key\n")
    code, _, err = host.dograhctl("scale", "2")
    assert code == 0, err
    site = host.files.read(paths.NGINX_SITE) or ""
    assert "return 301 https://$host:8443$request_uri;" in site
    assert "listen 8443 ssl" in site
    header = 'add_header Strict-Transport-Security "max-age=31536000" always;'
    assert (header in site) is hsts
    host.configure(host.files.read(Path("/etc/dograh/dograh.env")) + "DOGRAH_NGINX_HSTS=false\n")
    assert host.dograhctl("render")[0] == 0
    assert header not in (host.files.read(paths.NGINX_SITE) or "")


def test_the_record_gives_no_way_to_test_guesses_of_a_secret(host: FakeHost) -> None:
    host.configure("FASTAPI_WORKERS=2\nDATABASE_URL=postgresql://dograh:hunter2@db/dograh\n")
    assert host.dograhctl("scale")[0] == 0
    record = json.loads(host.files.read(paths.RECORD) or "")
    unit = host.files.read(paths.UNIT_DIR / "dograh-api@.service") or ""
    ctx = context(host)
    environment = units.app_environment(host.files, ctx.settings)
    unkeyed = hashlib.sha256(f"{unit}\n{environment}".encode()).hexdigest()[:16]
    assert record["fleet"]["definitions"]["api"] != unkeyed
    key = host.files.path(paths.DIGEST_KEY)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # The same definitions under another key differ: the key is what makes them.
    other = units.definitions(host.files, ctx.settings, {"dograh-api@.service": unit},
                              b"another key")
    assert other["api"] != record["fleet"]["definitions"]["api"]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: r["fleet"]["upstream"][0].update(port=1e999),
     "fleet.upstream.0.port: value is not a valid integer"),
    (lambda r: r["fleet"]["units"].update(api=["../../../etc/cron.d/x"]),
     "fleet.units.api.0: string does not match regex"),
    (lambda r: r.update(format=9),
     "format: written by a newer dograh-systemd (record format 9; this one reads up to 2): "
     "upgrade this host's package"),
    (lambda r: r["fleet"]["upstream"][0].update(address="127.0.0.1; include /etc/shadow"),
     "fleet.upstream.0.address: "),
])
def test_a_record_out_of_shape_is_one_line(host: FakeHost, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    assert host.dograhctl("scale", "2")[0] == 0
    path = host.files.path(paths.RECORD)
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    host.log.clear()
    code, _, err = host.dograhctl("scale", "3")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert host.log == []


def test_a_record_nested_too_deep_is_one_line(host: FakeHost) -> None:
    host.files.write_atomic(paths.RECORD, "[" * 100_000 + "]" * 100_000)
    code, _, err = host.dograhctl("status")
    assert code == 1 and err.startswith(f"dograhctl: {paths.RECORD} is damaged (")
    assert len(err.strip().splitlines()) == 1


def test_status_shows_old_nginx_generations_and_the_bound(host: FakeHost) -> None:
    assert host.dograhctl("scale", "2")[0] == 0
    serving = host.nginx_processes[-1]
    serving.connections, serving.started = 28, host.clock.now - 95  # 14 calls
    assert host.dograhctl("render")[0] == 0  # a reload: it becomes an old generation
    assert not serving.accepting
    code, out, _ = host.dograhctl("status")
    assert code == 0
    assert ("1 old nginx worker(s) from 95s ago hold 14 call(s); they end with their last "
            "call, or at 360s (worker_shutdown_timeout)") in out
    data = json.loads(host.dograhctl("status", "--json")[1])
    assert [(g["workers"], g["calls"]) for g in data["nginx_generations"]] == [(1, 14)]
    serving.connections = 0  # its calls ended: the generation is gone at the next reload
    assert host.dograhctl("render")[0] == 0
    assert "old nginx worker" not in host.dograhctl("status")[1]


def test_the_shutdown_timeout_follows_the_drain(host: FakeHost) -> None:
    assert host.dograhctl("scale", "2")[0] == 0
    assert "worker_shutdown_timeout 360s;" in (host.files.read(paths.NGINX_CAPACITY) or "")
    host.configure("DRAIN_TIMEOUT=1260\n")
    assert host.dograhctl("render")[0] == 0
    assert "worker_shutdown_timeout 1320s;" in (host.files.read(paths.NGINX_CAPACITY) or "")
