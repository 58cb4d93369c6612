"""Hostile input and hostile users: refused with one line, never a hang, never root for the app."""

from __future__ import annotations

import time

import pytest

from bench.testbed.container import Container

from .fleet import dograhctl, snapshot, units

pytestmark = pytest.mark.system

ENV = "/etc/dograh/dograh.env"


def as_user(user: str) -> list[str]:
    group = "nogroup" if user == "nobody" else user
    return ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups", "--"]


@pytest.mark.parametrize("user", ["nobody", "dograh"])
def test_other_users_cannot_hold_or_plant_the_lock(container: Container, user: str) -> None:
    dograhctl(container, "scale", "2")
    # Where the lock used to be (world-writable /run/lock), held for good.
    holder = container.popen(*as_user(user), "flock", "-x", "/run/lock/dograhctl.lock",
                             "sleep", "301")
    try:
        for attempt in ("mkdir -p /run/dograh-systemd/x", "touch /run/dograh-systemd/lock",
                        "ln -s /tmp/elsewhere /run/dograh-systemd/lock",
                        "flock -n /run/dograh-systemd/lock true"):
            result = container.run(*as_user(user), "sh", "-c", attempt, check=False)
            assert result.returncode != 0, attempt
        started = time.monotonic()
        dograhctl(container, "scale", "3")
        assert time.monotonic() - started < 60
    finally:
        holder.kill()
        container.run("pkill", "-f", "sleep 301", check=False)
    assert units(container, "dograh-api@*") == [f"dograh-api@{p}.service" for p in range(8000, 8003)]


def test_a_held_lock_fails_within_the_bound_naming_the_holder(container: Container) -> None:
    dograhctl(container, "scale", "2")
    holder = container.popen("flock", "-x", "/run/dograh-systemd/lock", "sleep", "302")
    try:
        time.sleep(0.5)
        started = time.monotonic()
        result = dograhctl(container, "--lock-wait", "2", "scale", "3", check=False)
        took = time.monotonic() - started
        assert result.returncode == 75  # EX_TEMPFAIL: try again later
        assert took < 10, took
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("dograhctl: another dograhctl (pid ")
        assert "has held /run/dograh-systemd/lock for more than 2s" in last
    finally:
        holder.kill()
        container.run("pkill", "-f", "sleep 302", check=False)


def test_a_lock_directory_others_can_write_is_refused(container: Container) -> None:
    dograhctl(container, "scale", "2")
    container.run("chmod", "0777", "/run/dograh-systemd")
    try:
        result = dograhctl(container, "scale", "3", check=False)
        assert result.returncode == 1
        assert result.stderr == ("dograhctl: /run/dograh-systemd is not a directory only root "
                                 "can use; remove it and run dograhctl again\n")
    finally:
        container.run("chmod", "0700", "/run/dograh-systemd")


@pytest.mark.parametrize("line", [
    "DOGRAH_ARI_MANAGER_COMMAND=\"/usr/bin/touch /x '\n[X-Dograh]\n'\"",
    "UVICORN_HOST=fe80::1%host0",
    "DOGRAH_NGINX_LISTEN=8_0",
    "DOGRAH_NGINX_LISTEN=+80",
    "DOGRAH_NGINX_LISTEN=\u0668\u0660",
    "DOGRAH_NGINX_LISTEN=8001",
])
def test_hostile_values_are_refused_with_one_line(container: Container, line: str) -> None:
    dograhctl(container, "scale", "2")
    env = container.path(ENV)
    original = env.read_text()
    env.write_text(original + line + "\n")
    try:
        before = snapshot(container)
        result = dograhctl(container, "scale", "3", check=False)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"dograhctl: {ENV}: {line.split('=')[0]}=")
        assert snapshot(container) == before
        assert not container.path("/x").exists()
    finally:
        env.write_text(original)


def test_a_relative_config_path_is_refused(container: Container) -> None:
    result = container.run("sh", "-c", "cd /etc/dograh && dograhctl --config dograh.env status",
                           check=False)
    assert result.returncode == 1
    assert result.stderr == ("dograhctl: dograh.env: the config file must be given as an "
                             "absolute path (unit files name it)\n")


def test_an_instance_named_by_hand_breaks_no_verb(container: Container) -> None:
    dograhctl(container, "scale", "2", "--arq", "1")
    container.run("systemctl", "start", "dograh-arq@reports.service")
    try:
        dograhctl(container, "scale", "2", "--arq", "2")
        dograhctl(container, "rebalance")
        status = dograhctl(container, "status", check=False)
        assert status.returncode == 1
        assert "dograh-arq@reports.service runs but is not part of the fleet" in status.stdout
        assert units(container, "dograh-arq@reports.service") == ["dograh-arq@reports.service"]
    finally:
        container.run("systemctl", "stop", "dograh-arq@reports.service")
    dograhctl(container, "scale", "2", "--arq", "1")


def test_a_python_under_home_runs_and_doctor_agrees(container: Container) -> None:
    container.run("python3", "-m", "venv", "--without-pip", "--system-site-packages", "/home/app/venv",
                  timeout=120)
    env = container.path(ENV)
    original = env.read_text()
    env.write_text(original + "DOGRAH_PYTHON=/home/app/venv/bin/python\n")
    try:
        dograhctl(container, "scale", "2")
        unit = container.path("/etc/systemd/system/dograh-api@.service").read_text()
        assert "ProtectHome=read-only" in unit
        assert container.run("curl", "-sf", "http://localhost/api/v1/health").returncode == 0
        doctor = dograhctl(container, "doctor", check=False)
        assert "ok   interpreter /home/app/venv/bin/python: Python 3." in doctor.stdout, \
            doctor.stdout
    finally:
        env.write_text(original)
        dograhctl(container, "scale", "2")


def test_doctor_runs_nothing_of_the_app_as_root(container: Container) -> None:
    """A .pth file in the app's venv runs code whenever its Python starts: under
    doctor that must be as the service user (in its private /tmp), never root."""
    container.run("python3", "-m", "venv", "--without-pip", "--system-site-packages", "/srv/app-venv",
                  timeout=120)
    site = container.run("/srv/app-venv/bin/python", "-c",
                         "import site; print(site.getsitepackages()[0])").stdout.strip()
    container.path(f"{site}/whoami.pth").write_text(
        "import os; open('/tmp/pth-ran-as-' + str(os.getuid()), 'w').close()\n")
    env = container.path(ENV)
    original = env.read_text()
    env.write_text(original + "DOGRAH_PYTHON=/srv/app-venv/bin/python\n")
    try:
        container.run("sh", "-c", "rm -f /tmp/pth-ran-as-*")
        doctor = dograhctl(container, "doctor", check=False)
        assert "interpreter /srv/app-venv/bin/python: Python 3." in doctor.stdout, doctor.stdout
        ran = container.run("sh", "-c", "ls /tmp/pth-ran-as-* 2>/dev/null || true").stdout
        assert "pth-ran-as-0" not in ran
    finally:
        env.write_text(original)
