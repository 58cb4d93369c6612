"""The real Dograh (v1.42.0 and its pipecat, from ../shared/dograh's bundles) on Debian 13,
as a new site without the Internet gets it: the package, ``dograhctl services setup``
(PostgreSQL 17 with pgvector and Redis from Debian), ffmpeg, a few keys of Dograh's own in
dograh.env, then ``release make`` and ``deploy``. Real calls over Dograh's Twilio media
stream are held through nginx while a new release deploys and rolls back.

On Debian 12, whose Python is 3.11, the same steps are refused in one line each.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.testbed import dograh as real
from bench.testbed.container import Container

from .fleet import main_pid, snapshot, units
from .load import Load
from .releases import git

pytestmark = pytest.mark.system

ENV = "/etc/dograh/dograh.env"
CALLS = "/opt/dograh-stub/calls.py"
NEXT = "/srv/dograh-next"
MADE = "/root/r1-made"  # touched once release make ended
# Dograh's own keys: its model server and S3 on the stub, a public endpoint (else each
# health call looks for a tunnel), no telemetry, and room for the tests' calls.
DOGRAH_KEYS = """\
DOGRAH_SOURCE=/srv/dograh.bundle
FASTAPI_WORKERS=2
ARQ_WORKERS=1
BACKEND_API_ENDPOINT=http://dograh.test
ENABLE_TELEMETRY=false
LOG_TO_FILE=false
MINIO_ENDPOINT=127.0.0.1:9000
DEFAULT_ORG_CONCURRENCY_LIMIT=50
"""
SINGLETONS = ["dograh-ari-manager.service", "dograh-campaign-orchestrator.service"]
TIMINGS: dict[str, float] = {}


def bundles() -> Path:
    found = real.bundles()
    if found is None:
        message = "the real Dograh's bundles are not here (set DOGRAH_BUNDLES)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def timed(name: str, ct: Container, *args: str) -> str:
    started = time.monotonic()
    result = ct.run("dograhctl", *args, check=False, timeout=1800)
    TIMINGS[name] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def health(ct: Container, base: str = "http://127.0.0.1") -> dict:  # type: ignore[type-arg]
    return json.loads(ct.run("curl", "-sf", "--max-time", "20",
                             f"{base}/api/v1/health").stdout)


def secret(ct: Container) -> str:
    text = ct.path("/etc/dograh/secrets.env").read_text()
    return re.search(r"^DOGRAH_DEVOPS_SECRET=(\S+)$", text, re.M).group(1)  # type: ignore[union-attr]


def active_calls(ct: Container, port: int) -> int:
    out = ct.run("curl", "-sf", "-H", f"X-Dograh-Devops-Secret: {secret(ct)}",
                 f"http://127.0.0.1:{port}/api/v1/health/active-calls").stdout
    return int(json.loads(out)["active_calls"])


def api_ports(ct: Container) -> list[int]:
    return [int(re.search(r"@(\d+)", u).group(1))  # type: ignore[union-attr]
            for u in units(ct, "dograh-api@*")]


def release_of(ct: Container, unit: str) -> str:
    """The release a unit's process runs from: its working directory."""
    return Path(ct.run("readlink", f"/proc/{main_pid(ct, unit)}/cwd").stdout.strip()).name


class Calls:
    """Real calls through nginx, held ``seconds`` by calls.py inside the container."""

    def __init__(self, ct: Container, seconds: float, calls: int) -> None:
        self.proc = ct.popen("python3", CALLS, "http://127.0.0.1", str(seconds),
                             "--calls", str(calls))
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        assert first.startswith('{"up"'), first + (self.proc.stderr.read()
                                                   if self.proc.stderr else "")

    def held(self) -> list[dict]:  # type: ignore[type-arg]
        out, err = self.proc.communicate(timeout=600)
        results = [json.loads(line) for line in out.splitlines() if line.startswith('{"call"')]
        print(json.dumps(results))
        assert results and self.proc.returncode == 0, (results, err[-2000:])
        return results


@pytest.fixture(scope="module")
def dograh(deb: Path) -> Iterator[Container]:
    """Debian 13 with the package, Dograh's services, its bundles and wheels offline, and
    the first release of the real Dograh deployed."""
    source = bundles()
    wheels = real.wheelhouse(source)
    ct = Container("trixie", name="dograh-real")
    try:
        ct.boot()
        ct.install_deb(deb)
        said = timed("services setup", ct, "services", "setup")
        assert "PostgreSQL (dograh, with pgvector) and Redis run here" in said, said
        ct.run("apt-get", "install", "-y", "ffmpeg", timeout=600)
        real.prepare(ct, source, wheels)
        ct.path(ENV).write_text(ct.path(ENV).read_text() + DOGRAH_KEYS)
        timed("release make (cold)", ct, "release", "make", "--id", "r1")
        ct.run("touch", MADE)
        timed("deploy r1", ct, "deploy", "r1")
        yield ct
    finally:
        print(json.dumps({"timings": TIMINGS}))
        ct.destroy()


def test_the_real_dograh_answers_through_nginx_by_address_and_by_name(dograh: Container
                                                                       ) -> None:
    for base in ("http://127.0.0.1", "http://localhost", "http://dograh-test"):
        answer = health(dograh, base)
        assert answer["status"] == "ok" and answer["version"] == "1.42.0", answer
    assert len(api_ports(dograh)) == 2  # a band of its own, beside the one before
    assert units(dograh, "dograh-arq@*") == ["dograh-arq@1.service"]
    assert set(units(dograh, "dograh-*.service")) >= set(SINGLETONS)
    for unit in (f"dograh-api@{api_ports(dograh)[0]}.service", "dograh-arq@1.service",
                 *SINGLETONS):
        assert release_of(dograh, unit) == "r1", unit
    doctor = dograh.run("dograhctl", "doctor", check=False)
    assert doctor.returncode == 0, doctor.stdout
    assert "ffmpeg" in doctor.stdout and "REDIS_URL: 127.0.0.1:6379 answers" in doctor.stdout
    # Its migrations ran (pgvector's extension made beforehand, as postgres).
    tables = dograh.run("runuser", "-u", "postgres", "--", "psql", "-d", "dograh", "-tA", "-c",
                        "SELECT count(*) FROM information_schema.tables WHERE "
                        "table_schema = 'public'").stdout.strip()
    assert int(tables) > 20, tables
    assert "vector" in dograh.run("runuser", "-u", "postgres", "--", "psql", "-d", "dograh",
                                  "-tA", "-c", "SELECT extname FROM pg_extension").stdout


def test_a_release_is_sealed_and_nothing_writes_into_it(dograh: Container) -> None:
    release = "/var/lib/dograh-systemd/releases/r1"
    denied = dograh.run("runuser", "-u", "dograh", "--", "touch", f"{release}/api/x",
                        check=False)
    assert denied.returncode != 0
    # Dograh's audio cache lives in the units' cache directory, not beside its source.
    assert dograh.path(f"{release}/dograh_pcm_cache").is_symlink()
    assert dograh.run("stat", "-c", "%U", "/var/cache/dograh/pcm").stdout.strip() == "dograh"
    # Nothing under the release or its venv changed since it was made: the migrations,
    # the workers, ARQ, both singletons and a call all ran from it.
    venv = dograh.run("readlink", "-f", f"{release}/venv").stdout.strip()
    newer = dograh.run("find", f"{release}/", venv, "-newer", MADE).stdout
    assert newer.strip() == "", newer[:2000]


def test_a_real_call_is_held_through_nginx_and_counted(dograh: Container) -> None:
    calls = Calls(dograh, seconds=12, calls=3)
    # Dograh counts a call once its pipeline took the stream's start.
    deadline = time.monotonic() + 8
    while sum(active_calls(dograh, port) for port in api_ports(dograh)) != 3:
        assert time.monotonic() < deadline, "Dograh does not count the 3 calls"
        time.sleep(0.3)
    results = calls.held()
    assert all(not r["early"] and r["held"] >= 12 for r in results), results
    deadline = time.monotonic() + 30
    while sum(active_calls(dograh, port) for port in api_ports(dograh)):
        assert time.monotonic() < deadline, "calls still counted after they ended"
        time.sleep(0.5)


def test_a_new_release_deploys_under_held_calls_and_load(dograh: Container) -> None:
    dograh.run("git", "clone", "-q", "/srv/dograh.bundle", NEXT)
    pyproject = dograh.path(f"{NEXT}/api/pyproject.toml")
    pyproject.write_text(pyproject.read_text().replace('version = "1.42.0"',
                                                       'version = "1.42.1"', 1))
    git(dograh, NEXT, "commit", "-qam", "1.42.1")
    said = timed("release make (warm)", dograh, "release", "make", NEXT, "--id", "r2")
    assert re.search(r"the venv is layer \w+, made for an earlier release", said), said
    layers = dograh.run("ls", "/var/lib/dograh-systemd/layers").stdout.split()
    assert len(layers) == 1
    assert dograh.run("readlink", "-f", "/var/lib/dograh-systemd/releases/r2/venv").stdout.strip() \
        == f"/var/lib/dograh-systemd/layers/{layers[0]}/venv"

    load = Load(dograh, "--keep-alive", "--path", "/api/v1/health", "--rps", "5",
                "--duration", "60", "--call-rate", "0")
    calls = Calls(dograh, seconds=40, calls=4)
    timed("deploy r2 under 4 calls", dograh, "deploy", "r2")
    assert all(not r["early"] for r in calls.held())
    assert_http_only(load.result())
    assert health(dograh)["version"] == "1.42.1"
    for unit in (f"dograh-api@{api_ports(dograh)[0]}.service", "dograh-arq@1.service",
                 *SINGLETONS):
        assert release_of(dograh, unit) == "r2", unit


def test_rollback_returns_to_the_release_before_under_held_calls(dograh: Container) -> None:
    load = Load(dograh, "--keep-alive", "--path", "/api/v1/health", "--rps", "5",
                "--duration", "45", "--call-rate", "0")
    calls = Calls(dograh, seconds=25, calls=3)
    timed("rollback under 3 calls", dograh, "rollback")
    assert all(not r["early"] for r in calls.held())
    assert_http_only(load.result())
    assert health(dograh)["version"] == "1.42.0"
    assert release_of(dograh, f"dograh-api@{api_ports(dograh)[0]}.service") == "r1"


def test_a_killed_worker_comes_back_on_its_release(dograh: Container) -> None:
    port = api_ports(dograh)[0]
    unit = f"dograh-api@{port}.service"
    before = main_pid(dograh, unit)
    dograh.run("kill", "-9", str(before))
    deadline = time.monotonic() + 90
    while units(dograh, unit) != [unit] or main_pid(dograh, unit) in (0, before):
        assert time.monotonic() < deadline, f"{unit} did not come back"
        time.sleep(1)
    assert release_of(dograh, unit) == "r1"
    assert health(dograh, f"http://127.0.0.1:{port}")["version"] == "1.42.0"


def assert_http_only(result: dict) -> None:  # type: ignore[type-arg]
    assert result["requests"]["failed"] == 0, result["requests"]
    assert result["requests"]["ok"] > 0


def test_purge_drops_what_services_setup_made_and_nothing_else(dograh: Container) -> None:
    dograh.run("runuser", "-u", "postgres", "--", "createdb", "theirs")
    out = dograh.run("apt-get", "purge", "-y", "dograh-systemd", timeout=600)
    said = out.stdout + out.stderr
    assert "dropped the database dograh and the role dograh" in said, said
    databases = dograh.run("runuser", "-u", "postgres", "--", "psql", "-tA", "-c",
                           "SELECT datname FROM pg_database").stdout.split()
    roles = dograh.run("runuser", "-u", "postgres", "--", "psql", "-tA", "-c",
                       "SELECT rolname FROM pg_roles").stdout.split()
    assert "dograh" not in databases and "theirs" in databases
    assert "dograh" not in roles
    assert units(dograh, "postgresql*.service") and units(dograh, "redis-server.service")
    assert not dograh.path("/etc/dograh/services.env").exists()


@pytest.mark.parametrize("container", ["bookworm"], indirect=True)
def test_debian_12_refuses_the_real_dograh_in_one_line(container: Container) -> None:
    source = bundles()
    for name in ("dograh.bundle", "pipecat.bundle"):
        shutil.copy(source / name, container.path(f"/srv/{name}"))
    before = snapshot(container)
    services = container.run("dograhctl", "services", "setup", check=False, timeout=300)
    assert services.returncode == 1
    assert services.stderr.count("\n") == 1
    assert "postgresql-17" in services.stderr and "DATABASE_URL" in services.stderr
    assert not container.path("/etc/dograh/services.env").exists()
    made = container.run("dograhctl", "release", "make", "/srv/dograh.bundle", check=False,
                         timeout=600)
    assert made.returncode == 1
    line = made.stderr.strip().splitlines()[-1]
    assert re.search(r"needs Python >=3\.13,<3\.14, and DOGRAH_BUILD_PYTHON=\S+ is 3\.11\.\d+",
                     line), made.stderr
    assert snapshot(container) == before
    failed = container.run("dograhctl", "releases").stdout
    assert "failed" in failed and "Python" in failed
