"""Ask a URL every 50 ms (each a new connection, 200 ms to answer) for --seconds, and
print one JSON line per request: when it started and ended (this machine's monotonic
clock, which every container on it shares) and whether it was answered.

    failover.py http://10.250.8.100/api/v1/health --within 10.250.8.0/24 --seconds 20

Stdlib only: it runs on a test's client host, against a floating address of the
test's own network (nothing outside it).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
import urllib.request
from urllib.parse import urlsplit

EVERY = 0.05
TIMEOUT = 0.2


def ask(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return 200 <= response.status < 500
    except OSError:
        return False


def failover_seconds(polls: list[dict[str, float]], cut: float) -> float | None:
    """From ``cut`` (the holder gone) to the end of the first request started after it
    that was answered: only another edge can have answered it."""
    for poll in polls:
        if poll["start"] > cut and poll["ok"]:
            return poll["end"] - cut
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--within", type=ipaddress.ip_network, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    host = ipaddress.ip_address(urlsplit(args.url).hostname or "")
    if not (args.within.is_private and host in args.within):
        sys.exit("failover: only an address of the test's own private network")
    until = time.monotonic() + args.seconds
    while (started := time.monotonic()) < until:
        answered = ask(args.url)
        print(json.dumps({"start": started, "end": time.monotonic(), "ok": answered}),
              flush=True)
        time.sleep(max(0.0, started + EVERY - time.monotonic()))


if __name__ == "__main__":
    main()
