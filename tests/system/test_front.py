"""The front door: reachable by address, HTTPS three ways (ACME against pebble, the
admin's files, self-signed), the admin's own locations, the UI as a unit; Debian 12
and 13. The server's address is one of its own, so that curl reaches nginx by an
address that is not loopback's (added to lo: the kernel here has no dummy links)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.testbed import pebble
from bench.testbed.container import Container

from .fleet import NGINX_FILES, dograhctl, reset
from .load import Load, assert_nothing_lost

pytestmark = pytest.mark.system

ENV = "/etc/dograh/dograh.env"
ADDRESS = "10.123.0.1"
NAME = "voice.dograh.test"


@pytest.fixture(scope="module", autouse=True)
def plain_http_afterwards(container: Container) -> Iterator[None]:
    """Each test sets its own front door; the module leaves the site as it found it."""
    env = container.path(ENV)
    original = env.read_text()
    yield
    env.write_text(original)
    container.run("rm", "-f", "/etc/dograh/nginx/ui.conf")
    dograhctl(container, "render")


def configure(ct: Container, text: str) -> None:
    env = ct.path(ENV)
    lines = [line for line in env.read_text().splitlines()
             if not line.startswith(("DOGRAH_TLS", "DOGRAH_NGINX_SERVER_NAME", "DOGRAH_ACME_",
                                     "ENABLE_DOGRAH_UI", "DOGRAH_UI_COMMAND"))]
    env.write_text("\n".join(lines) + "\n" + text)


def nginx_files(ct: Container) -> dict[str, str]:
    return {f: ct.path(f).read_text() for f in NGINX_FILES}


def served_serial(ct: Container, name: str) -> str:
    out = ct.sh(f"echo | openssl s_client -connect 127.0.0.1:443 -servername {name} "
                "2>/dev/null | openssl x509 -noout -serial").stdout
    return out.strip()


def test_reachable_by_the_servers_address(container: Container) -> None:
    container.run("ip", "address", "replace", f"{ADDRESS}/32", "dev", "lo")
    configure(container, "DOGRAH_TLS=off\n")
    dograhctl(container, "render")
    answer = container.run("curl", "-sf", f"http://{ADDRESS}/api/v1/health").stdout
    assert json.loads(answer) == {"status": "ok"}
    # Debian's stock default site gave way; its file is untouched.
    assert not container.path("/etc/nginx/sites-enabled/default").exists()
    assert container.path("/etc/nginx/sites-available/default").exists()
    assert "listen 80 default_server;" in container.path("/etc/nginx/sites-available/dograh") \
        .read_text()

    # A default server of the admin's own stays theirs; the API answers by name.
    mine = container.path("/etc/nginx/sites-enabled/mine")
    text = "server {\n    listen 80 default_server;\n    return 204;\n}\n"
    mine.write_text(text)
    try:
        dograhctl(container, "render")
        container.run("nginx", "-t", "-q")
        assert mine.read_text() == text
        by_address = container.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                   f"http://{ADDRESS}/api/v1/health").stdout
        assert by_address == "204"
        by_name = container.run("curl", "-sf", "-H", "Host: localhost",
                                f"http://{ADDRESS}/api/v1/health").stdout
        assert json.loads(by_name) == {"status": "ok"}
        doctor = dograhctl(container, "doctor", check=False).stdout
        assert "an nginx site of the admin's is the default server" in doctor, doctor
    finally:
        mine.unlink()
    dograhctl(container, "render")
    assert json.loads(container.run("curl", "-sf", f"http://{ADDRESS}/api/v1/health").stdout) \
        == {"status": "ok"}


def test_self_signed_https_balances_sixty_calls(container: Container) -> None:
    configure(container, "DOGRAH_TLS=self-signed\n")
    dograhctl(container, "render")
    reset(container, 6)
    health = container.run("curl", "-sfk", "https://localhost/api/v1/health").stdout
    assert json.loads(health) == {"status": "ok"}
    # Plain HTTP moves to HTTPS, except certbot's challenges.
    redirect = container.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                             "http://localhost/api/v1/health").stdout
    assert redirect == "301 https://localhost/api/v1/health"
    challenge = container.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              "http://localhost/.well-known/acme-challenge/nothing").stdout
    assert challenge == "404"
    # HTTP/2 for plain requests; TLS 1.2 and 1.3 only.
    http2 = container.run("curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version}",
                          "https://localhost/api/v1/health").stdout
    assert http2 == "2"
    old = container.sh("echo | openssl s_client -connect 127.0.0.1:443 -tls1_1 "
                       "-cipher 'DEFAULT:@SECLEVEL=0' 2>&1", check=False).stdout
    assert "alert protocol version" in old, old
    # The app sees the scheme and the client as nginx saw them.
    seen = json.loads(container.run("curl", "-sfk", "--interface", "127.0.0.2",
                                    "https://localhost/api/v1/worker").stdout)
    assert (seen["scheme"], seen["client"]) == ("https", "127.0.0.2")
    container.run("cp", "/etc/dograh/tls/self-signed.crt", "/root/self-signed.crt")
    load = Load(container, "--base", "https://localhost", "--cacert", "/root/self-signed.crt",
                "--duration", "1", "--rps", "0", "--call-rate", "0", "--call-seconds", "8",
                "--jitter", "0", "--initial-calls", "60")
    per_port = load.warm_calls
    assert sum(per_port.values()) == 60 and len(per_port) == 6, per_port
    assert max(per_port.values()) - min(per_port.values()) <= 1, per_port
    assert load.result()["calls"]["closed_early"] == 0


def make_ca(ct: Container) -> None:
    """/root/ca: a CA of the test's own, a certificate for localhost it signed
    (site.pem, site.key), and a key that is not the site's (other.key)."""
    ct.sh(
        "mkdir -p /root/ca && cd /root/ca && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=test-ca -keyout ca.key -out ca.pem "
        "-addext basicConstraints=critical,CA:TRUE 2>/dev/null && "
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=site "
        "-keyout site.key -out site.csr 2>/dev/null && "
        "printf 'subjectAltName=DNS:localhost\\n' > ext && "
        "openssl x509 -req -in site.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile ext -out site.pem 2>/dev/null && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=other -keyout other.key -out other.pem 2>/dev/null")


def test_the_admins_own_certificate(container: Container) -> None:
    make_ca(container)
    configure(container, "DOGRAH_TLS=files\nDOGRAH_TLS_CERTIFICATE=/root/ca/site.pem\n"
                         "DOGRAH_TLS_KEY=/root/ca/site.key\n")
    dograhctl(container, "render")
    health = container.run("curl", "-sf", "--cacert", "/root/ca/ca.pem",
                           "https://localhost/api/v1/health").stdout
    assert json.loads(health) == {"status": "ok"}


@pytest.mark.parametrize(("settings", "message"), [
    ("DOGRAH_TLS=files\nDOGRAH_TLS_CERTIFICATE=/root/ca/missing.pem\n"
     "DOGRAH_TLS_KEY=/root/ca/site.key\n",
     "dograhctl: DOGRAH_TLS_CERTIFICATE=/root/ca/missing.pem: no such file\n"),
    ("DOGRAH_TLS=files\nDOGRAH_TLS_CERTIFICATE=/root/ca/site.pem\n"
     "DOGRAH_TLS_KEY=/root/ca/other.key\n",
     "dograhctl: DOGRAH_TLS_KEY=/root/ca/other.key: not the key of /root/ca/site.pem\n"),
    ("DOGRAH_TLS=https\n",
     f"dograhctl: {ENV}: DOGRAH_TLS='https' is invalid; allowed: off | files | self-signed "
     "| acme\n"),
])
def test_bad_tls_settings_leave_nginx_alone(container: Container, settings: str,
                                            message: str) -> None:
    before = nginx_files(container)
    configure(container, settings)
    for verb in (["render"], ["scale", "2"]):
        result = dograhctl(container, *verb, check=False)
        assert result.returncode == 1
        assert result.stderr == message
        assert nginx_files(container) == before


def start_pebble(ct: Container) -> None:
    ct.run("apt-get", "install", "-y", "certbot", timeout=300)
    # Ten days: inside certbot's renewal window, so a plain renew renews.
    pebble.start(ct, "127.0.0.1", NAME, "127.0.0.1", validity=864000)


def test_acme_issues_then_renews_under_live_calls(container: Container) -> None:
    start_pebble(container)
    trust = {"REQUESTS_CA_BUNDLE": pebble.CA}  # certbot must trust pebble's listener
    configure(container, f"DOGRAH_TLS=acme\nDOGRAH_NGINX_SERVER_NAME={NAME}\n"
                         "DOGRAH_ACME_SERVER=https://localhost:14000/dir\n")
    out = container.run("dograhctl", "render", env=trust, timeout=180)
    assert f"certbot issued the site's certificate for {NAME}" in out.stderr, out.stderr
    pebble.root(container, "127.0.0.1", "/root/pebble-root.pem")
    health = container.run("curl", "-sf", "--cacert", "/root/pebble-root.pem",
                           f"https://{NAME}/api/v1/health").stdout
    assert json.loads(health) == {"status": "ok"}
    renewal = container.path("/etc/letsencrypt/renewal/dograh.conf").read_text()
    assert "renew_hook = /usr/lib/dograh-systemd/certbot-deploy-hook" in renewal
    doctor = dograhctl(container, "doctor", check=False).stdout
    assert re.search(rf"ok   certificate .*: covers {NAME}, \d+ days left", doctor), doctor
    assert "ok   ACME renewal: certbot.timer renews it; the deploy hook reloads nginx" in doctor

    # A forced renewal while 40 calls are live over wss://: nginx reloads, never restarts.
    master = container.run("cat", "/run/nginx.pid").stdout.strip()
    serial = served_serial(container, NAME)
    load = Load(container, "--base", f"https://{NAME}", "--cacert", "/root/pebble-root.pem",
                "--duration", "10", "--rps", "20", "--call-rate", "0", "--call-seconds", "15",
                "--jitter", "0", "--initial-calls", "40")
    container.run("certbot", "renew", "--force-renewal", "--no-random-sleep-on-renew", "-q",
                  env=trust, timeout=180)
    deadline = time.monotonic() + 10
    while served_serial(container, NAME) == serial:
        assert time.monotonic() < deadline, "nginx still serves the old certificate"
        time.sleep(0.2)
    assert container.run("cat", "/run/nginx.pid").stdout.strip() == master
    assert_nothing_lost(load.result())


def test_the_admins_locations_and_the_ui_unit(container: Container) -> None:
    configure(container, "DOGRAH_TLS=off\n")
    dograhctl(container, "render")
    container.run("mkdir", "-p", "/srv/ui")
    container.path("/srv/ui/index.html").write_text("stand-in UI\n")
    container.run("systemd-run", "--unit=standin-ui", "python3", "-m", "http.server", "3010",
                  "--bind", "127.0.0.1", "--directory", "/srv/ui")
    snippet = Path("/etc/dograh/nginx/ui.conf")
    container.path(str(snippet)).write_text("location / {\n    proxy_pass http://127.0.0.1:3010;\n}\n")
    try:
        for verb in (["render"], ["scale", "3"]):
            dograhctl(container, *verb)
            page = container.sh("until curl -sf http://localhost/; do sleep 0.2; done",
                                timeout=30).stdout
            assert page == "stand-in UI\n"
            assert container.path(str(snippet)).read_text().startswith("location / {")
    finally:
        container.run("systemctl", "stop", "standin-ui")
        container.path(str(snippet)).unlink()
    # The same UI as a unit of the fleet, routed at / by the site itself.
    container.run("install", "-d", "-o", "dograh", "-g", "dograh", "/var/lib/dograh/ui")
    container.path("/var/lib/dograh/ui/index.html").write_text("UI unit\n")
    configure(container, "ENABLE_DOGRAH_UI=true\nDOGRAH_UI_COMMAND=python3 -m http.server 3010 "
                         "--bind 127.0.0.1\n")
    dograhctl(container, "scale", "3")
    page = container.sh("until curl -sf http://localhost/; do sleep 0.2; done", timeout=30).stdout
    assert page == "UI unit\n"
    assert container.run("systemctl", "is-active", "dograh-ui.service").stdout.strip() == "active"
    configure(container, "")
    dograhctl(container, "scale", "3")
    assert container.run("systemctl", "is-active", "dograh-ui.service",
                         check=False).stdout.strip() == "inactive"


def test_a_failed_renewal_leaves_the_serving_certificate(container: Container) -> None:
    """The TLS directory turns read-only and the names change: the new certificate cannot
    be made, and nginx goes on serving the old pair, through a restart too."""
    configure(container, f"DOGRAH_TLS=self-signed\nDOGRAH_NGINX_SERVER_NAME={NAME}\n")
    dograhctl(container, "render")
    serial = served_serial(container, NAME)
    assert serial.startswith("serial=")
    container.run("mount", "--bind", "/etc/dograh/tls", "/etc/dograh/tls")
    container.run("mount", "-o", "remount,ro,bind", "/etc/dograh/tls")
    try:
        configure(container, "DOGRAH_TLS=self-signed\nDOGRAH_NGINX_SERVER_NAME=other.dograh.test\n")
        failed = dograhctl(container, "render", check=False)
        assert failed.returncode == 1
        line = failed.stderr.strip().splitlines()[-1]
        assert line.startswith("dograhctl: making a self-signed certificate failed, the "
                               "serving one is unchanged: "), failed.stderr
        container.run("nginx", "-t", "-q")
        assert served_serial(container, NAME) == serial
        container.run("systemctl", "restart", "nginx")
        assert served_serial(container, NAME) == serial
    finally:
        container.run("umount", "/etc/dograh/tls")
    configure(container, "DOGRAH_TLS=self-signed\n")
    dograhctl(container, "render")


@pytest.mark.parametrize(("tls", "hsts"), [("files", True), ("self-signed", False)])
def test_https_on_another_port_with_hsts_only_when_trusted(container: Container, tls: str,
                                                           hsts: bool) -> None:
    make_ca(container)
    configure(container, f"DOGRAH_TLS={tls}\nDOGRAH_NGINX_HTTPS_LISTEN=8443\n"
                         "DOGRAH_TLS_CERTIFICATE=/root/ca/site.pem\n"
                         "DOGRAH_TLS_KEY=/root/ca/site.key\n")
    try:
        dograhctl(container, "render")
        redirect = container.run("curl", "-s", "-o", "/dev/null", "-w", "%{redirect_url}",
                                 "http://localhost/api/v1/health").stdout
        assert redirect == "https://localhost:8443/api/v1/health"
        headers = container.run("curl", "-sf", "-D", "-", "-o", "/dev/null", "-k",
                                "https://localhost:8443/api/v1/health").stdout.lower()
        assert ("strict-transport-security: max-age=31536000" in headers) is hsts, headers
    finally:
        configure(container, "DOGRAH_TLS=off\n")
        dograhctl(container, "render")
