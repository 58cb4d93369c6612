"""A throwaway Debian machine with real systemd as PID 1, for system tests.

The root filesystem is built once with debootstrap and cached; each boot runs
on an overlay of it, so tests never change the cache. The container boots with
``systemd-nspawn --boot`` on a private network (loopback only) and commands run
inside it through ``nsenter`` into its systemd's namespaces.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CACHE_DIR = Path(os.environ.get("DOGRAH_TEST_CACHE", "/var/cache/dograh-systemd-test"))

# Everything the product needs at run time, from Debian alone, plus the tools
# the tests drive it with (curl, ss, ps, a WebSocket client library).
PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "nginx",
    "python3", "python3-fastapi", "python3-uvicorn", "python3-websockets",
    "python3-jinja2", "python3-click", "python3-dotenv", "python3-sdnotify",
    "curl", "procps", "iproute2",
]
MIRROR = "http://deb.debian.org/debian"
RECIPE = "2"  # bump when rootfs() changes what it writes, to rebuild the cache
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rootfs(suite: str = "bookworm") -> Path:
    """Return the cached root filesystem for ``suite``, building it if needed."""
    key = hashlib.sha256(" ".join([RECIPE, suite, MIRROR, *PACKAGES]).encode()).hexdigest()[:12]
    target = CACHE_DIR / f"{suite}-{key}"
    if (target / ".complete").exists():
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{suite}-", dir=CACHE_DIR))
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
         suite, str(partial), MIRROR],
        check=True, stdout=subprocess.DEVNULL,
    )
    # What the installer of a real machine writes. Debian's default nginx site
    # stays enabled: the product must coexist with it. A fixed machine-id keeps
    # the journal in one place across boots.
    (partial / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (partial / "etc/hostname").write_text("dograh-test\n")
    (partial / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 dograh-test\n"
                                      "::1 localhost ip6-localhost ip6-loopback\n")
    (partial / ".complete").touch()
    partial.rename(target)
    return target


class Container:
    """One booted container over an overlay of the cached root filesystem."""

    def __init__(self, suite: str = "bookworm", name: str = "dograh-test") -> None:
        self.name = name
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

    def boot(self, timeout: float = 60) -> None:
        with open(self.workdir / "console.log", "ab") as log:
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "--boot", "--register=no", "--keep-unit",
                 "--private-network", f"--machine={self.name}", "-D", str(self.root)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={"PATH": CLEAN_PATH},
            )
        self.pid = self._find_init(timeout)
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
        self.pid = 0

    def destroy(self) -> None:
        self.poweroff()
        subprocess.run(["umount", str(self.root)], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- running things inside ---------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container as root, with a clean environment."""
        result = subprocess.run(self._enter(argv), capture_output=True, text=True, timeout=timeout,
                                input=input)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, result.stdout,
                                                result.stderr)
        return result

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        """Start ``argv`` inside the container with pipes to its stdin and stdout."""
        return subprocess.Popen(self._enter(argv), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)

    def sh(self, script: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, check=check, timeout=timeout)

    def _enter(self, argv: tuple[str, ...]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-a", "env", "-i", f"PATH={CLEAN_PATH}",
                "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", *argv]

    def path(self, inside: str) -> Path:
        """Host path of a file inside the container's root filesystem."""
        return self.root / inside.lstrip("/")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]
