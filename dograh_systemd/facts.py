"""What this host runs, as far as the generated files care: systemd's and nginx's
versions, and how many files nginx's processes may open.

Gathered once per command and handed to the templates, which stay pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .host import Host


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


def gather(host: Host) -> Facts:
    versions = ASSUMED
    found = re.match(r"systemd (\d+)", host.run(["systemctl", "--version"]).stdout)
    nginx = re.search(r"nginx/(\d+(?:\.\d+)*)", host.run(["nginx", "-v"]).stderr)
    master = host.machine.nginx_master()
    limits = host.machine.open_file_limits(master) if master else None
    return Facts(systemd=int(found.group(1)) if found else versions.systemd,
                 nginx=tuple(map(int, nginx.group(1).split("."))) if nginx else versions.nginx,
                 nginx_open_files=limits[1] if limits else None)
