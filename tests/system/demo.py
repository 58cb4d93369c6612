"""The main job on the embedded default, in a throwaway Debian container.

Builds the .deb, boots Debian 12 with real systemd, installs it with apt, runs
``dograhctl scale 6``, shows ``systemctl status 'dograh-api@*'`` and requests
through nginx, then throws the container away. Run: make demo

With ``--dograh`` (make demo-dograh): the real Dograh from ../shared/dograh's bundles on
Debian 13, offline: services setup, release make, deploy, a real call through nginx.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from bench.testbed import dograh as real
from bench.testbed.container import Container

from .test_real_dograh import DOGRAH_KEYS

REPO = Path(__file__).resolve().parents[2]


def step(ct: Container, command: str) -> None:
    print(f"\n$ {command}", flush=True)
    result = ct.run(*shlex.split(command), check=False, timeout=1800)
    sys.stdout.write(result.stdout)
    sys.stdout.write(result.stderr)
    sys.stdout.flush()
    if result.returncode not in (0, 3):  # systemctl status exits 3 for inactive units
        raise SystemExit(f"demo: '{command}' failed with exit code {result.returncode}")


def real_dograh(ct: Container) -> None:
    source = real.bundles()
    if source is None:
        raise SystemExit("demo: the real Dograh's bundles are not here (set DOGRAH_BUNDLES)")
    wheels = real.wheelhouse(source)
    step(ct, "dograhctl services setup")
    ct.run("apt-get", "install", "-y", "ffmpeg", timeout=600)
    real.prepare(ct, source, wheels)
    env = ct.path("/etc/dograh/dograh.env")
    env.write_text(env.read_text() + DOGRAH_KEYS)
    step(ct, "dograhctl release make")
    step(ct, "dograhctl deploy")
    step(ct, "systemctl status --no-pager --lines=0 dograh-api@*")
    step(ct, "dograhctl releases")
    step(ct, "curl -s -w '\\n' http://localhost/api/v1/health")
    step(ct, "python3 /opt/dograh-stub/calls.py http://127.0.0.1 5 --calls 2")


def main() -> None:
    dograh = sys.argv[1:] == ["--dograh"]
    if os.geteuid() != 0:
        raise SystemExit("demo: run as root (it boots a systemd-nspawn container)")
    print("Building the .deb...", flush=True)
    built = subprocess.run(["bash", str(REPO / ".ci/build-deb")], check=True,
                           capture_output=True, text=True)
    deb = Path(built.stdout.strip().splitlines()[-1])
    print(f"Built {deb}", flush=True)
    release = "13" if dograh else "12"
    print(f"Booting a Debian {release} container with systemd (the first run builds its "
          "root filesystem with debootstrap, a few minutes)...", flush=True)
    ct = Container("trixie" if dograh else "bookworm", name="dograh-demo")
    try:
        ct.boot()
        print(f"\n$ apt-get install ./{deb.name}", flush=True)
        print(ct.install_deb(deb).stdout.strip().splitlines()[-1], flush=True)
        if dograh:
            real_dograh(ct)
            return
        step(ct, "dograhctl scale 6")
        step(ct, "systemctl status --no-pager --lines=0 dograh-api@*")
        step(ct, "dograhctl status")
        for _ in range(3):
            step(ct, "curl -s -w '\\n' http://localhost/api/v1/worker")
        step(ct, "curl -s -w '\\n' http://localhost/api/v1/health")
    finally:
        ct.destroy()


if __name__ == "__main__":
    main()
