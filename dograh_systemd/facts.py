"""What this host runs, as far as the generated files care: systemd's and nginx's versions.

Gathered once per command through the systemd seam and handed to the
templates, which stay pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .systemd import Systemd


@dataclass(frozen=True)
class Facts:
    # Debian 12's versions: the oldest this package supports, and what
    # rendering assumes where it cannot ask (a staging root on another machine).
    systemd: int = 252
    nginx: tuple[int, ...] = (1, 22, 1)

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
                 nginx=tuple(map(int, nginx.group(1).split("."))) if nginx else versions.nginx)
