"""What the release tests share: an app in a git repository with a submodule, and a
wheel of its own on a local index, all inside a container (no network there)."""

from __future__ import annotations

import subprocess

from bench.testbed.container import Container
from bench.testbed.wheels import wheel

SOURCE = "/srv/app"
WHEELS = "/srv/wheels"
# The embedded example app (health, which worker answered, calls), plus what this
# release is and a word from its own dependency.
APP = '''import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "lib"))
import greeting  # noqa: E402 (from the submodule)
import release_word  # noqa: E402 (from the wheel)
from dograh_systemd.example.app import WORKER_PORT, app  # noqa: E402


@app.get("/api/v1/release")
async def release() -> dict:
    return {{"release": "{name}", "port": WORKER_PORT, "greeting": greeting.WORD,
            "word": release_word.WORD}}
'''


def git(ct: Container, repo: str, *args: str) -> str:
    return ct.run("git", "-C", repo, "-c", "user.name=test", "-c", "user.email=test@test",
                  "-c", "protocol.file.allow=always", *args).stdout.strip()


def make_source(ct: Container) -> None:
    """/srv/app: the app (release A) with /srv/greeting as its submodule at lib/, a
    migrations directory, and a requirement served by /srv/wheels (pip.conf)."""
    ct.run("rm", "-rf", SOURCE, "/srv/greeting", WHEELS)
    for repo in ("/srv/greeting", SOURCE):
        ct.run("mkdir", "-p", repo)
        git(ct, repo, "init", "-q", "-b", "main")
    ct.path("/srv/greeting/greeting.py").write_text('WORD = "hello"\n')
    git(ct, "/srv/greeting", "add", ".")
    git(ct, "/srv/greeting", "commit", "-qm", "greeting")
    ct.run("mkdir", "-p", WHEELS)
    wheel(ct.path(WHEELS), "release_word", "1.0", {"release_word.py": 'WORD = "from a wheel"\n'})
    ct.run("chmod", "-R", "a+rX", WHEELS)
    ct.path("/etc/pip.conf").write_text(f"[global]\nno-index = true\nfind-links = {WHEELS}\n")
    ct.path(f"{SOURCE}/requirements.txt").write_text("release_word==1.0\n")
    ct.run("mkdir", "-p", f"{SOURCE}/migrations")
    ct.path(f"{SOURCE}/migrations/0001_calls.py").write_text("")
    git(ct, SOURCE, "submodule", "add", "-q", "/srv/greeting", "lib")
    commit(ct, "A")


def commit(ct: Container, name: str, app: str | None = None, migration: str = "") -> None:
    ct.path(f"{SOURCE}/app.py").write_text(app if app is not None else APP.format(name=name))
    if migration:
        ct.path(f"{SOURCE}/migrations/{migration}").write_text("")
    git(ct, SOURCE, "add", ".")
    git(ct, SOURCE, "commit", "-qm", name)


def copy_source(source: Container, to: Container) -> None:
    """The source exactly as ``source`` has it (the same commits) onto ``to``: what a
    git server every host fetches from gives them."""
    subprocess.run(f"tar -C {source.root} -c srv/app srv/greeting srv/wheels etc/pip.conf "
                   f"| tar -C {to.root} -x", shell=True, check=True)
