"""Change nginx's configuration as one transaction: all of it, or none of it.

Render, compare, rename into place, ``nginx -t``, reload. When the test or the
reload fails, every file is put back as it was, so a config that fails
``nginx -t`` is never left behind and the running nginx keeps its old one.
Also the limits nginx needs to carry thousands of calls, and the one line of
the admin's nginx.conf they take.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from . import files, paths
from .errors import DograhError
from .systemd import Systemd

SERVICE = "nginx.service"

# nginx sets up its connection table whole when a worker starts: no more than
# this many connections per worker (about 30 MB of it).
MAX_CONNECTIONS = 65536
# Files an nginx worker keeps for itself: logs, listeners, cached upstream connections.
RESERVE = 1024
_CONNECTIONS = re.compile(r"^(\s*worker_connections\s+)(\d+)(\s*;)", re.M)


def limits(hard: int) -> tuple[int, int]:
    """(worker_rlimit_nofile, worker_connections) for nginx under a hard limit of ``hard``."""
    open_files = min(hard, MAX_CONNECTIONS + RESERVE)
    return open_files, max(open_files - RESERVE, 512)


def worker_connections(conf: str) -> int | None:
    found = _CONNECTIONS.search(conf)
    return int(found.group(2)) if found else None


def raised(conf: str, connections: int) -> str | None:
    """nginx.conf with worker_connections raised to ``connections``; None when it has no
    such line, or a higher one (the admin's own choice stays)."""
    current = worker_connections(conf)
    if current is None or current >= connections:
        return None
    return _CONNECTIONS.sub(rf"\g<1>{connections}\g<3>", conf, count=1)


def restore_connections() -> None:
    """Put back nginx.conf's own worker_connections, if the value there is still ours."""
    record = files.read(paths.NGINX_CONNECTIONS_RAISED)
    if record is None:
        return
    original, ours = record.split()
    conf = files.read(paths.NGINX_CONF) or ""
    if worker_connections(conf) == int(ours):
        files.write_atomic(paths.NGINX_CONF, _CONNECTIONS.sub(rf"\g<1>{original}\g<3>", conf,
                                                               count=1))
    paths.NGINX_CONNECTIONS_RAISED.unlink()


class Nginx:
    def __init__(self, systemd: Systemd) -> None:
        self.systemd = systemd

    def test(self) -> None:
        """``nginx -t`` on what is on disk now; the error names nginx's first complaint."""
        result = self.systemd.run(["nginx", "-t", "-q"])
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if "[emerg]" in line]
            detail = (lines or result.stderr.strip().splitlines() or ["no output"])[0]
            raise DograhError(f"nginx -t failed: {detail.strip()}")

    def apply(self, rendered: dict[Path, str], reload: bool = False,
              remove: tuple[Path, ...] = (), edits: dict[Path, str] | None = None) -> bool:
        """Bring nginx to ``rendered`` plus the enabled-site link, without the links of
        ``remove``, with the admin's files of ``edits`` changed; True if anything changed.

        ``reload`` reloads even when the files are already in place (a command
        interrupted before its reload left them so).
        """
        edits = files.changed(edits or {})
        changes = files.changed(rendered)
        add_link = not paths.NGINX_SITE_LINK.is_symlink()
        removed = {link: link.readlink() for link in remove if link.is_symlink()}
        if not changes and not edits and not add_link and not removed and not reload:
            return False
        previous = {path: files.read(path) for path in {**changes, **edits}}
        try:
            for path, text in changes.items():
                files.write_generated(path, text)
            for path, text in edits.items():
                files.write_atomic(path, text)
            if add_link:
                paths.NGINX_SITE_LINK.parent.mkdir(parents=True, exist_ok=True)
                paths.NGINX_SITE_LINK.symlink_to(paths.NGINX_SITE)
            for link in removed:
                link.unlink()
            self.test()
            self.reload()
        except BaseException:
            _restore(previous, add_link, removed)
            raise
        return bool(changes or edits or add_link or removed)

    def reload(self, timeout: float = 10) -> None:
        """Reload a running nginx and wait until only new workers accept.

        A stopped nginx stays stopped (the admin stopped it, or policy-rc.d kept
        it from starting): it reads the files when it starts. ``nginx -s
        reload`` returns before the master has replaced its workers; until every
        old worker has switched to "shutting down" (it then keeps its
        connections but accepts no new ones), a new request may still meet the
        old upstream list.
        """
        if not self.systemd.is_active(SERVICE):
            return
        before = _accepting_workers()
        try:
            self.systemd.systemctl("reload", SERVICE)
        except DograhError as exc:
            raise DograhError(f"reloading nginx failed: {exc}") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            accepting = _accepting_workers()
            if accepting and accepting.isdisjoint(before):
                time.sleep(0.05)  # the retitled old worker closes its listeners right after
                return
            time.sleep(0.02)
        raise DograhError("reloading nginx failed: old worker processes still accept after "
                          f"{timeout:.0f}s (see journalctl -u nginx)")

    def remove_site(self) -> str | None:
        """Take the Dograh site out of nginx; nginx keeps running with the admin's sites.

        Removal succeeds whatever state the admin's own sites are in: when
        nginx -t fails without our site, nginx is not reloaded, and the
        returned warning says so.
        """
        if paths.NGINX_SITE_LINK.is_symlink():
            paths.NGINX_SITE_LINK.unlink()
        for path in (paths.NGINX_SITE, paths.NGINX_UPSTREAM, paths.NGINX_CAPACITY):
            if files.is_generated(path):
                path.unlink()
        if paths.NGINX_UPSTREAM.parent.is_dir() and not any(paths.NGINX_UPSTREAM.parent.iterdir()):
            paths.NGINX_UPSTREAM.parent.rmdir()
        if not self.systemd.is_active(SERVICE):
            return None
        try:
            self.test()
        except DograhError as exc:
            return (f"warning: nginx was not reloaded and still serves the old Dograh site "
                    f"until its own config is fixed: {exc}")
        self.reload()
        return None


def _restore(previous: dict[Path, str | None], remove_link: bool,
             removed: dict[Path, Path]) -> None:
    if remove_link and paths.NGINX_SITE_LINK.is_symlink():
        paths.NGINX_SITE_LINK.unlink()
    for link, target in removed.items():
        if not link.is_symlink():
            link.symlink_to(target)
    for path, text in previous.items():
        if text is None:
            path.unlink(missing_ok=True)
        else:
            files.write_atomic(path, text)


def _accepting_workers() -> set[int]:
    """PIDs of the nginx master's worker processes that still accept connections."""
    try:
        master = int(Path("/run/nginx.pid").read_text())
        children = Path(f"/proc/{master}/task/{master}/children").read_text()
    except (OSError, ValueError):
        return set()
    return {int(pid) for pid in children.split() if _is_accepting_worker(int(pid))}


def _is_accepting_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"worker process" in cmdline and b"shutting down" not in cmdline
