"""System-test fixtures: the built .deb, and a booted container per Debian release.

System tests need root, debootstrap and systemd-nspawn. Outside CI they are
skipped when those are missing; in CI (CI=true) a missing tool is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.testbed.container import Container

REPO = Path(__file__).resolve().parents[2]
SUITES = ["bookworm", "trixie"]  # Debian 12 and Debian 13


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "system tests need root"
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "git"):
        if not shutil.which(tool):
            return f"system tests need {tool}"
    return None


@pytest.fixture(scope="session")
def build_deb(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Build the package from this checkout (optionally under another version), once."""
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)

    built: dict[str | None, Path] = {}

    def build(version: str | None = None) -> Path:
        if version in built:
            return built[version]
        out = tmp_path_factory.mktemp("deb")
        args = ["bash", str(REPO / ".ci/build-deb"), "--out", str(out)]
        if version:
            args += ["--version", version]
        result = subprocess.run(args, capture_output=True, text=True, check=True)
        built[version] = Path(result.stdout.strip().splitlines()[-1])
        return built[version]
    return build


@pytest.fixture(scope="session")
def deb(build_deb) -> Path:  # type: ignore[no-untyped-def]
    return build_deb()


@pytest.fixture(scope="session", params=SUITES)
def container(request: pytest.FixtureRequest, deb: Path) -> Iterator[Container]:
    """A booted container of one Debian release with the package installed."""
    ct = Container(request.param)
    try:
        ct.boot()
        ct.install_deb(deb)
        yield ct
    finally:
        ct.destroy()
