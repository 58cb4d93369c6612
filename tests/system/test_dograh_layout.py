"""A Dograh-shaped checkout, run unchanged, with PostgreSQL and Redis, on Debian 12 (the
real Dograh runs on Debian 13, in test_real_dograh.py).

The fixture (tests/fixtures/dograh) has Dograh's module paths, start commands
and call registry, and lives in its own venv without system site packages;
/etc/dograh/dograh.env names only the checkout (and where Node and ffmpeg are).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.testbed.container import CACHE_DIR, Container

from .fleet import main_pid, units

pytestmark = pytest.mark.system

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHECKOUT = "/srv/dograh"
# async-timeout: redis needs it below Python 3.11.3 (Debian 12 has 3.11.2), and pip's
# download for another Python judges that marker by the Python running it.
REQUIREMENTS = ["fastapi", "uvicorn", "websockets", "arq", "redis", "sqlalchemy", "alembic",
                "psycopg[binary]", "async-timeout"]
ARI = "dograh-ari-manager.service"
ORCHESTRATOR = "dograh-campaign-orchestrator.service"
PYTHON = {"bookworm": "3.11"}
POST_CALL_SECONDS = 8


def wheels(python: str) -> Path:
    target = CACHE_DIR / f"wheels-cp{python.replace('.', '')}"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                    "--disable-pip-version-check", "--dest", str(target), "--only-binary=:all:",
                    "--python-version", python, "--platform", "manylinux_2_17_x86_64",
                    "--implementation", "cp", *REQUIREMENTS], check=True)
    return target


@pytest.fixture(scope="module", params=["bookworm"])
def dograh(request: pytest.FixtureRequest, deb: Path) -> Iterator[Container]:
    """PostgreSQL, Redis, the checkout in its venv, Node and ffmpeg, then the package."""
    ct = Container(request.param, name="dograh-layout")
    try:
        ct.boot()
        ct.run("apt-get", "install", "-y", "postgresql", "redis-server", "python3-venv",
               timeout=300)
        ct.sh("runuser -u postgres -- psql -q -c \"CREATE ROLE dograh LOGIN PASSWORD 'dograh'\""
              " && runuser -u postgres -- createdb -O dograh dograh")
        shutil.copytree(FIXTURES / "dograh", ct.path(CHECKOUT))
        shutil.copytree(FIXTURES / "tools", ct.path("/opt/dograh-tools/bin"))
        shutil.copytree(wheels(PYTHON[request.param]), ct.path("/root/wheels"))
        ct.run("python3", "-m", "venv", f"{CHECKOUT}/venv")
        ct.run(f"{CHECKOUT}/venv/bin/pip", "install", "--quiet", "--no-index", "--find-links",
               "/root/wheels", *REQUIREMENTS, timeout=300)
        # Dograh's own .env, without a DOGRAH_DEVOPS_SECRET: the package makes one.
        ct.path(f"{CHECKOUT}/api/.env").write_text(
            "DATABASE_URL=postgresql+psycopg://dograh:dograh@127.0.0.1/dograh\n"
            "REDIS_URL=redis://127.0.0.1:6379\n"
            f"POST_CALL_SECONDS={POST_CALL_SECONDS}\n")
        ct.sh(f"chgrp dograh {CHECKOUT}/api/.env 2>/dev/null || true")
        ct.path("/etc/dograh").mkdir()
        ct.path("/etc/dograh/dograh.env").write_text(
            f"DOGRAH_CHECKOUT={CHECKOUT}\nFASTAPI_WORKERS=2\nARQ_WORKERS=1\n"
            "DOGRAH_TOOLS_PATH=/opt/dograh-tools/bin\n")
        # The admin's config is in place before the package: keep it.
        install = ct.install_deb(deb, "-o", "Dpkg::Options::=--force-confold")
        ct.install_output = install.stdout + install.stderr  # type: ignore[attr-defined]
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


def test_a_fresh_install_gets_a_secret_nobody_saw(dograh: Container) -> None:
    secrets = dograh.path("/etc/dograh/secrets.env").read_text()
    secret = re.search(r"^DOGRAH_DEVOPS_SECRET=([0-9a-f]{64})$", secrets, re.M).group(1)
    assert dograh.run("stat", "-c", "%U:%G %a", "/etc/dograh/secrets.env").stdout.strip() == \
        "root:dograh 640"
    assert secret not in dograh.install_output  # type: ignore[attr-defined]
    assert "made a new DOGRAH_DEVOPS_SECRET" in dograh.install_output  # type: ignore[attr-defined]


def test_scale_runs_the_checkout_after_its_migrations(dograh: Container) -> None:
    doctor = dograh.run("dograhctl", "doctor", check=False)
    assert doctor.returncode == 0, doctor.stdout
    assert re.search(r"interpreter /srv/dograh/venv/bin/python: Python 3\.1[13]", doctor.stdout)
    assert "REDIS_URL: 127.0.0.1:6379 answers" in doctor.stdout
    assert "ok   node: v22.11.0" in doctor.stdout
    assert "ok   DOGRAH_DEVOPS_SECRET: set" in doctor.stdout
    assert re.search(r"ok   call registry /api/v1/health/active-calls: dograh-api@\d+.service "
                     r"\(the running fleet\) holds 0 call", doctor.stdout), doctor.stdout

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


def test_status_shows_the_apps_calls_and_loop_lag(dograh: Container) -> None:
    status = dograh.run("systemctl", "status", "--no-pager", "--lines=0", "dograh-api@*").stdout
    assert re.search(r'Status: "0 calls \(app\), 0 websockets, 0 requests in flight, '
                     r'\d+ served, loop lag p95 \d+ ms"', status), status
    dograh.run("curl", "-sf", "-X", "POST", "http://127.0.0.1:8001/api/v1/test/block-every-second")
    deadline = time.monotonic() + 30
    lag = 0
    while time.monotonic() < deadline and lag < 150:
        time.sleep(1)
        entry = json.loads(dograh.run("dograhctl", "status", "--json", check=False).stdout)
        lag = next(i["lag_p95_ms"] for i in entry["roles"]["api"]
                   if i["unit"] == "dograh-api@8001.service") or 0
    assert lag >= 150, lag
    dograh.run("systemctl", "restart", "dograh-api@8001.service")


def hold_calls(ct: Container, count: int, seconds: float) -> subprocess.Popen[str]:
    """``count`` calls through nginx that hang up after ``seconds``; prints their runs."""
    script = (
        "import asyncio, json, websockets\n"
        "async def one():\n"
        "    async with websockets.connect('ws://localhost/api/v1/call') as ws:\n"
        "        hello = json.loads(await ws.recv())\n"
        f"        await asyncio.sleep({seconds})\n"
        "        return hello\n"
        "async def main():\n"
        f"    print(json.dumps(await asyncio.gather(*(one() for _ in range({count})))))\n"
        "asyncio.run(main())\n")
    return ct.popen("python3", "-c", script)


def runs_of(proc: subprocess.Popen[str]) -> list[dict[str, object]]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)


def uploaded(ct: Container, runs: list[dict[str, object]]) -> set[str]:
    return {str(run["run"]) for run in runs
            if ct.path(f"/var/lib/dograh/recordings/{run['run']}").exists()}


@pytest.mark.parametrize("verb", [["scale", "2"], ["restart"]])
def test_a_worker_stops_only_after_its_post_call_work(dograh: Container,
                                                      verb: list[str]) -> None:
    dograh.run("dograhctl", "scale", "4", "--no-drain")
    calls = hold_calls(dograh, 8, 2)
    runs = runs_of(calls)  # the sockets are closed; the uploads go on for 8 s
    assert len({run["port"] for run in runs}) == 4
    started = time.monotonic()
    out = dograh.run("dograhctl", *verb, timeout=300)
    took = time.monotonic() - started
    assert re.search(r"draining dograh-api@\d+.service: [1-9]\d* calls \(app\), 0 websockets",
                     out.stderr), out.stderr
    assert took >= POST_CALL_SECONDS - 3, took
    assert "cut" not in out.stdout
    deadline = time.monotonic() + 10  # the workers that stay finish their uploads too
    while uploaded(dograh, runs) != {str(run["run"]) for run in runs}:
        assert time.monotonic() < deadline, "a run's recording was never uploaded: it was cut"
        time.sleep(0.5)


@pytest.mark.parametrize("fault", ["503", "403", "timeout"])
def test_a_registry_that_fails_is_never_taken_for_zero(dograh: Container, fault: str) -> None:
    dograh.run("dograhctl", "scale", "3", "--no-drain")
    fault_file = dograh.path("/var/lib/dograh/registry-fault")
    fault_file.write_text(fault)
    try:
        started = time.monotonic()
        out = dograh.run("dograhctl", "scale", "2", "--drain-timeout", "6", timeout=120)
        took = time.monotonic() - started
    finally:
        fault_file.unlink()
    why = {"503": "HTTP 503", "403": "HTTP 403", "timeout": "no answer in 2s"}[fault]
    assert took >= 6, took
    assert re.search(rf"draining dograh-api@81?02.service: app calls unknown \({why}\)",
                     out.stderr), out.stderr
    assert re.search(rf"the app could not count the calls of dograh-api@81?02.service \({why}\)",
                     out.stderr), out.stderr
    assert "1 worker(s) stopped while their app could not count its calls" in out.stdout


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
    port = json.loads(dograh.run("curl", "-sf", "http://localhost/api/v1/whoami").stdout)["port"]
    direct = json.loads(dograh.run(
        "curl", "-sf", "--interface", "127.0.0.2", "-H", "X-Forwarded-For: 203.0.113.9",
        f"http://127.0.0.1:{port}/api/v1/whoami").stdout)
    assert direct["client"] == "127.0.0.2"  # headers from anyone but nginx are ignored


def test_no_colour_codes_in_the_journal(dograh: Container) -> None:
    out = dograh.run("journalctl", "--no-pager", "-o", "cat", "-u", ARI, "-u", ORCHESTRATOR,
                     "-u", "dograh-api@*", "-u", "dograh-arq@*").stdout
    assert "ari_manager | running" in out
    assert re.search(r"api \| worker on port 81?0\d\d imported", out)
    assert "\x1b[" not in out


def test_a_failed_migration_stops_the_deploy(dograh: Container) -> None:
    broken = dograh.path(f"{CHECKOUT}/api/alembic/versions/0002_broken.py")
    broken.write_text('revision = "0002"\ndown_revision = "0001"\n\n\n'
                      "def upgrade() -> None:\n    raise RuntimeError('broken migration')\n")
    before = {unit: main_pid(dograh, unit) for unit in units(dograh, "dograh-*.service")}
    try:
        result = dograh.run("dograhctl", "restart", check=False, timeout=300)
        assert result.returncode == 1
        assert "migrations failed, the running fleet is unchanged" in result.stderr
        assert {unit: main_pid(dograh, unit) for unit in units(dograh, "dograh-*.service")} == before
        assert dograh.run("curl", "-sf", "http://localhost/api/v1/health").returncode == 0
        assert sql(dograh, "SELECT version_num FROM alembic_version") == "0001"
    finally:
        broken.unlink()


def test_a_disabled_singleton_stays_down(dograh: Container) -> None:
    env = dograh.path("/etc/dograh/dograh.env")
    original = env.read_text()
    env.write_text(original + "ENABLE_ARI_MANAGER=false\n")
    try:
        dograh.run("dograhctl", "scale", "3")
        assert units(dograh, ARI, state="active,activating") == []
        dograh.run("dograhctl", "restart", timeout=300)
        assert units(dograh, ARI, state="active,activating") == []
        assert units(dograh, ORCHESTRATOR) == [ORCHESTRATOR]
        dograh.poweroff()
        dograh.boot()
        dograh.sh("until curl -sf http://localhost/api/v1/health >/dev/null; do sleep 0.2; done",
                  timeout=90)
        assert units(dograh, ARI, state="active,activating") == []
        assert dograh.run("systemctl", "is-enabled", ARI, check=False).stdout.strip() == \
            "disabled"
        assert units(dograh, ORCHESTRATOR) == [ORCHESTRATOR]
        assert dograh.run("dograhctl", "status").returncode == 0
    finally:
        env.write_text(original)
        dograh.run("dograhctl", "scale", "3")


def test_an_outage_at_boot_heals_by_itself(dograh: Container) -> None:
    """PostgreSQL and Redis down at boot, back 60 s later: no admin command needed."""
    dograh.run("systemctl", "disable", "--now", "redis-server", "postgresql")
    dograh.poweroff()
    dograh.boot(settled=False)  # the boot waits for the database, as the fleet does
    booted = time.monotonic()
    try:
        time.sleep(15)
        assert dograh.run("curl", "-sf", "http://localhost/api/v1/schema",
                          check=False).returncode != 0
        migrate = dograh.run("systemctl", "show", "-p", "ActiveState", "--value",
                             "dograh-migrate.service").stdout.strip()
        assert migrate == "activating"  # still trying, every 5 s
        time.sleep(max(0.0, 60 - (time.monotonic() - booted)))
    finally:
        dograh.run("systemctl", "enable", "--now", "redis-server", "postgresql")
    back = time.monotonic()
    dograh.sh("until curl -sf http://localhost/api/v1/schema >/dev/null; do sleep 0.5; done",
              timeout=60)
    deadline = back + 60
    while dograh.run("dograhctl", "status", check=False).returncode != 0:
        assert time.monotonic() < deadline, dograh.run("dograhctl", "status",
                                                       check=False).stdout
        time.sleep(1)
    print(f"serving again {time.monotonic() - back:.1f}s after PostgreSQL and Redis came back")


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

