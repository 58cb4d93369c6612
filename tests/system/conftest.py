"""System-test fixtures: one booted container with the project installed.

System tests need root, debootstrap and systemd-nspawn. Outside CI they are
skipped when those are missing; in CI (CI=true) a missing tool is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from .container import Container
from .install import install_from_source


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "system tests need root"
    for tool in ("debootstrap", "systemd-nspawn", "nsenter"):
        if not shutil.which(tool):
            return f"system tests need {tool}"
    return None


@pytest.fixture(scope="session")
def container() -> Iterator[Container]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    ct = Container()
    try:
        ct.boot()
        install_from_source(ct)
        yield ct
    finally:
        ct.destroy()
