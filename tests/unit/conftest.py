"""What the unit tests share: a fake host, and a dograhctl context over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dograh_systemd import config, modes
from dograh_systemd.context import Context
from dograh_systemd.facts import gather

from .fake_host import CONFIG, FakeHost


@pytest.fixture(autouse=True)
def no_config_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """dograhctl reads DOGRAH_CONFIG; a test's own hosts keep their config in place."""
    monkeypatch.delenv("DOGRAH_CONFIG", raising=False)
    yield


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    """A single host with two API workers and one ARQ worker configured."""
    fake = FakeHost(tmp_path / "root")
    fake.configure("FASTAPI_WORKERS=2\nARQ_WORKERS=1\n")
    return fake


def context(host: FakeHost, messages: list[str] | None = None) -> Context:
    """What a dograhctl command on ``host`` is handed."""
    settings = config.load(CONFIG, files=host.files)
    sink = messages if messages is not None else []
    return Context(settings, sink.append, host, gather(host), modes.choose(settings))
