"""What this host runs, as far as the generated files care: systemd's and nginx's
versions, and how many files nginx's processes may open.

Gathered once per command and handed to the templates, which stay pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .systemd import Systemd


@dataclass(frozen=True)
class Facts:
    # Debian 12's versions: the oldest this package supports, and what
    # rendering assumes where it cannot ask (a staging root on another machine).
    systemd: int = 252
    nginx: tuple[int, ...] = (1, 22, 1)
    # The hard open-file limit nginx runs under (its workers may raise their own
    # soft limit up to it); None while nginx does not run.
    nginx_open_files: int | None = None

    @property
    def restart_backoff(self) -> bool:
        """RestartSteps= and RestartMaxDelaySec= exist from systemd 254."""
        return self.systemd >= 254

    @property
    def http2_directive(self) -> bool:
        """nginx 1.25.1 moved HTTP/2 from ``listen ... http2`` to ``http2 on``."""
        return self.nginx >= (1, 25, 1)


# What rendering assumes without asking the host.
ASSUMED = Facts()


def gather(systemd: Systemd) -> Facts:
    versions = ASSUMED
    found = re.match(r"systemd (\d+)", systemd.run(["systemctl", "--version"]).stdout)
    nginx = re.search(r"nginx/(\d+(?:\.\d+)*)", systemd.run(["nginx", "-v"]).stderr)
    return Facts(systemd=int(found.group(1)) if found else versions.systemd,
                 nginx=tuple(map(int, nginx.group(1).split("."))) if nginx else versions.nginx,
                 nginx_open_files=_nginx_hard_open_files())


def _nginx_hard_open_files() -> int | None:
    try:
        limits = open_file_limits(int(Path("/run/nginx.pid").read_text()))
    except (OSError, ValueError):
        return None
    return limits[1] if limits else None


def open_file_limits(pid: int) -> tuple[int, int] | None:
    """(soft, hard) "Max open files" of a process, from /proc: what systemd reports for a
    unit is what it asked for, not what the process got."""
    try:
        limits = Path(f"/proc/{pid}/limits").read_text()
    except OSError:
        return None
    found = re.search(r"^Max open files\s+(\S+)\s+(\S+)", limits, re.M)
    if not found:
        return None
    soft, hard = (1 << 20 if value == "unlimited" else int(value) for value in found.groups())
    return soft, hard
