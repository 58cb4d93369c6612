"""Install the project into a container the way the Debian package lays it out."""

from __future__ import annotations

import shutil
from pathlib import Path

from .container import Container

REPO = Path(__file__).resolve().parents[2]
DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def install_from_source(ct: Container) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "dograh_systemd", ct.path(f"{DIST_PACKAGES}/dograh_systemd"),
                    ignore=ignore, dirs_exist_ok=True)
    for folder in ("units", "nginx"):
        shutil.copytree(REPO / folder, ct.path(f"/usr/share/dograh-systemd/{folder}"),
                        ignore=ignore, dirs_exist_ok=True)
    dograhctl = ct.path("/usr/bin/dograhctl")
    dograhctl.write_text("#!/usr/bin/python3\nfrom dograh_systemd.cli import run\nrun()\n")
    dograhctl.chmod(0o755)
    shutil.copy(REPO / "debian/dograh-systemd.sysusers",
                ct.path("/usr/lib/sysusers.d/dograh-systemd.conf"))
    shutil.copy(REPO / "debian/dograh-systemd.tmpfiles",
                ct.path("/usr/lib/tmpfiles.d/dograh-systemd.conf"))
    ct.path("/etc/dograh").mkdir(exist_ok=True)
    shutil.copy(REPO / "debian/dograh.env", ct.path("/etc/dograh/dograh.env"))
    ct.sh("systemd-sysusers && systemd-tmpfiles --create dograh-systemd.conf"
          " && chown root:dograh /etc/dograh/dograh.env && chmod 0640 /etc/dograh/dograh.env")
