"""Debian's own tools on the package: a clean clone builds with dpkg-buildpackage,
piuparts passes, autopkgtest passes, lintian is clean; on Debian 12 and 13."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.testbed.container import CACHE_DIR, CLEAN_PATH, MIRROR, Container, rootfs

from .conftest import REPO, SUITES

pytestmark = pytest.mark.system


@contextmanager
def chroot(suite: str) -> Iterator[Path]:
    """A throwaway chroot over the cached root filesystem, with the host's network."""
    work = Path(subprocess.run(["mktemp", "-d", "/tmp/dograh-chroot-XXXX"], check=True,
                               capture_output=True, text=True).stdout.strip())
    merged = work / "merged"
    for sub in ("upper", "work", "merged"):
        (work / sub).mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={rootfs(suite)},upperdir={work / 'upper'},workdir={work / 'work'}",
                    str(merged)], check=True)
    mounts = []
    try:
        for fs in ("proc", "sys", "dev"):
            subprocess.run(["mount", "--rbind", f"/{fs}", str(merged / fs)], check=True)
            mounts.append(merged / fs)
        shutil.copy("/etc/resolv.conf", merged / "etc/resolv.conf")
        yield merged
    finally:
        for mount in reversed(mounts):
            subprocess.run(["umount", "-R", "-l", str(mount)], check=False)
        subprocess.run(["umount", "-l", str(merged)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def in_chroot(root: Path, script: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), "sh", "-ec", script], capture_output=True,
                          text=True, timeout=timeout,
                          env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": "/root",
                               "DEBIAN_FRONTEND": "noninteractive"})


@pytest.mark.parametrize("suite", SUITES)
def test_a_clean_clone_builds_with_dpkg_buildpackage(suite: str) -> None:
    with chroot(suite) as root:
        subprocess.run(["git", "clone", "-q", str(REPO), str(root / "src/dograh-systemd")],
                       check=True)
        result = in_chroot(root, "cd /src/dograh-systemd && apt-get update -qq && "
                                 "apt-get build-dep -y -qq --no-install-recommends ./ >/dev/null "
                                 "&& dpkg-buildpackage -us -uc -b")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        built = list((root / "src").glob("dograh-systemd_*_all.deb"))
        assert len(built) == 1, built
        listing = subprocess.run(["dpkg-deb", "-c", str(built[0])], capture_output=True,
                                 text=True, check=True).stdout
        assert "./usr/bin/dograhctl" in listing
        assert "./usr/share/dograh-systemd/units/dograh-api@.service.j2" in listing


def piuparts_base(suite: str) -> Path:
    """piuparts' base system, cached: minbase with systemd (the package's dependency,
    which piuparts would otherwise purge and blame on it)."""
    base = CACHE_DIR / f"piuparts-{suite}"
    if (base / ".complete").exists():
        return base
    shutil.rmtree(base, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", "--include=eatmydata,systemd", suite,
                    str(base), MIRROR], check=True, stdout=subprocess.DEVNULL)
    (base / "var/cache/debconf/tmp.ci").mkdir(parents=True, exist_ok=True)
    (base / ".complete").touch()
    return base


@pytest.mark.parametrize("suite", SUITES)
def test_piuparts_install_purge_and_upgrade(suite: str, deb: Path, tmp_path: Path,
                                           build_deb: Callable[[str], Path]) -> None:
    """Install and purge the new build; install the previous build, upgrade it, purge."""
    version = deb.name.split("_")[1]
    newer = build_deb(f"{version}+piuparts1")
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(deb, old)
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=old,
                              capture_output=True, text=True, check=True).stdout
    (old / "Packages").write_text(packages)
    result = subprocess.run(
        ["piuparts", "-d", suite, "-m", f"{MIRROR} main", "-e", str(piuparts_base(suite)),
         # Not this package's: a broken link nginx-common ships, and files systemd writes.
         "-i", "/usr/share/nginx/modules", "-i", "/etc/vconsole.conf", "-i",
         "/etc/default/locale", f"--bindmount={old}",
         f"--extra-repo=deb [trusted=yes] file://{old} ./", str(newer)],
        capture_output=True, text=True, timeout=1800)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert "PASS: Installation and purging test." in log, log[-3000:]
    assert "PASS: Installation, upgrade and purging tests." in log, log[-3000:]
    assert f"Unpacking dograh-systemd ({version}+piuparts1) over ({version})" in log


@pytest.mark.parametrize("suite", SUITES)
def test_autopkgtest_on_a_booted_host(suite: str, deb: Path) -> None:
    """debian/tests, run by autopkgtest against the built .deb on real systemd."""
    ct = Container(suite, name="dograh-autopkgtest")
    try:
        ct.boot()
        # The only apt source: the .debs cached in the root filesystem, offline.
        ct.sh("cd /var/cache/apt/archives && apt-ftparchive packages . > Packages && "
              "echo 'deb [trusted=yes] file:/var/cache/apt/archives ./' "
              "> /etc/apt/sources.list && rm -rf /var/lib/apt/lists/* && apt-get update -qq",
              timeout=300)
        tree = ct.path("/root/tree")
        (tree / "debian").mkdir(parents=True)
        for name in ("control", "changelog"):
            shutil.copy(REPO / "debian" / name, tree / "debian" / name)
        shutil.copytree(REPO / "debian/tests", tree / "debian/tests")
        (tree / "debian/files").touch()  # a built tree: nothing to build in the testbed
        shutil.copy(deb, ct.path(f"/root/{deb.name}"))
        result = ct.run("autopkgtest", "--output-dir", "/root/out",
                        "--ignore-restrictions=isolation-machine", f"/root/{deb.name}",
                        "/root/tree", "--", "null", check=False, timeout=900)
        summary = ct.path("/root/out/summary").read_text() if ct.path(
            "/root/out/summary").exists() else ""
        assert result.returncode == 0, (summary, result.stdout[-4000:], result.stderr[-4000:])
        assert re.search(r"^fleet\s+PASS", summary, re.M), summary
    finally:
        ct.destroy()


def test_lintian_is_clean(deb: Path) -> None:
    result = subprocess.run(["lintian", "--fail-on", "error,warning", "--pedantic", str(deb)],
                            capture_output=True, text=True)
    tags = [line for line in result.stdout.splitlines() if re.match(r"^[EWIP]: ", line)]
    assert result.returncode == 0 and tags == [], result.stdout + result.stderr
    overrides = REPO / "debian/dograh-systemd.lintian-overrides"
    lines = overrides.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert i > 0 and lines[i - 1].startswith("#"), f"override without a reason: {line}"
