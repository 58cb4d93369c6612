"""Parsers for config values: each returns the value or raises ValueError with a short reason.

Values end up in unit files and nginx config verbatim, so these refuse what
would need quoting there rather than quote it.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from pathlib import Path

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def no_control_characters(value: str) -> str:
    """A newline would start a new line, even a new section, in a unit file."""
    if _CONTROL.search(value):
        raise ValueError("it holds a control character such as a newline")
    return value


def decimal(value: str) -> int:
    """Plain ASCII digits only: int() would also take '8_0', '+80' and '٨٠'."""
    if not re.fullmatch(r"[0-9]+", value):
        raise ValueError("not a plain decimal number")
    return int(value)


def int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = decimal(value)
        if not low <= number <= high:
            raise ValueError(f"out of range {low}..{high}")
        return number
    return parse


def boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean")


def ip_address(value: str) -> str:
    if "%" in value:
        raise ValueError("IPv6 scope ids are not supported")
    return str(ipaddress.ip_address(value))


_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_APP_REF = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*")


def app_ref(value: str) -> str:
    if not _APP_REF.fullmatch(value):
        raise ValueError("")
    return value


def absolute_path(value: str) -> Path:
    if not value.startswith("/") or re.search(r"[\s\"'\\%$;]", value):
        raise ValueError("")
    return Path(value.rstrip("/") or "/")


def path_list(value: str) -> tuple[Path, ...]:
    return tuple(absolute_path(item) for item in value.split())


def command(value: str) -> tuple[str, ...]:
    words = tuple(shlex.split(value))
    if not words:
        raise ValueError("empty")
    if not (words[0].startswith("/") or words[0] in ("python", "python3")):
        raise ValueError("the program must be an absolute path, python or python3")
    return words


def optional_command(value: str) -> tuple[str, ...]:
    return command(value) if value.strip() else ()


def listen(value: str) -> tuple[str | None, int]:
    """nginx's listen: a port, or address:port ([v6]:port)."""
    address, _, port = value.rpartition(":")
    if address:
        if address.startswith("["):
            if not address.endswith("]"):
                raise ValueError("an IPv6 address goes in brackets: [::1]:80")
            address = address[1:-1]
        address = ip_address(address)
    return (address or None), int_in(1, 65535)(port)


def server_names(value: str) -> str:
    names = value.split()
    if not names or not all(re.fullmatch(r"[A-Za-z0-9_.*~^\-]+", n) for n in names):
        raise ValueError("")
    return " ".join(names)


def location_path(value: str) -> str:
    """A URL path such as /api/v1/health/active-calls."""
    if not re.fullmatch(r"(/[A-Za-z0-9_.\-]+)+/?", value):
        raise ValueError("")
    return value


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError("")
        return value
    return parse


def email(value: str) -> str | None:
    if not value:
        return None
    if not re.fullmatch(r"[^@\s]+@[A-Za-z0-9.\-]+", value):
        raise ValueError("")
    return value


def https_url(value: str) -> str:
    if not re.fullmatch(r"https://[A-Za-z0-9.\-]+(:[0-9]+)?(/[A-Za-z0-9._~/\-]*)?", value):
        raise ValueError("")
    return value


def optional_path(value: str) -> Path | None:
    return absolute_path(value) if value else None


def host_name(value: str) -> str:
    """A host's name in its cluster: a-z, 0-9 and -, as a DNS label."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
        raise ValueError(f"{value!r}: a host name is a-z, 0-9 and -")
    return value


def host_list(value: str) -> tuple[tuple[str, str], ...]:
    """Worker hosts as name=address pairs, separated by spaces."""
    hosts = []
    for item in value.split():
        name, _, address = item.partition("=")
        try:
            host_name(name)
        except ValueError:
            raise ValueError(f"{item!r}: a host is name=address, the name in a-z, 0-9 "
                             "and -") from None
        hosts.append((name, ip_address(address)))
    if len({name for name, _ in hosts}) != len(hosts):
        raise ValueError("a host name appears twice")
    return tuple(hosts)


def placements(value: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """role=host,host... pairs (the hosts that may run the singleton, the preferred
    first), separated by spaces."""
    pairs = []
    for item in value.split():
        role, _, hosts = item.partition("=")
        names = tuple(hosts.split(",")) if hosts else ()
        if not role or not names or not all(names):
            raise ValueError(f"{item!r}: a placement is role=host or role=host,host,...")
        for name in names:
            host_name(name)
        pairs.append((role, names))
    if len({role for role, _ in pairs}) != len(pairs):
        raise ValueError("a role appears twice")
    return tuple(pairs)


def ip_list(value: str) -> tuple[str, ...]:
    """IP addresses separated by spaces (none at all: empty)."""
    addresses = tuple(ip_address(item) for item in value.split())
    if len(set(addresses)) != len(addresses):
        raise ValueError("an address appears twice")
    return addresses


def floating_addresses(value: str) -> tuple[str, ...]:
    """The floating addresses with their prefix length (address/prefix), separated by
    spaces: at most one IPv4 and one IPv6, none of them loopback or link-local."""
    found = []
    for item in value.split():
        try:
            interface = ipaddress.ip_interface(item)
        except ValueError:
            raise ValueError(f"{item!r} is not address/prefix") from None
        if "/" not in item:
            raise ValueError(f"{item!r} has no /prefix")
        if interface.ip.is_loopback or interface.ip.is_link_local \
                or interface.ip.is_unspecified or interface.ip.is_multicast:
            raise ValueError(f"{item!r} is not an address hosts on a network reach")
        found.append(interface)
    if len({i.version for i in found}) != len(found):
        raise ValueError("one IPv4 and one IPv6 address at most")
    return tuple(str(i) for i in sorted(found, key=lambda i: i.version))


def interface_name(value: str) -> str:
    """A network interface's name, as the kernel allows it (or empty)."""
    if value and not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", value):
        raise ValueError(f"{value!r} is not an interface name")
    return value


_ENDPOINT = re.compile(r"(https?)://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})")


def endpoint_list(value: str) -> tuple[str, ...]:
    """etcd client URLs (scheme://host:port) separated by spaces."""
    endpoints = []
    for item in value.split():
        found = _ENDPOINT.fullmatch(item)
        if not found or not 1 <= int(found.group(3)) <= 65535:
            raise ValueError(f"{item!r}: an endpoint is https://address:port")
        endpoints.append(item)
    return tuple(endpoints)


def etcd_user(value: str) -> str:
    if value and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
        raise ValueError("a user name is a-z, 0-9 and -")
    return value


def header_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9-]+", value):
        raise ValueError("")
    return value


def directory_list(value: str) -> tuple[Path, ...]:
    """Directories for PATH, separated by colons."""
    return tuple(absolute_path(item) for item in value.split(":") if item)


def location(value: str) -> str:
    if not re.fullmatch(r"/([A-Za-z0-9_.\-]+/)*", value):
        raise ValueError("")
    return value


def relative_path(value: str) -> str:
    """A path inside a directory: relative, and never out of it."""
    if value.startswith("/") or ".." in value.split("/") or re.search(r"[\s\"'\\%$;]", value):
        raise ValueError("")
    return value.strip("/")


_GIT_URL = re.compile(r"(https?|ssh|git|file)://[A-Za-z0-9._~:/?#@!&+=%-]+"
                      r"|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~/+-]+")


def optional_source(value: str) -> str | None:
    """Where releases come from: a git URL, or an absolute path (a repository or a
    plain directory)."""
    if not value:
        return None
    if value.startswith("/"):
        return str(absolute_path(value))
    if not _GIT_URL.fullmatch(value):
        raise ValueError("neither a git URL nor an absolute path")
    return value


def git_ref(value: str) -> str:
    """A branch, tag or commit as git check-ref-format allows (and never an option)."""
    if value and (value.startswith("-") or not re.fullmatch(r"[A-Za-z0-9._/+@{}^~-]+", value)
                  or ".." in value or value.endswith((".", "/", ".lock"))):
        raise ValueError("")
    return value


def release_id(value: str) -> str:
    """A release's name: a directory name of letters, digits, '.', '_', '+' and '-'."""
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,80}", value):
        raise ValueError(f"{value!r} is not a release name")
    return value


def version_in(version: str, specifier: str) -> bool:
    """Whether ``version`` (1.2.3) fits a specifier of comparisons, e.g. >=3.13,<3.14
    (PEP 440's operators but ~=; a ``.*`` compares the parts before it)."""
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", text))

    have = parts(version)
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        found = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*([0-9][0-9.]*)(\.\*)?", clause)
        if not found:
            raise ValueError(f"{clause!r} is not a version comparison")
        operator, wanted, star = found.group(1), parts(found.group(2)), found.group(3)
        mine = have[:len(wanted)] if star else have + (0,) * (len(wanted) - len(have))
        wanted = wanted + (0,) * (len(mine) - len(wanted))
        if not {">=": mine >= wanted, "<=": mine <= wanted, ">": mine > wanted,
                "<": mine < wanted, "==": mine == wanted, "!=": mine != wanted}[operator]:
            return False
    return True
