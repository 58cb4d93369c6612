"""Checks that must pass before a scale changes anything."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from pathlib import Path

from .config import Settings
from .errors import DograhError

MIB = 1024 * 1024


def mem_available() -> int:
    """MemAvailable from /proc/meminfo, in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise DograhError("cannot read MemAvailable from /proc/meminfo")


def check_memory(new_workers: int, per_worker: int, force: bool) -> str | None:
    """Refuse (or, forced, warn) when the new workers would not fit in available memory."""
    if new_workers <= 0:
        return None
    needed = new_workers * per_worker
    available = mem_available()
    if needed <= available:
        return None
    message = (f"{new_workers} more API workers need about {needed // MIB} MiB "
               f"({per_worker // MIB} MiB each) but only {available // MIB} MiB is available")
    if not force:
        raise DograhError(f"{message}; use fewer workers, or --force")
    return f"warning: {message}; continuing because of --force"


def check_ports_free(host: str, ports: Iterable[int]) -> None:
    """Every port a new worker will bind must be free now."""
    busy = [port for port in sorted(ports) if _in_use(host, port)]
    if busy:
        listing = ", ".join(map(str, busy))
        raise DograhError(f"port {listing} on {host} is already in use by another process "
                          f"(see: ss -ltnp 'sport = :{busy[0]}')")


def _in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise DograhError(f"cannot check port {port} on {host}: {exc.strerror}") from exc
    return False


def ephemeral_ports_warning(settings: Settings) -> str | None:
    """Worker ports inside the kernel's ephemeral range can be taken by any outgoing
    connection (nginx's own, to the workers) just before a worker binds them."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return None
    first, last = settings.band_ports(0)[0], settings.band_ports(1)[-1]
    if first <= high and last >= low:
        return (f"warning: API worker ports {first}-{last} overlap the kernel's ephemeral "
                f"ports {low}-{high}: an outgoing connection may hold one when a worker "
                f"starts; pick a UVICORN_BASE_PORT below {low - (last - first + 1)}")
    return None
