"""An example long-running service for the singleton and ARQ units.

It does no work: it says what it stands in for, logs a heartbeat, and exits
cleanly on SIGTERM, as Dograh's ari_manager, campaign_orchestrator and ARQ
workers do. Point DOGRAH_*_COMMAND at the real commands to replace it.
"""

from __future__ import annotations

import signal
import sys
import threading

HEARTBEAT_SECONDS = 60


def main(role: str) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"example {role} running (a stand-in that does no work; "
          "set its DOGRAH_*_COMMAND to the real service)", flush=True)
    while not stop.wait(HEARTBEAT_SECONDS):
        print(f"example {role} alive", flush=True)
    print(f"example {role} stopping", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m dograh_systemd.example.service ROLE")
    sys.exit(main(sys.argv[1]))
