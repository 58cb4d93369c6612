"""The main job on the embedded default, in a throwaway Debian container.

Builds the .deb, boots Debian 12 with real systemd, installs it with apt, runs
``dograhctl scale 6``, shows ``systemctl status 'dograh-api@*'`` and requests
through nginx, then throws the container away. Run: make demo
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from bench.testbed.container import Container

REPO = Path(__file__).resolve().parents[2]


def step(ct: Container, command: str) -> None:
    print(f"\n$ {command}", flush=True)
    result = ct.run(*shlex.split(command), check=False, timeout=300)
    sys.stdout.write(result.stdout)
    sys.stdout.write(result.stderr)
    sys.stdout.flush()
    if result.returncode not in (0, 3):  # systemctl status exits 3 for inactive units
        raise SystemExit(f"demo: '{command}' failed with exit code {result.returncode}")


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("demo: run as root (it boots a systemd-nspawn container)")
    print("Building the .deb...", flush=True)
    built = subprocess.run(["bash", str(REPO / ".ci/build-deb")], check=True,
                           capture_output=True, text=True)
    deb = Path(built.stdout.strip().splitlines()[-1])
    print(f"Built {deb}", flush=True)
    print("Booting a Debian 12 container with systemd (the first run builds its root "
          "filesystem with debootstrap, about a minute)...", flush=True)
    ct = Container(name="dograh-demo")
    try:
        ct.boot()
        print(f"\n$ apt-get install ./{deb.name}", flush=True)
        print(ct.install_deb(deb).stdout.strip().splitlines()[-1], flush=True)
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
