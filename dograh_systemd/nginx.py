"""Change nginx's configuration as one transaction: all of it, or none of it.

Render, compare, rename into place, ``nginx -t``, reload. When the test or the
reload fails, every file is put back as it was, so a config that fails
``nginx -t`` is never left behind and the running nginx keeps its old one.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from . import files, paths
from .errors import DograhError

_MEMBER = re.compile(r"^\s*server\s+\S+:(\d+)(?:\s+weight=(\d+))?", re.MULTILINE)


def test() -> None:
    """``nginx -t`` on what is on disk now; the error names nginx's first complaint."""
    result = subprocess.run(["nginx", "-t", "-q"], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if "[emerg]" in line]
        detail = (lines or result.stderr.strip().splitlines() or ["no output"])[0]
        raise DograhError(f"nginx -t failed: {detail.strip()}")


def upstream_weights() -> dict[int, int]:
    """The worker ports the live upstream file lists, with their weights."""
    text = files.read(paths.NGINX_UPSTREAM) or ""
    return {int(port): int(weight or 1) for port, weight in _MEMBER.findall(text)}


def apply(rendered: dict[Path, str]) -> bool:
    """Bring nginx to ``rendered`` plus the enabled-site link; True if anything changed."""
    changes = files.changed(rendered)
    add_link = not paths.NGINX_SITE_LINK.is_symlink()
    if not changes and not add_link:
        return False
    previous = {path: files.read(path) for path in changes}
    try:
        for path, text in changes.items():
            files.write_generated(path, text)
        if add_link:
            paths.NGINX_SITE_LINK.parent.mkdir(parents=True, exist_ok=True)
            paths.NGINX_SITE_LINK.symlink_to(paths.NGINX_SITE)
        test()
        reload()
    except BaseException:
        _restore(previous, add_link)
        raise
    return True


def _restore(previous: dict[Path, str | None], remove_link: bool) -> None:
    if remove_link and paths.NGINX_SITE_LINK.is_symlink():
        paths.NGINX_SITE_LINK.unlink()
    for path, text in previous.items():
        if text is None:
            path.unlink(missing_ok=True)
        else:
            files.write_atomic(path, text)


def reload(timeout: float = 10) -> None:
    """Reload nginx (start it if it is down) and wait until only new workers accept.

    ``nginx -s reload`` returns before the master has replaced its workers;
    until every old worker has switched to "shutting down" (it then keeps its
    connections but accepts no new ones), a new request may still meet the
    old upstream list.
    """
    before = _workers()
    result = subprocess.run(["systemctl", "reload-or-restart", "nginx.service"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DograhError(f"reloading nginx failed: {detail}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        accepting = _workers()
        if accepting and accepting.isdisjoint(before):
            time.sleep(0.05)  # the retitled old worker closes its listeners right after
            return
        time.sleep(0.02)
    raise DograhError("reloading nginx failed: old worker processes still accept after "
                      f"{timeout:.0f}s (see journalctl -u nginx)")


def _workers() -> set[int]:
    """PIDs of the nginx master's worker processes that still accept connections."""
    try:
        master = int(Path("/run/nginx.pid").read_text())
        children = Path(f"/proc/{master}/task/{master}/children").read_text()
    except (OSError, ValueError):
        return set()
    return {int(pid) for pid in children.split() if _is_worker(int(pid))}


def _is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"worker process" in cmdline and b"shutting down" not in cmdline


def remove_site() -> None:
    """Take the Dograh site out of nginx; nginx keeps running with the admin's sites."""
    if paths.NGINX_SITE_LINK.is_symlink():
        paths.NGINX_SITE_LINK.unlink()
    for path in (paths.NGINX_SITE, paths.NGINX_UPSTREAM):
        if files.is_generated(path):
            path.unlink()
    if paths.NGINX_UPSTREAM.parent.is_dir() and not any(paths.NGINX_UPSTREAM.parent.iterdir()):
        paths.NGINX_UPSTREAM.parent.rmdir()
    active = subprocess.run(["systemctl", "is-active", "--quiet", "nginx.service"]).returncode == 0
    if active:
        test()
        reload()
