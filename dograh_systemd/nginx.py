"""Change nginx's configuration as one transaction: all of it, or none of it.

Render, compare, rename into place, ``nginx -t``, reload. When the test or the
reload fails, every file is put back as it was, so a config that fails
``nginx -t`` is never left behind and the running nginx keeps its old one. A
mark written before the first file and removed after the reload makes the next
transaction reload even when the files are already in place: a command killed
in between left nginx running the old ones. Also the limits nginx needs to
carry thousands of calls, and the one line of the admin's nginx.conf they take.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import DograhError
from .host import Host
from .host.files import Files
from .host.machine import NginxWorker

SERVICE = "nginx.service"

# nginx sets up its connection table whole when a worker starts: no more than
# this many connections per worker (about 30 MB of it).
MAX_CONNECTIONS = 65536
# Files an nginx worker keeps for itself: logs, listeners, cached upstream connections.
RESERVE = 1024
_CONNECTIONS = re.compile(r"^(\s*worker_connections\s+)(\d+)(\s*;)", re.M)


# How much longer than a drain an old nginx worker process may hold a call.
SHUTDOWN_MARGIN = 60


def shutdown_timeout(drain_timeout: int) -> int:
    """nginx's worker_shutdown_timeout: an old generation ends only once no drain could
    still be waiting for one of its calls."""
    return drain_timeout + SHUTDOWN_MARGIN


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


def restore_connections(files: Files) -> None:
    """Put back nginx.conf's own worker_connections, if the value there is still ours."""
    record = files.read(paths.NGINX_CONNECTIONS_RAISED)
    if record is None:
        return
    original, ours = record.split()
    conf = files.read(paths.NGINX_CONF) or ""
    if worker_connections(conf) == int(ours):
        files.write_atomic(paths.NGINX_CONF, _CONNECTIONS.sub(rf"\g<1>{original}\g<3>", conf,
                                                               count=1))
    files.unlink(paths.NGINX_CONNECTIONS_RAISED)


class Nginx:
    def __init__(self, host: Host) -> None:
        self.host = host

    def test(self) -> None:
        """``nginx -t`` on what is on disk now; the error names nginx's first complaint."""
        result = self.host.run(["nginx", "-t", "-q"])
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if "[emerg]" in line]
            detail = (lines or result.stderr.strip().splitlines() or ["no output"])[0]
            raise DograhError(f"nginx -t failed: {detail.strip()}")

    def apply(self, rendered: Mapping[Path, str], links: Mapping[Path, Path] | None = None,
              remove: tuple[Path, ...] = (), edits: Mapping[Path, str] | None = None,
              reload: bool = False) -> bool:
        """Bring nginx to ``rendered`` (generated files), with the symbolic ``links``
        (link -> target) in place, the links of ``remove`` gone and the admin's files of
        ``edits`` changed; True if anything changed.

        ``reload`` reloads even when the files are in place; so does a transaction
        an interrupted command left (its mark is there).
        """
        files = self.host.files
        edits = files.changed(edits or {})
        changes = files.changed(rendered)
        add = {link: target for link, target in (links or {}).items()
               if files.link_target(link) != target}
        removed = {link: files.link_target(link) for link in remove if files.is_link(link)}
        pending = files.exists(paths.NGINX_RELOAD_PENDING)
        if not (changes or edits or add or removed or pending or reload):
            return False
        previous = {path: files.read(path) for path in {**changes, **edits}}
        previous_links = {link: files.link_target(link) for link in add}
        files.write_atomic(paths.NGINX_RELOAD_PENDING, "")
        try:
            for path, text in changes.items():
                files.write_generated(path, text)
            for path, text in edits.items():
                files.write_atomic(path, text)
            for link, target in add.items():
                files.unlink(link)
                files.link(link, target)
            for link in removed:
                files.unlink(link)
            self.test()
            self.reload()
        except BaseException:
            _restore(files, previous, {**previous_links, **removed})
            raise
        files.unlink(paths.NGINX_RELOAD_PENDING)
        return bool(changes or edits or add or removed)

    def reload(self, timeout: float = 10) -> None:
        """Reload a running nginx and wait until only new workers accept.

        A stopped nginx stays stopped (the admin stopped it, or policy-rc.d kept
        it from starting): it reads the files when it starts. ``nginx -s
        reload`` returns before the master has replaced its workers; until every
        old worker has switched to "shutting down" (it then keeps its
        connections but accepts no new ones), a new request may still meet the
        old upstream list.
        """
        systemd, machine, clock = self.host.systemd, self.host.machine, self.host.clock
        if not systemd.is_active(SERVICE):
            return
        before = _accepting(machine.nginx_workers())
        try:
            systemd.systemctl("reload", SERVICE)
        except DograhError as exc:
            raise DograhError(f"reloading nginx failed: {exc}") from None
        deadline = clock.monotonic() + timeout
        while clock.monotonic() < deadline:
            accepting = _accepting(machine.nginx_workers())
            if accepting and accepting.isdisjoint(before):
                clock.sleep(0.05)  # the retitled old worker closes its listeners right after
                return
            clock.sleep(0.02)
        raise DograhError("reloading nginx failed: old worker processes still accept after "
                          f"{timeout:.0f}s (see journalctl -u nginx)")

    def remove_site(self) -> str | None:
        """Take the Dograh site out of nginx; nginx keeps running with the admin's sites.

        Removal succeeds whatever state the admin's own sites are in: when
        nginx -t fails without our site, nginx is not reloaded, and the
        returned warning says so.
        """
        files = self.host.files
        files.unlink(paths.NGINX_SITE_LINK)
        for path in (paths.NGINX_SITE, paths.NGINX_UPSTREAM, paths.NGINX_CAPACITY):
            if files.is_generated(path):
                files.unlink(path)
        files.remove_empty_directory(paths.NGINX_UPSTREAM.parent)
        files.unlink(paths.NGINX_RELOAD_PENDING)
        if not self.host.systemd.is_active(SERVICE):
            return None
        try:
            self.test()
        except DograhError as exc:
            return (f"warning: nginx was not reloaded and still serves the old Dograh site "
                    f"until its own config is fixed: {exc}")
        self.reload()
        return None


def _restore(files: Files, previous: Mapping[Path, str | None],
             links: Mapping[Path, Path | None]) -> None:
    """The files and links as they were before a transaction that failed."""
    for link, target in links.items():
        files.unlink(link)
        if target is not None:
            files.link(link, target)
    for path, text in previous.items():
        if text is None:
            files.unlink(path)
        else:
            files.write_atomic(path, text)


@dataclass(frozen=True)
class Generation:
    """nginx worker processes a reload left running: they accept nothing new and end
    with their last call (or at worker_shutdown_timeout)."""

    age: float       # seconds since they started
    workers: int
    calls: int       # a proxied call holds two sockets

    def describe(self, shutdown_timeout: int) -> str:
        return (f"{self.workers} old nginx worker(s) from {self.age:.0f}s ago hold "
                f"{self.calls} call(s); they end with their last call, or at "
                f"{shutdown_timeout}s (worker_shutdown_timeout)")


def old_generations(host: Host) -> list[Generation]:
    """The generations of nginx workers earlier reloads left, oldest first."""
    now = host.clock.time()
    by_start: dict[int, list[NginxWorker]] = {}
    for worker in host.machine.nginx_workers():
        if not worker.accepting:
            by_start.setdefault(int(worker.started), []).append(worker)
    return [Generation(now - started, len(workers),
                       sum(worker.connections for worker in workers) // 2)
            for started, workers in sorted(by_start.items())]


def _accepting(workers: list[NginxWorker]) -> set[int]:
    return {worker.pid for worker in workers if worker.accepting}
