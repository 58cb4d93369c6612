"""A throwaway Debian machine with real systemd as PID 1, for system tests.

The root filesystem is built once with debootstrap and cached; each boot runs
on an overlay of it, so tests never change the cache. The container boots with
``systemd-nspawn --boot`` on a private network (loopback only) and commands run
inside it through ``nsenter`` into its systemd's namespaces.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CACHE_DIR = Path(os.environ.get("DOGRAH_TEST_CACHE", "/var/cache/dograh-systemd-test"))

# A bare Debian with systemd, plus the tools the tests drive it with (curl,
# ss, ps, a WebSocket client library). The product's own dependencies are not
# installed: apt resolves them from Debian when the tests install the .deb.
PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "python3", "python3-websockets",
    "curl", "procps", "iproute2", "autopkgtest",
]
MIRROR = "http://deb.debian.org/debian"
RECIPE = "4"  # bump when rootfs() changes what it writes, to rebuild the cache
CONTROL = Path(__file__).resolve().parents[2] / "debian/control"
# Cached too, installed only where needed: by the benchmarks (a venv for the
# peers, wrk), the Dograh-layout tests (a venv for the app, PostgreSQL, Redis),
# the TLS tests (certbot, and pebble as the ACME server), the multi-host tests
# (nftables, etcd, keepalived) and the metrics test (Debian's Prometheus and
# node-exporter); on Debian 13, what the real Dograh runs on (pgvector, ffmpeg).
EXTRA_PACKAGES = ["python3-venv", "wrk", "postgresql", "redis-server", "certbot", "pebble",
                  "openssl", "nftables", "etcd-server", "etcd-client", "keepalived",
                  "prometheus", "prometheus-node-exporter", "git"]
SUITE_PACKAGES = {"bookworm": [], "trixie": ["postgresql-17-pgvector", "ffmpeg"]}


def package_relations() -> list[str]:
    """Depends and Recommends of the binary package, as plain package names."""
    fields = re.findall(r"^(?:Depends|Recommends):((?:.*\n(?: .*\n)*))",
                        CONTROL.read_text().split("\nPackage:", 1)[1], re.M)
    names = []
    for relation in ",".join(fields).split(","):
        name = relation.split("|")[0].split("(")[0].strip()
        if name and not name.startswith("$"):
            names.append(name)
    return names
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rootfs(suite: str = "bookworm") -> Path:
    """Return the cached root filesystem for ``suite``, building it if needed."""
    relations = package_relations() + EXTRA_PACKAGES + SUITE_PACKAGES[suite]
    key = hashlib.sha256(" ".join([RECIPE, suite, MIRROR, *PACKAGES, *relations])
                         .encode()).hexdigest()[:12]
    target = CACHE_DIR / f"{suite}-{key}"
    if (target / ".complete").exists():
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for stale in CACHE_DIR.glob(f"{suite}-*"):
        # Earlier recipes, or a build that was interrupted (debootstrap leaves its
        # /proc mounted when it is killed).
        subprocess.run(["sh", "-c", 'findmnt -rn -o TARGET | grep "^$1/" | sort -r | '
                        "xargs -r umount -l", "-", str(stale)], check=True)
        shutil.rmtree(stale)
    for attempt in (1, 2):  # the mirror may drop a connection once
        partial = Path(tempfile.mkdtemp(prefix=f"{suite}-", dir=CACHE_DIR))
        partial.chmod(0o755)
        built = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             suite, str(partial), MIRROR], stdout=subprocess.DEVNULL)
        if built.returncode == 0:
            break
        shutil.rmtree(partial)
        if attempt == 2:
            built.check_returncode()
    # What the installer of a real machine writes. Debian's default nginx site
    # stays enabled: the product must coexist with it. A fixed machine-id keeps
    # the journal in one place across boots.
    (partial / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (partial / "etc/hostname").write_text("dograh-test\n")
    (partial / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 dograh-test\n"
                                      "::1 localhost ip6-localhost ip6-loopback\n")
    # The containers have no network: keep Debian's package lists and the
    # .debs of the package's relations and the extra packages, so apt can
    # resolve and install them offline. Timers that would reach for the network are masked.
    (partial / "etc/apt/sources.list").write_text(f"deb {MIRROR} {suite} main\n")
    subprocess.run(["chroot", str(partial), "apt-get", "update", "-qq"], check=True,
                   env={"PATH": CLEAN_PATH})
    subprocess.run(["chroot", str(partial), "apt-get", "install", "--download-only", "-y",
                    "-qq", *relations], check=True, env={"PATH": CLEAN_PATH},
                   stdout=subprocess.DEVNULL)
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        (partial / "etc/systemd/system" / timer).symlink_to("/dev/null")
    (partial / ".complete").touch()
    partial.rename(target)
    return target


class Container:
    """One booted container over an overlay of the cached root filesystem.

    On its own, it has a private network (loopback only). On a ``bridge`` it is
    one host of several: it gets the bridge's link and a cgroup of its own (else
    every container on the machine shares one cgroup tree, and the same unit on
    two hosts gets in the other's way).
    """

    def __init__(self, suite: str = "bookworm", name: str = "dograh-test",
                 bridge: str | None = None) -> None:
        self.name = name
        self.suite = suite
        self.bridge = bridge
        self.cgroups: list[Path] = []
        self.lower = rootfs(suite)
        self.workdir = Path(tempfile.mkdtemp(prefix="dograh-ct-"))
        self.root = self.workdir / "merged"
        for sub in ("upper", "work", "merged"):
            (self.workdir / sub).mkdir()
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={self.lower},upperdir={self.workdir / 'upper'},workdir={self.workdir / 'work'}",
             str(self.root)],
            check=True,
        )
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.pid = 0

    # -- life cycle ---------------------------------------------------------

    def boot(self, timeout: float = 60, settled: bool = True) -> None:
        """Boot, and with ``settled`` wait until systemd has started everything."""
        network = f"--network-bridge={self.bridge}" if self.bridge else "--private-network"
        env = {"PATH": CLEAN_PATH}
        if self.bridge:
            self.cgroups = [root / self.workdir.name for root in _cgroup_roots()]
            for cgroup in self.cgroups:
                cgroup.mkdir(exist_ok=True)
            env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"

        def own_cgroup() -> None:  # in the child, before it runs nspawn
            for cgroup in self.cgroups:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))

        with open(self.workdir / "console.log", "ab") as log:
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", network,
                 f"--machine={self.name}", "-D", str(self.root)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, preexec_fn=own_cgroup if self.cgroups else None,
            )
        self.pid = self._find_init(timeout)
        if not settled:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.3)
        raise TimeoutError(f"container did not finish booting: {state}")

    def _find_init(self, timeout: float) -> int:
        """The container's PID 1 is the systemd process below nspawn."""
        assert self.nspawn is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in _children(self.nspawn.pid):
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return child
            if self.nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited; see {self.workdir}/console.log")
            time.sleep(0.1)
        raise TimeoutError("container init did not appear")

    def poweroff(self, timeout: float = 60) -> None:
        if self.nspawn is None or self.nspawn.poll() is not None:
            return
        self.run("systemctl", "poweroff", check=False)
        try:
            self.nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            self.nspawn.send_signal(signal.SIGKILL)
            self.nspawn.wait()
        self._stopped()

    def cable(self, plugged: bool) -> None:
        """Unplug (or plug back) the host's network cable: its bridge port goes down, so
        not one packet leaves or arrives; everything inside keeps running."""
        link = self.run("cat", "/sys/class/net/host0/iflink").stdout.strip()
        port = next(entry.name for entry in Path("/sys/class/net").iterdir()
                    if (entry / "ifindex").read_text().strip() == link)
        subprocess.run(["ip", "link", "set", port, "up" if plugged else "down"], check=True)

    def power_cut(self) -> float:
        """Pull the plug: the link goes down first, so that not one packet (no FIN,
        no RST) leaves, then the container's init is killed, and with it every
        process inside at once. When the link went down (monotonic clock)."""
        if self.nspawn is None or self.nspawn.poll() is not None:
            return time.monotonic()
        self.cable(plugged=False)
        gone = time.monotonic()
        os.kill(self.pid, signal.SIGKILL)
        self.nspawn.wait(30)
        self._stopped()
        return gone

    def _stopped(self) -> None:
        """After the container ended: forget its init, remove its cgroups, deepest first."""
        self.pid = 0
        for cgroup in self.cgroups:
            below = sorted((p for p in cgroup.rglob("*") if p.is_dir()),
                           key=lambda p: len(p.parts), reverse=True)
            for sub in [*below, cgroup]:
                with contextlib.suppress(OSError):
                    sub.rmdir()
        self.cgroups = []

    def destroy(self) -> None:
        self.poweroff()
        self._stopped()  # also when the container had ended by itself
        subprocess.run(["umount", str(self.root)], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- running things inside ---------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 120,
            input: str | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container as root, with a clean environment (plus ``env``)."""
        extra = [f"{key}={value}" for key, value in (env or {}).items()]
        result = subprocess.run(self._enter((*extra, *argv)), capture_output=True, text=True,
                                timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, argv, result.stdout, result.stderr)
        return result

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        """Start ``argv`` inside the container with pipes to its stdin, stdout and stderr."""
        return subprocess.Popen(self._enter(argv), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sh(self, script: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, check=check, timeout=timeout)

    def install_deb(self, deb: Path, *apt_options: str) -> subprocess.CompletedProcess[str]:
        """``apt-get install ./dograh-systemd_*.deb`` as an admin would; offline, from the cache."""
        shutil.copy(deb, self.path(f"/root/{deb.name}"))
        return self.run("apt-get", "install", "-y", *apt_options, f"/root/{deb.name}",
                        timeout=300)

    def _enter(self, argv: tuple[str, ...]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-a", "env", "-i", f"PATH={CLEAN_PATH}",
                "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=",
                "DEBIAN_FRONTEND=noninteractive", *argv]

    def path(self, inside: str) -> Path:
        """Host path of a file inside the container's root filesystem."""
        return self.root / inside.lstrip("/")


class CommandFailed(subprocess.CalledProcessError):
    """A command in the container failed; the message carries what it printed."""

    def __str__(self) -> str:
        return (f"{' '.join(self.cmd)} exited {self.returncode}\n"
                f"stdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}")


def _mounted(path: str) -> str | None:
    """The file system type mounted at ``path`` (the last mount there wins)."""
    kinds = [fields[2] for fields in map(str.split, Path("/proc/self/mounts").read_text()
                                         .splitlines()) if fields[1] == path]
    return kinds[-1] if kinds else None


def _cgroup_roots() -> list[Path]:
    """The hierarchies systemd-nspawn uses here: cgroup v2, and v1's name=systemd."""
    roots = [Path("/sys/fs/cgroup/systemd")] if _mounted("/sys/fs/cgroup/systemd") == "cgroup" \
        else []
    for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if _mounted(path) == "cgroup2":
            return [*roots, Path(path)]
    return roots


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]
