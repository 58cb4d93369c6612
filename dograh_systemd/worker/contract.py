"""What dograhctl, the unit templates and the worker runtime agree on, in one place.

Standard library only: the worker runtime imports it from the app's own venv.
dograhctl renders the timeouts into the units and reads the Status line back
with ``parse_status``; the runtime writes it with ``format_status``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# systemd's TimeoutStartSec= for a worker: import, startup and READY=1 within it.
START_TIMEOUT = 90
# dograhctl waits this much longer for READY, so systemd's verdict comes first.
READY_WAIT = START_TIMEOUT + 10
# systemd's TimeoutStopSec=; uvicorn's own graceful shutdown ends before it.
STOP_TIMEOUT = 30
GRACEFUL_SHUTDOWN = STOP_TIMEOUT - 5
# systemd's WatchdogSec=: the event loop must ping more often than this.
WATCHDOG_TIMEOUT = 15
# systemd's TimeoutAbortSec=: after the watchdog's SIGABRT, SIGKILL this much later.
ABORT_TIMEOUT = 10
# A loop stalled for this part of WatchdogSec gets its stack written to the
# journal, well before the watchdog fires (and never sooner than a second).
STALL_REPORT_FRACTION = 1 / 3

# systemd's LimitNOFILE= for a worker: every call is an open socket (systemd
# clamps it to the hard limit the host allows); the worker keeps a few for itself.
WORKER_OPEN_FILES = 65536
WORKER_FILES_KEPT = 64

# nginx closes idle upstream connections after this; the worker must wait
# longer, or nginx reuses a connection the worker is closing and answers 502.
UPSTREAM_KEEPALIVE = 60
WORKER_KEEPALIVE = UPSTREAM_KEEPALIVE + 15

# The worker asks the app for its own count of live calls (its call registry)
# this often, and gives up on an answer after APP_CALLS_TIMEOUT.
APP_CALLS_INTERVAL = 1.0
APP_CALLS_TIMEOUT = 2.0
# The header the app's registry endpoint wants carries this variable of the
# app's environment (Dograh: X-Dograh-Devops-Secret).
APP_CALLS_SECRET = "DOGRAH_DEVOPS_SECRET"

# A changed count reaches the Status line within this many seconds; at most
# one notification per interval goes to PID 1.
STATUS_INTERVAL = 0.25
# Counters that change with every request (served, loop lag) alone refresh
# the Status line only this often.
SLOW_STATUS_INTERVAL = 5.0


@dataclass(frozen=True)
class Load:
    """What one worker holds, as its Status line says."""

    websockets: int
    requests: int
    served: int = 0
    lag_p95_ms: int = 0
    # The app's own count of live calls (its call registry), when it has one.
    app_calls: int | None = None
    # Why the app's count could not be read, when it could not.
    app_error: str | None = None

    @property
    def idle(self) -> bool:
        """Nothing left to lose: no app call, no socket, no request, and the app's
        count was read (a failed read never counts as zero)."""
        return (self.app_error is None and not self.app_calls and not self.websockets
                and not self.requests)

    @property
    def calls(self) -> int:
        """Live calls: the app's count when it has one, else its WebSockets."""
        return self.app_calls if self.app_calls is not None else self.websockets


def format_status(load: Load, registry: bool) -> str:
    """The worker's STATUS= line; ``parse_status`` reads it back."""
    parts = []
    if registry:
        parts.append(f"app calls unknown ({load.app_error})" if load.app_error
                     else f"{load.app_calls} calls (app)")
    parts += [f"{load.websockets} websockets", f"{load.requests} requests in flight",
              f"{load.served} served", f"loop lag p95 {load.lag_p95_ms} ms"]
    return ", ".join(parts)


_STATUS = re.compile(
    r"^(?:stopping: )?"
    r"(?:(?P<app_calls>\d+) calls \(app\), |app calls unknown \((?P<app_error>[^)]*)\), )?"
    r"(?P<websockets>\d+) websockets, (?P<requests>\d+) requests in flight, "
    r"(?P<served>\d+) served, loop lag p95 (?P<lag>\d+) ms$")


# Workers of release 0.1.0 wrote "N calls, M requests in flight, K served"; an
# upgrade drains them by that line.
_STATUS_0_1 = re.compile(r"^(?:stopping: )?(\d+) calls, (\d+) requests in flight")


def parse_status(text: str) -> Load | None:
    """A worker's load from its Status line; None while it has not published one."""
    match = _STATUS.match(text)
    if not match:
        old = _STATUS_0_1.match(text)
        return Load(websockets=int(old.group(1)), requests=int(old.group(2))) if old else None
    app_calls = match.group("app_calls")
    return Load(websockets=int(match.group("websockets")),
                requests=int(match.group("requests")),
                served=int(match.group("served")),
                lag_p95_ms=int(match.group("lag")),
                app_calls=int(app_calls) if app_calls is not None else None,
                app_error=match.group("app_error"))
