"""Several hosts: containers on a private bridge, each with an address of its own, and
the package on them with the cluster's etcd set up by its own commands.

The bridge has no address on the machine: all traffic stays between the
containers' namespaces. Before a host first boots, its overlay gets a
hostname, /etc/hosts naming every host, a machine-id of its own and a unit
that gives its link its address at every boot (so a host powered off and on
keeps it).
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from .container import Container

ADDRESS_UNIT = """\
[Unit]
Description=The test bridge's address
DefaultDependencies=no
Before=network.target
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/ip link set host0 up
ExecStart=/usr/sbin/ip address replace {address}/24 dev host0

[Install]
WantedBy=multi-user.target
"""


class Bridge:
    """A Linux bridge on the machine, with no address of its own."""

    def __init__(self, name: str) -> None:
        self.name = name

    def create(self) -> None:
        self.delete()  # a leftover of an interrupted run
        for argv in (["ip", "link", "add", self.name, "type", "bridge"],
                     # no IPv6 link-local address either: the machine stays off it
                     ["ip", "link", "set", self.name, "addrgenmode", "none"],
                     ["ip", "link", "set", self.name, "up"]):
            subprocess.run(argv, check=True)

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.name], capture_output=True)


def provision(host: Container, name: str, address: str, everyone: dict[str, str]) -> None:
    """What a host needs before its first boot: its identity and its address."""
    host.path("/etc/hostname").write_text(f"{name}\n")
    machine_id = hashlib.md5(f"dograh-test {host.name}".encode()).hexdigest()
    host.path("/etc/machine-id").write_text(f"{machine_id}\n")
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback",
             *(f"{ip} {other}" for other, ip in everyone.items())]
    host.path("/etc/hosts").write_text("\n".join(lines) + "\n")
    units = host.path("/etc/systemd/system")
    (units / "test-address.service").write_text(ADDRESS_UNIT.format(address=address))
    (units / "multi-user.target.wants").mkdir(exist_ok=True)
    (units / "multi-user.target.wants/test-address.service").symlink_to(
        "../test-address.service")


def install(hosts: dict[str, Container], deb: Path, edges: dict[str, str],
            workers: dict[str, str], members: tuple[str, ...], worker_env: str, edge_env: str,
            tools: tuple[str, ...] = ()) -> None:
    """The package everywhere, configured first as an admin would (each worker host names
    the edges and listens on its own address; each edge names its worker hosts; every
    host names its cluster's etcd and itself), then the cluster's etcd: created on the
    first edge with ``members`` running a member, joined by every other host with the
    file create made for it."""
    everyone = {**edges, **workers}
    endpoints = " ".join(f"https://{everyone[name]}:2379" for name in members)
    common = f'DOGRAH_ETCD_ENDPOINTS="{endpoints}"\n'
    roster = " ".join(f"{name}={address}" for name, address in workers.items())

    def one(name: str) -> None:
        host = hosts[name]
        host.path("/etc/dograh").mkdir()
        own = (f'DOGRAH_HOSTS="{roster}"\n{edge_env}' if name in edges else
               f'DOGRAH_EDGE="{" ".join(edges.values())}"\nUVICORN_HOST={workers[name]}\n'
               f"{worker_env}")
        host.path("/etc/dograh/dograh.env").write_text(
            f"{common}DOGRAH_HOST_NAME={name}\n{own}")
        packages = [*(["etcd-server", "etcd-client"] if name in members else []),
                    *(["nftables"] if name in workers else []), *tools]
        if packages:
            host.run("apt-get", "install", "-y", *packages, timeout=300)
        host.install_deb(deb, "-o", "Dpkg::Options::=--force-confold")

    with ThreadPoolExecutor(len(everyone)) as pool:
        list(pool.map(one, everyone))
    first = hosts[next(iter(edges))]
    joined = [f"{name}={everyone[name]}" for name in members]
    creating = ThreadPoolExecutor(1).submit(
        first.run, "dograhctl", "etcd", "create", *(f"--member={m}" for m in joined),
        *(f"--edge={name}" for name in edges), timeout=600)
    for name in everyone:
        if name == next(iter(edges)):
            continue
        bundle = first.path(f"/etc/dograh/etcd/join/{name}.tar")
        while not (bundle.exists() and bundle.stat().st_size):
            if creating.done():
                creating.result()  # it failed: say why
            time.sleep(0.1)
        hosts[name].path(f"/root/{name}.tar").write_bytes(bundle.read_bytes())
    with ThreadPoolExecutor(len(everyone)) as pool:
        list(pool.map(lambda name: hosts[name].run("dograhctl", "etcd", "join",
                                                  f"/root/{name}.tar", timeout=300),
                      [name for name in everyone if name != next(iter(edges))]))
    creating.result()
    # Each agent has been waiting for its cluster: it starts again on the new config.
    with ThreadPoolExecutor(len(everyone)) as pool:
        list(pool.map(lambda name: hosts[name].run("systemctl", "restart",
                                                  "dograh-agent.service"), everyone))


def front_keys(name: str, edges: dict[str, str], floating: str, priority: int) -> str:
    """The keys an edge's config gets for the floating address ``floating`` (/24), with
    the other ``edges`` as its peers."""
    peers = " ".join(address for edge, address in edges.items() if edge != name)
    return (f"DOGRAH_FRONT_ADDRESS={floating}/24\nDOGRAH_FRONT_INTERFACE=host0\n"
            f"DOGRAH_FRONT_PEERS={peers}\nDOGRAH_FRONT_PRIORITY={priority}\n")


def holders(hosts: dict[str, Container], edges: dict[str, str], floating: str) -> list[str]:
    """The edges whose interface carries the floating address now."""
    return [name for name in edges if hosts[name].pid and f"{floating}/24" in
            hosts[name].run("ip", "-o", "address", "show", "dev", "host0",
                            check=False).stdout]


@contextmanager
def cluster(hosts: dict[str, tuple[str, str]], bridge: str, subnet: str
            ) -> Iterator[dict[str, Container]]:
    """``hosts``: name -> (Debian suite, last octet of its address). Boots them all."""
    network = Bridge(bridge)
    network.create()
    everyone = {name: f"{subnet}.{octet}" for name, (_, octet) in hosts.items()}
    booted = {name: Container(suite, name=f"{bridge}-{name}", bridge=bridge)
              for name, (suite, _) in hosts.items()}
    try:
        for name, host in booted.items():
            provision(host, name, everyone[name], everyone)
        with ThreadPoolExecutor(len(booted)) as pool:
            list(pool.map(Container.boot, booted.values()))
        yield booted
    finally:
        with ThreadPoolExecutor(len(booted)) as pool:
            list(pool.map(Container.destroy, booted.values()))
        network.delete()
