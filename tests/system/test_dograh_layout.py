"""A Dograh-shaped checkout, run unchanged, on Debian 13 with PostgreSQL and Redis.

The fixture (tests/fixtures/dograh) has Dograh's module paths and start
commands and lives in its own venv on Python 3.13, without system site
packages; /etc/dograh/dograh.env names only the checkout.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .container import CACHE_DIR, Container
from .test_fleet import main_pid, units

pytestmark = pytest.mark.system

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/dograh"
CHECKOUT = "/srv/dograh"
REQUIREMENTS = ["fastapi", "uvicorn", "arq", "redis", "sqlalchemy", "alembic", "psycopg[binary]"]
ARI = "dograh-ari-manager.service"
ORCHESTRATOR = "dograh-campaign-orchestrator.service"


def wheels_for_python_313() -> Path:
    target = CACHE_DIR / "wheels-cp313"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                    "--disable-pip-version-check", "--dest", str(target), "--only-binary=:all:",
                    "--python-version", "3.13", "--platform", "manylinux_2_17_x86_64",
                    "--implementation", "cp", *REQUIREMENTS], check=True)
    return target


@pytest.fixture(scope="module")
def dograh(deb: Path) -> Iterator[Container]:
    """Debian 13 with PostgreSQL, Redis, the checkout in its venv, then the package."""
    ct = Container("trixie", name="dograh-layout")
    try:
        ct.boot()
        ct.run("apt-get", "install", "-y", "postgresql", "redis-server", "python3-venv",
               timeout=300)
        ct.sh("runuser -u postgres -- psql -q -c \"CREATE ROLE dograh LOGIN PASSWORD 'dograh'\""
              " && runuser -u postgres -- createdb -O dograh dograh")
        shutil.copytree(FIXTURE, ct.path(CHECKOUT))
        shutil.copytree(wheels_for_python_313(), ct.path("/root/wheels"))
        ct.run("python3", "-m", "venv", f"{CHECKOUT}/venv")
        ct.run(f"{CHECKOUT}/venv/bin/pip", "install", "--quiet", "--no-index", "--find-links",
               "/root/wheels", *REQUIREMENTS, timeout=300)
        ct.path(f"{CHECKOUT}/api/.env").write_text(
            "DATABASE_URL=postgresql+psycopg://dograh:dograh@127.0.0.1/dograh\n"
            "REDIS_URL=redis://127.0.0.1:6379\n")
        ct.path("/etc/dograh").mkdir()
        ct.path("/etc/dograh/dograh.env").write_text(
            f"DOGRAH_CHECKOUT={CHECKOUT}\nFASTAPI_WORKERS=2\nARQ_WORKERS=1\n")
        # The admin's config is in place before the package: keep it.
        ct.install_deb(deb, "-o", "Dpkg::Options::=--force-confold")
        ct.sh(f"chgrp dograh {CHECKOUT}/api/.env && chmod 0640 {CHECKOUT}/api/.env")
        yield ct
    finally:
        ct.destroy()


def sql(ct: Container, query: str) -> str:
    return ct.run("runuser", "-u", "postgres", "--", "psql", "-d", "dograh", "-tA", "-c",
                  query).stdout.strip()


def journal_time(ct: Container, pattern: str) -> float:
    """When the journal first said ``pattern``."""
    out = ct.run("journalctl", "--no-pager", "-o", "short-unix", "-b").stdout
    for line in out.splitlines():
        if re.search(pattern, line):
            return float(line.split()[0])
    raise AssertionError(f"journal never said {pattern!r}")


def test_scale_runs_the_checkout_after_its_migrations(dograh: Container) -> None:
    doctor = dograh.run("dograhctl", "doctor", check=False)
    assert doctor.returncode == 0, doctor.stdout
    assert "interpreter /srv/dograh/venv/bin/python: Python 3.13" in doctor.stdout
    assert "REDIS_URL: 127.0.0.1:6379 answers" in doctor.stdout

    dograh.run("dograhctl", "scale", "4", "--arq", "2")
    assert units(dograh, "dograh-api@*") == [f"dograh-api@{p}.service" for p in range(8000, 8004)]
    assert units(dograh, "dograh-arq@*") == ["dograh-arq@1.service", "dograh-arq@2.service"]
    assert units(dograh, ARI) == [ARI] and units(dograh, ORCHESTRATOR) == [ORCHESTRATOR]
    assert dograh.run("dograhctl", "status").returncode == 0

    assert sql(dograh, "SELECT version_num FROM alembic_version") == "0001"
    migrated = journal_time(dograh, r"dograh-migrate.service: Deactivated successfully|"
                                    r"Finished dograh-migrate.service")
    first_worker = journal_time(dograh, r"Starting dograh-api@\d+.service")
    assert migrated < first_worker
    # Each singleton started once, after the migration created its table.
    assert sql(dograh, "SELECT role, count(*) FROM singleton_starts GROUP BY role ORDER BY role") \
        == "ari_manager|1\ncampaign_orchestrator|1"


def test_a_request_through_nginx_runs_an_arq_job(dograh: Container) -> None:
    job = json.loads(dograh.run("curl", "-sf", "-X", "POST",
                                "http://localhost/api/v1/calls/21").stdout)["job"]
    result = json.loads(dograh.run("curl", "-sf", f"http://localhost/api/v1/jobs/{job}").stdout)
    assert result["result"]["worker"] in ("1", "2")
    row = result["result"]["row"]
    assert sql(dograh, f"SELECT number FROM calls WHERE id = {row}") == "21"


def test_the_app_sees_the_client_through_nginx_only(dograh: Container) -> None:
    through_nginx = json.loads(dograh.run(
        "curl", "-sf", "--interface", "127.0.0.2", "-H", "X-Forwarded-For: 203.0.113.9",
        "http://localhost/api/v1/whoami").stdout)
    assert through_nginx["client"] == "127.0.0.2"  # nginx's view, not the forged header
    assert through_nginx["scheme"] == "http"
    direct = json.loads(dograh.run(
        "curl", "-sf", "--interface", "127.0.0.2", "-H", "X-Forwarded-For: 203.0.113.9",
        "http://127.0.0.1:8000/api/v1/whoami").stdout)
    assert direct["client"] == "127.0.0.2"  # headers from anyone but nginx are ignored


def test_no_colour_codes_in_the_journal(dograh: Container) -> None:
    out = dograh.run("journalctl", "--no-pager", "-o", "cat", "-u", ARI, "-u", ORCHESTRATOR,
                     "-u", "dograh-api@8000.service", "-u", "dograh-arq@1.service",
                     "-u", "dograh-arq@2.service").stdout
    assert "ari_manager | running" in out
    assert "api | worker on port 8000 imported" in out
    assert "\x1b[" not in out


def test_a_failed_migration_stops_the_deploy(dograh: Container) -> None:
    broken = dograh.path(f"{CHECKOUT}/api/alembic/versions/0002_broken.py")
    broken.write_text('revision = "0002"\ndown_revision = "0001"\n\n\n'
                      "def upgrade() -> None:\n    raise RuntimeError('broken migration')\n")
    before = {unit: main_pid(dograh, unit) for unit in units(dograh, "dograh-*")}
    try:
        result = dograh.run("dograhctl", "restart", check=False, timeout=300)
        assert result.returncode == 1
        assert "migrations failed, the running fleet is unchanged" in result.stderr
        assert {unit: main_pid(dograh, unit) for unit in units(dograh, "dograh-*")} == before
        assert dograh.run("curl", "-sf", "http://localhost/api/v1/health").returncode == 0
        assert sql(dograh, "SELECT version_num FROM alembic_version") == "0001"
    finally:
        broken.unlink()


def test_a_disabled_singleton_stays_down(dograh: Container) -> None:
    env = dograh.path("/etc/dograh/dograh.env")
    env.write_text(env.read_text() + "ENABLE_ARI_MANAGER=false\n")
    dograh.run("dograhctl", "scale", "3")
    assert units(dograh, ARI, state="active,activating") == []
    dograh.run("dograhctl", "restart", timeout=300)
    assert units(dograh, ARI, state="active,activating") == []
    assert units(dograh, ORCHESTRATOR) == [ORCHESTRATOR]
    dograh.poweroff()
    dograh.boot()
    dograh.sh("until systemctl is-active -q dograh-api@8100.service; do sleep 0.2; done",
              timeout=60)
    assert units(dograh, ARI, state="active,activating") == []
    assert dograh.run("systemctl", "is-enabled", ARI, check=False).stdout.strip() == "disabled"
    assert units(dograh, ORCHESTRATOR) == [ORCHESTRATOR]
    assert dograh.run("dograhctl", "status").returncode == 0


def test_doctor_names_what_to_fix(dograh: Container) -> None:
    dograh.run("chmod", "0600", f"{CHECKOUT}/api/.env")
    dograh.run("systemctl", "stop", "redis-server")
    try:
        result = dograh.run("dograhctl", "doctor", check=False)
        assert result.returncode == 1
        assert (f"FAIL env file {CHECKOUT}/api/.env: not readable by the service user\n"
                f"     fix: chgrp dograh {CHECKOUT}/api/.env && chmod g+r {CHECKOUT}/api/.env"
                ) in result.stdout
        assert "FAIL REDIS_URL: 127.0.0.1:6379 does not answer" in result.stdout
        assert "FAIL app api.app:app: does not import" not in result.stdout  # it still imports
    finally:
        dograh.run("chmod", "0640", f"{CHECKOUT}/api/.env")
        dograh.run("systemctl", "start", "redis-server")
    assert dograh.run("dograhctl", "doctor", check=False).returncode == 0
