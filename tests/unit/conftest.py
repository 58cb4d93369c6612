"""What the unit tests share: a fake host, and a dograhctl context over it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dograh_systemd import config
from dograh_systemd.context import Context
from dograh_systemd.facts import gather

from .fake_host import CONFIG, FakeHost

# The API workers' first ports: the unit tests must never need them free.
WORKER_PORTS = range(8000, 8011)


@pytest.fixture(scope="session", autouse=True)
def something_else_listens_on_the_worker_ports() -> Iterator[list[int]]:
    """Hold 8000-8010 for the whole run (those another process holds already stay its)."""
    held = []
    for port in WORKER_PORTS:
        listener = socket.socket()
        try:
            listener.bind(("127.0.0.1", port))
        except OSError:
            listener.close()
            continue
        listener.listen()
        held.append(listener)
    yield [listener.getsockname()[1] for listener in held]
    for listener in held:
        listener.close()


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
    settings = config.load(CONFIG, files=host.files, machine=host.machine)
    sink = messages if messages is not None else []
    return Context(settings, sink.append, host, gather(host))
