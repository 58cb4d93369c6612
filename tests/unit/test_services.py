"""dograhctl services setup behind the fake host: Debian's packages, PostgreSQL's role,
database and extension (through psql's stdin), the URLs and secrets for the units."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from dograh_systemd import paths
from dograh_systemd.host.commands import Completed

from .fake_host import CONFIG, FakeHost, Killed

DOGRAH = "DOGRAH_CHECKOUT=/srv/dograh\n"


class Debian:
    """apt, dpkg and a PostgreSQL that keeps its roles and databases as sets."""

    def __init__(self, host: FakeHost, candidates: bool = True) -> None:
        self.installed: set[str] = set()
        self.candidates = candidates
        self.roles: dict[str, str] = {}   # role -> its password
        self.databases: dict[str, str] = {}  # database -> its owner
        self.extensions: set[tuple[str, str]] = set()
        self.ready_after = 0  # pg_isready calls that fail first
        self.refuse = ""      # an error psql gives for everything
        self.apt_fails = ""   # the last line apt-get fails with
        self.killed_after = ""  # the SQL that dograhctl is killed right after
        self.command_lines: list[str] = []  # every psql command line
        self.ran: list[str] = []  # every command line of these programs, and psql's stdin
        self.bounds: dict[str, float | None] = {}  # the seconds each program was last given
        host.commands.update({program: self.recorded(program, answer) for program, answer in (
            ("dpkg-query", self.dpkg_query), ("apt-cache", self.apt_cache),
            ("env", self.apt_get), ("pg_isready", self.pg_isready), ("runuser", self.psql))})
        self.host = host

    def recorded(self, program: str, answer: Callable[[list[str]], Completed]
                 ) -> Callable[[list[str]], Completed]:
        def run(args: list[str]) -> Completed:
            sql = self.host.stdin[-1]
            self.bounds[program] = self.host.timeouts[-1][1]
            self.ran.append(" ".join([program, *args]) + (f" <<< {sql}" if sql else ""))
            return answer(args)
        return run

    def dpkg_query(self, args: list[str]) -> Completed:
        package = args[-1]
        if package in self.installed:
            return Completed(0, "install ok installed", "")
        return Completed(1, "", f"dpkg-query: no packages found matching {package}\n")

    def apt_cache(self, args: list[str]) -> Completed:
        out = "".join(f"{package}:\n  Installed: (none)\n  Candidate: "
                      f"{'1.0-1' if self.candidates else '(none)'}\n  Version table:\n"
                      for package in args[1:])
        return Completed(0, out, "")

    def apt_get(self, args: list[str]) -> Completed:
        assert args[:2] == ["DEBIAN_FRONTEND=noninteractive", "apt-get"], args
        if self.apt_fails:
            return Completed(100, "", f"Reading package lists...\n{self.apt_fails}\n")
        self.installed.update(a for a in args[3:] if not a.startswith("-"))
        return Completed(0, "", "")

    def pg_isready(self, args: list[str]) -> Completed:
        self.ready_after -= 1
        return Completed(0 if self.ready_after < 0 else 2, "", "")

    def psql(self, args: list[str]) -> Completed:
        assert args[:5] == ["-u", "postgres", "--", "psql", "-X"], args
        database = args[args.index("-d") + 1]
        self.command_lines.append(" ".join(args))
        sql = self.host.stdin[-1] or ""
        if self.refuse:
            return Completed(2, "", f"ERROR:  {self.refuse}\n")
        if found := re.fullmatch(r"SELECT 1 FROM pg_roles WHERE rolname = '(\w+)';", sql):
            return Completed(0, "1\n" if found.group(1) in self.roles else "", "")
        if found := re.fullmatch(r"SELECT 1 FROM pg_database WHERE datname = '(\w+)';", sql):
            return Completed(0, "1\n" if found.group(1) in self.databases else "", "")
        if found := re.fullmatch(r"(CREATE|ALTER) ROLE (\w+) LOGIN PASSWORD '([^']+)';", sql):
            assert (found.group(1) == "ALTER") == (found.group(2) in self.roles), sql
            self.roles[found.group(2)] = found.group(3)
            if self.killed_after == "ROLE":
                self.host.dead = True
                raise Killed(sql)
            return Completed(0, "", "")
        if found := re.fullmatch(r"CREATE DATABASE (\w+) OWNER (\w+);", sql):
            self.databases[found.group(1)] = found.group(2)
            return Completed(0, "", "")
        if found := re.fullmatch(r"CREATE EXTENSION IF NOT EXISTS (\w+);", sql):
            assert database in self.databases, database
            self.extensions.add((database, found.group(1)))
            return Completed(0, "", "")
        raise AssertionError(f"unexpected SQL {sql!r}")


def setup(host: FakeHost) -> tuple[int, str, str]:
    return host.dograhctl("services", "setup")


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    host = FakeHost(tmp_path)
    host.configure(DOGRAH)
    return host


def test_setup_installs_from_debian_and_makes_the_apps_database(host: FakeHost) -> None:
    debian = Debian(host)
    debian.ready_after = 2
    code, out, err = setup(host)
    assert code == 0
    assert err == "installing postgresql-17, postgresql-17-pgvector, redis-server from Debian\n"
    assert debian.installed == {"postgresql-17", "postgresql-17-pgvector", "redis-server"}
    assert host.units["postgresql.service"].active != "inactive"
    assert host.units["redis-server.service"].active != "inactive"
    assert debian.databases == {"dograh": "dograh"}
    assert debian.extensions == {("dograh", "vector")}
    password = debian.roles["dograh"]
    assert len(password) >= 32
    # The password went to psql's stdin, never onto a command line anyone could read.
    assert debian.command_lines and all(password not in line
                                        for line in debian.command_lines)
    services = host.files.path(paths.SERVICES)
    assert services.read_text().splitlines()[-2:] == [
        f"DATABASE_URL=postgresql+asyncpg://dograh:{password}@127.0.0.1:5432/dograh",
        "REDIS_URL=redis://127.0.0.1:6379/0"]
    assert stat.S_IMODE(os.stat(services).st_mode) == 0o640
    assert "and Redis run here; DATABASE_URL and REDIS_URL are in /etc/dograh/services.env" \
        in out
    # Dograh's secrets too, made once.
    secrets = host.files.read(paths.SECRETS) or ""
    assert re.search(r"^DOGRAH_DEVOPS_SECRET=[0-9a-f]{64}$", secrets, re.M)
    assert re.search(r"^OSS_JWT_SECRET=[0-9a-f]{64}$", secrets, re.M)


def test_setup_again_changes_nothing_and_keeps_the_password(host: FakeHost) -> None:
    debian = Debian(host)
    assert setup(host)[0] == 0
    before = {path: host.files.read(path) for path in (paths.SERVICES, paths.SECRETS,
                                                       paths.SERVICES_STATE)}
    password = debian.roles["dograh"]
    debian.installed.add("postgresql-17")  # as apt left it
    assert setup(host)[0] == 0
    assert debian.roles == {"dograh": password}
    assert {path: host.files.read(path) for path in before} == before


def test_a_role_dograhctl_did_not_make_is_refused(host: FakeHost) -> None:
    debian = Debian(host)
    debian.roles["dograh"] = "theirs"
    code, _, err = setup(host)
    assert code == 1
    assert "PostgreSQL has a role dograh that dograhctl did not make" in err
    assert debian.roles == {"dograh": "theirs"} and not debian.databases
    assert not host.files.exists(paths.SERVICES)


def test_without_postgresql_17_in_debian_it_says_so_and_installs_nothing(host: FakeHost
                                                                          ) -> None:
    debian = Debian(host, candidates=False)
    code, _, err = setup(host)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("dograhctl: postgresql-17, postgresql-17-pgvector, redis-server is "
                          "not in this host's Debian"), err
    assert "set DATABASE_URL and REDIS_URL" in err
    assert not debian.installed
    assert not host.files.exists(paths.SERVICES) and not host.files.exists(paths.SECRETS)


def test_postgresql_that_never_answers_is_one_line(host: FakeHost) -> None:
    debian = Debian(host)
    debian.ready_after = 10_000
    code, _, err = setup(host)
    assert code == 1 and "PostgreSQL does not accept connections within 60s" in err
    assert not host.files.exists(paths.SERVICES)


def test_what_postgresql_refuses_is_its_own_last_line(host: FakeHost) -> None:
    debian = Debian(host)
    debian.refuse = "permission denied to create role"
    code, _, err = setup(host)
    assert code == 1
    assert err.splitlines()[-1] == "dograhctl: PostgreSQL refused it: ERROR:  permission denied to " \
        "create role"


def test_the_units_read_services_env_before_the_admins_config(host: FakeHost) -> None:
    Debian(host)
    assert setup(host)[0] == 0
    assert host.dograhctl("render")[0] == 0
    unit = host.files.read(paths.UNIT_DIR / "dograh-api@.service") or ""
    files = re.findall(r"^EnvironmentFile=(.+)$", unit, re.M)
    assert files.index(f"-{paths.SERVICES}") < files.index(str(CONFIG)), files
    assert files[-1] == f"-{paths.SECRETS}"


def test_every_command_line_setup_runs(host: FakeHost) -> None:
    """As Kamal tests its commands: each one setup runs, as a string, in order."""
    debian = Debian(host)
    debian.ready_after = 1
    assert setup(host)[0] == 0
    password = debian.roles["dograh"]
    psql = "runuser -u postgres -- psql -X -q -tA -v ON_ERROR_STOP=1 -d"
    packages = "postgresql-17 postgresql-17-pgvector redis-server"
    assert debian.ran == [
        *(f"dpkg-query -W -f=${{Status}} {package}" for package in packages.split()),
        f"apt-cache policy {packages}",
        f"env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        f"{packages}",
        "pg_isready -q -h 127.0.0.1", "pg_isready -q -h 127.0.0.1",
        f"{psql} postgres <<< SELECT 1 FROM pg_roles WHERE rolname = 'dograh';",
        f"{psql} postgres <<< SELECT 1 FROM pg_database WHERE datname = 'dograh';",
        f"{psql} postgres <<< CREATE ROLE dograh LOGIN PASSWORD '{password}';",
        f"{psql} postgres <<< CREATE DATABASE dograh OWNER dograh;",
        f"{psql} dograh <<< CREATE EXTENSION IF NOT EXISTS vector;"]
    assert len(password) == 32  # 24 random bytes
    assert host.groups[paths.SERVICES] == "dograh"
    state = host.files.path(paths.SERVICES_STATE)
    assert state.read_text() == "DOGRAH_ROLE=dograh\nDOGRAH_DATABASE=dograh\n"
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600


def test_what_setup_says_the_first_time_and_the_next(host: FakeHost) -> None:
    Debian(host)
    said = ("PostgreSQL (dograh, with pgvector) and Redis run here; DATABASE_URL and "
            "REDIS_URL are in /etc/dograh/services.env")
    first = setup(host)[1]
    assert first.startswith(said + "; made a new DOGRAH_DEVOPS_SECRET and OSS_JWT_SECRET in "
                                   "/etc/dograh/secrets.env"), first
    assert setup(host)[1] == said + "\n"


def test_a_database_dograhctl_did_not_make_is_refused(host: FakeHost) -> None:
    debian = Debian(host)
    debian.databases["dograh"] = "theirs"
    code, _, err = setup(host)
    assert code == 1
    assert err.splitlines()[-1] == ("dograhctl: PostgreSQL has a database dograh that dograhctl "
                                    "did not make: to use it, set DATABASE_URL in the config; "
                                    "or drop it first")
    assert not debian.roles and debian.databases == {"dograh": "theirs"}
    assert not host.files.exists(paths.SERVICES_STATE)  # so the purge never drops it


def test_a_setup_killed_once_it_made_the_role_is_finished_by_the_next(host: FakeHost
                                                                       ) -> None:
    debian = Debian(host)
    debian.killed_after = "ROLE"
    with pytest.raises(Killed):
        setup(host)
    assert debian.roles and not debian.databases
    host.revive()
    debian.killed_after = ""
    code, _, err = setup(host)
    assert code == 0, err
    assert debian.databases == {"dograh": "dograh"}
    assert debian.extensions == {("dograh", "vector")}


def test_postgresql_gets_its_minute_a_second_at_a_time(host: FakeHost) -> None:
    debian = Debian(host)
    debian.ready_after = 10_000
    assert setup(host)[0] == 1
    assert debian.ran.count("pg_isready -q -h 127.0.0.1") == 61  # at 0, 1, ... 60 s


def test_a_failed_install_is_apts_last_line(host: FakeHost) -> None:
    debian = Debian(host)
    debian.apt_fails = "E: Unable to fetch some archives"
    code, _, err = setup(host)
    assert code == 1
    assert err.splitlines()[-1] == ("dograhctl: apt-get install postgresql-17 "
                                    "postgresql-17-pgvector redis-server failed: E: Unable to "
                                    "fetch some archives")


def test_with_debians_packages_there_setup_asks_apt_nothing(host: FakeHost) -> None:
    debian = Debian(host)
    debian.installed.update({"postgresql-17", "postgresql-17-pgvector", "redis-server"})
    code, _, err = setup(host)
    assert code == 0 and "installing" not in err
    assert not [line for line in debian.ran if line.startswith(("apt-cache", "env "))]


def test_an_install_may_take_half_an_hour_and_no_longer(host: FakeHost) -> None:
    # A mirror that hangs holds the setup up, never forever.
    debian = Debian(host)
    assert setup(host)[0] == 0
    assert debian.bounds["env"] == 1800


def test_services_env_says_who_made_it_and_what_wins_over_it(host: FakeHost) -> None:
    debian = Debian(host)
    assert setup(host)[0] == 0
    assert host.files.read(paths.SERVICES) == (
        "# Made by dograhctl services setup: Dograh's database and Redis on this host.\n"
        "# A DATABASE_URL or REDIS_URL in dograh.env wins over these.\n"
        f"DATABASE_URL=postgresql+asyncpg://dograh:{debian.roles['dograh']}@127.0.0.1:5432/"
        "dograh\nREDIS_URL=redis://127.0.0.1:6379/0\n")


def test_what_an_operator_reads_when_debian_lacks_a_package_or_postgresql_waits(
        host: FakeHost) -> None:
    debian = Debian(host, candidates=False)
    debian.installed.update({"postgresql-17", "redis-server"})
    assert setup(host)[2] == (
        "dograhctl: postgresql-17-pgvector is not in this host's Debian (Debian 13 has "
        "PostgreSQL 17 with pgvector): run Dograh's database elsewhere and set DATABASE_URL "
        "and REDIS_URL in the config\n")
    debian.installed.add("postgresql-17-pgvector")
    debian.ready_after = 10_000
    assert setup(host)[2] == ("dograhctl: PostgreSQL does not accept connections within 60s "
                              "(see: journalctl -u postgresql)\n")
