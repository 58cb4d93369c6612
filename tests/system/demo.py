"""The main job on the embedded default, in a throwaway Debian container.

Boots Debian 12 with real systemd, installs dograh-systemd, runs
``dograhctl scale 6``, shows ``systemctl status 'dograh-api@*'`` and requests
through nginx, then throws the container away. Run: make demo
"""

from __future__ import annotations

import os
import shlex
import sys

from .container import Container
from .install import install_from_source


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
    print("Booting a Debian 12 container with systemd (the first run builds its root "
          "filesystem with debootstrap, about a minute)...", flush=True)
    ct = Container(name="dograh-demo")
    try:
        ct.boot()
        install_from_source(ct)
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
