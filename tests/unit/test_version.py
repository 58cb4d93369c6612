"""The version is written once, in dograh_systemd/__init__.py; debian/changelog's
newest entry is made from it (make changelog) and must agree."""

from __future__ import annotations

import re
from pathlib import Path

import dograh_systemd

CHANGELOG = Path(__file__).resolve().parents[2] / "debian/changelog"


def test_the_changelog_names_the_packages_version() -> None:
    first = CHANGELOG.read_text().splitlines()[0]
    match = re.fullmatch(r"dograh-systemd \(([^)]+)\) unstable; urgency=\w+", first)
    assert match, first
    assert match.group(1) == dograh_systemd.__version__
