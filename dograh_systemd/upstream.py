"""The nginx upstream's members: where nginx dials each API worker, and its weight."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    """One API worker in the nginx upstream: where nginx dials it, and its weight."""

    address: str
    port: int
    weight: int = 1

    @property
    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


def dial_address(host: str) -> str:
    """The address nginx dials for a worker bound to ``host`` (and the address it
    connects from, so the one the worker trusts for forwarded headers)."""
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return str(address)


@dataclass(frozen=True)
class Route:
    """A path the site sends to a singleton that serves HTTP (Dograh's UI)."""

    path: str
    title: str
    endpoint: str
