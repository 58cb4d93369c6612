"""Several hosts: containers on a private bridge, each with an address of its own and sshd.

The bridge has no address on the machine: all traffic stays between the
containers' namespaces. Before a host first boots, its overlay gets a
hostname, /etc/hosts naming every host, a machine-id of its own and a unit
that gives its link its address at every boot (so a host powered off and on
keeps it). The edge gets the cluster's root-only SSH key, the worker hosts
authorize it, and the edge pins their host keys once sshd has made them.
"""

from __future__ import annotations

import hashlib
import subprocess
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


def trust(edge: Container, workers: dict[str, tuple[Container, str]]) -> None:
    """The edge's key opens the workers as root; the edge knows their host keys."""
    edge.run("install", "-d", "-m", "0755", "/etc/dograh")
    edge.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dograh-cluster",
             "-f", "/etc/dograh/cluster_key")
    public = edge.path("/etc/dograh/cluster_key.pub").read_text()
    known = []
    for worker, address in workers.values():
        worker.run("install", "-d", "-m", "0700", "/root/.ssh")
        keys = worker.path("/root/.ssh/authorized_keys")
        keys.write_text(public)
        keys.chmod(0o600)
        host_key = worker.path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
        known.append(f"{address} {' '.join(host_key)}\n")
    edge.path("/etc/dograh/cluster_known_hosts").write_text("".join(known))


def install(hosts: dict[str, Container], deb: Path, edge: str, workers: dict[str, str],
            worker_env: str, edge_env: str, edge_tools: tuple[str, ...] = ()) -> None:
    """The package everywhere, configured first as an admin would: each worker host
    names the edge and listens on its own address; the edge names its hosts."""
    for name, address in workers.items():
        worker = hosts[name]
        worker.path("/etc/dograh").mkdir()
        worker.path("/etc/dograh/dograh.env").write_text(
            f"DOGRAH_EDGE={edge}\nUVICORN_HOST={address}\n{worker_env}")
        worker.run("apt-get", "install", "-y", "openssh-server", "nftables", timeout=300)
        worker.install_deb(deb, "-o", "Dpkg::Options::=--force-confold")
    front = hosts["edge"]
    front.run("apt-get", "install", "-y", "openssh-client", *edge_tools, timeout=300)
    trust(front, {name: (hosts[name], address) for name, address in workers.items()})
    front.path("/etc/dograh/dograh.env").write_text(
        'DOGRAH_HOSTS="' + " ".join(f"{n}={a}" for n, a in workers.items()) + '"\n' + edge_env)
    front.install_deb(deb, "-o", "Dpkg::Options::=--force-confold")


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
