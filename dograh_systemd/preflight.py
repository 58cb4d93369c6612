"""Checks that must pass before a change starts anything: memory and free ports."""

from __future__ import annotations

from collections.abc import Iterable

from .config import Settings
from .errors import DograhError
from .host.machine import Machine

MIB = 1024 * 1024


def check_memory(machine: Machine, new_workers: int, per_worker: int, force: bool) -> str | None:
    """Refuse (or, forced, warn) when the new workers would not fit in available memory."""
    if new_workers <= 0:
        return None
    needed = new_workers * per_worker
    available = machine.mem_available()
    if needed <= available:
        return None
    message = (f"{new_workers} more API workers need about {needed // MIB} MiB "
               f"({per_worker // MIB} MiB each) but only {available // MIB} MiB is available")
    if not force:
        raise DograhError(f"{message}; use fewer workers, or --force")
    return f"warning: {message}; continuing because of --force"


def check_ports_free(machine: Machine, address: str, ports: Iterable[int]) -> None:
    """Every port a new worker will bind must be free now."""
    busy = [port for port in sorted(ports) if machine.port_in_use(address, port)]
    if busy:
        listing = ", ".join(map(str, busy))
        raise DograhError(f"port {listing} on {address} is already in use by another process "
                          f"(see: ss -ltnp 'sport = :{busy[0]}')")


def ephemeral_ports_warning(machine: Machine, settings: Settings) -> str | None:
    """Worker ports inside the kernel's ephemeral range can be taken by any outgoing
    connection (nginx's own, to the workers) just before a worker binds them."""
    ephemeral = machine.ephemeral_ports()
    if ephemeral is None:
        return None
    low, high = ephemeral
    first, last = settings.band_ports(0)[0], settings.band_ports(1)[-1]
    if first <= high and last >= low:
        return (f"warning: API worker ports {first}-{last} overlap the kernel's ephemeral "
                f"ports {low}-{high}: an outgoing connection may hold one when a worker "
                f"starts; pick a UVICORN_BASE_PORT below {low - (last - first + 1)}")
    return None
