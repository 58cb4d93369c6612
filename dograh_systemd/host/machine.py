"""What only the kernel knows: free ports, memory, CPUs, processes and their limits.

Read from /proc and sockets, here and nowhere else; the tests' fake host
answers with pretend figures.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DograhError

NGINX_PID_FILE = Path("/run/nginx.pid")


@dataclass(frozen=True)
class NginxWorker:
    """One worker process of the running nginx."""

    pid: int
    # False once a reload retitled it "shutting down": it accepts no new
    # connection and ends when its last one closes.
    accepting: bool
    started: float       # wall clock, seconds
    open_files: int      # its soft limit
    connections: int     # established TCP connections (a proxied call holds two)


class Machine:
    def is_root(self) -> bool:
        return os.geteuid() == 0

    def port_in_use(self, address: str, port: int) -> bool:
        """Whether something holds ``port`` on ``address`` (binding it tells)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
                raise DograhError(f"cannot check port {port} on {address}: "
                                  f"{exc.strerror}") from exc
        return False

    def mem_available(self) -> int:
        """MemAvailable from /proc/meminfo, in bytes."""
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        raise DograhError("cannot read MemAvailable from /proc/meminfo")

    def hostname(self) -> str:
        """This machine's name, without its domain, as a DNS label (a-z, 0-9, -)."""
        label = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().split(".")[0].lower())
        return label.strip("-")[:63] or "localhost"

    def cpus(self) -> int:
        return os.cpu_count() or 1

    def ephemeral_ports(self) -> tuple[int, int] | None:
        """The kernel's range of ports for outgoing connections."""
        try:
            low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
                            .split())
        except (OSError, ValueError):
            return None
        return low, high

    def rss(self, pid: int) -> int | None:
        """Resident memory of ``pid``, for hosts where cgroup memory accounting is off."""
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def cwd(self, pid: int) -> Path | None:
        """The working directory of ``pid``: where a process runs from."""
        try:
            return Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return None

    def open_file_limits(self, pid: int) -> tuple[int, int] | None:
        """(soft, hard) "Max open files" of a process: what systemd reports for a unit is
        what it asked for, not what the process got."""
        try:
            limits = Path(f"/proc/{pid}/limits").read_text()
        except OSError:
            return None
        found = re.search(r"^Max open files\s+(\S+)\s+(\S+)", limits, re.M)
        if not found:
            return None
        soft, hard = (1 << 20 if value == "unlimited" else int(value)
                      for value in found.groups())
        return soft, hard

    def nginx_master(self) -> int | None:
        try:
            return int(NGINX_PID_FILE.read_text())
        except (OSError, ValueError):
            return None

    def nginx_workers(self) -> list[NginxWorker]:
        """The worker processes of the running nginx; none when it does not run."""
        master = self.nginx_master()
        if master is None:
            return []
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except OSError:
            return []
        workers = []
        for pid in map(int, children):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"worker process" not in title:
                continue  # the cache manager and loader
            limits = self.open_file_limits(pid)
            workers.append(NginxWorker(pid, b"shutting down" not in title, _started(pid),
                                       limits[0] if limits else 1024, _sockets(pid)))
        return workers

    def reachable(self, address: str, port: int, timeout: float = 3) -> str | None:
        """None when something accepts on ``address:port``, else why not."""
        try:
            socket.create_connection((address, port), timeout=timeout).close()
        except OSError as exc:
            return str(exc.strerror or exc)
        return None

    def http_get(self, url: str, headers: dict[str, str], timeout: float = 5
                 ) -> tuple[int, bytes]:
        """(status, body) of a GET; OSError when nothing answers."""
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""


def _started(pid: int) -> float:
    """When ``pid`` started, wall clock: its start in clock ticks after boot, plus boot."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text()
                    .splitlines() if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _sockets(pid: int) -> int:
    """Established TCP connections ``pid`` holds (its listeners and the sockets between
    nginx's own processes do not count)."""
    inodes = set()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0
    for descriptor in descriptors:
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    established = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "01":  # ESTABLISHED
                established.add(fields[9])
    return len(inodes & established)
