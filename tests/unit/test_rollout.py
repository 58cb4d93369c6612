"""Starting units and waiting for READY, on the fake host's clock."""

from __future__ import annotations

import pytest

from dograh_systemd import rollout
from dograh_systemd.errors import DograhError
from dograh_systemd.host.commands import Completed
from dograh_systemd.worker.contract import READY_WAIT

from .conftest import context
from .fake_host import FakeHost

UNITS = ["dograh-api@8000.service", "dograh-api@8001.service"]


def ready_at(host: FakeHost, unit: str, seconds: float) -> None:
    """``unit`` hangs in its start until ``seconds`` after now (fake time)."""
    host.hanging.add(unit)
    host.after(seconds, lambda: host.hanging.discard(unit))


def test_nothing_to_start_asks_systemd_nothing(host: FakeHost,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(host.systemd, "run", lambda argv, timeout=None: asked.append(argv))
    rollout.start_and_wait(context(host), [])
    assert asked == []


def test_ready_is_seen_within_a_poll_and_progress_is_said_as_it_moves(host: FakeHost) -> None:
    ready_at(host, UNITS[1], 3)
    messages: list[str] = []
    started = host.clock.now
    rollout.start_and_wait(context(host, messages), UNITS)
    assert 3 <= host.clock.now - started <= 3.1
    assert messages == [f"waiting for READY: {n}/2 ready" for n in (0, 1, 2)]
    assert [e for e in host.log if e.startswith(("start", "ready"))] == [
        f"start {UNITS[0]}", f"start {UNITS[1]}", f"ready {UNITS[0]}", f"ready {UNITS[1]}"]


def test_a_unit_that_fails_ends_the_wait_with_its_journal(host: FakeHost) -> None:
    host.failing.add(UNITS[1])
    ready_at(host, UNITS[0], 60)
    started = host.clock.now
    with pytest.raises(DograhError) as failed:
        rollout.start_and_wait(context(host), UNITS)
    assert str(failed.value) == (f"{UNITS[1]} failed to start; journal: "
                                 "app: database unreachable")
    assert host.clock.now - started < 1  # at once, not at the deadline


def test_of_two_that_fail_the_first_asked_for_is_named(host: FakeHost) -> None:
    host.failing.update(UNITS)
    with pytest.raises(DograhError, match=rf"^{UNITS[0]} failed to start"):
        rollout.start_and_wait(context(host), UNITS)


def test_an_empty_journal_is_named(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    host.failing.add(UNITS[0])
    run = host.systemd.run
    monkeypatch.setattr(host.systemd, "run", lambda argv, timeout=None: Completed(0, " \n", "")
                        if argv[0] == "journalctl" else run(argv, timeout))
    with pytest.raises(DograhError, match=r"^dograh-api@8000.service failed to start; "
                                          r"journal: empty$"):
        rollout.start_and_wait(context(host), UNITS[:1])


def test_the_wait_ends_at_its_deadline_naming_the_late_unit(host: FakeHost) -> None:
    host.hanging.add(UNITS[1])
    messages: list[str] = []
    started = host.clock.now
    with pytest.raises(DograhError, match=rf"^timed out after {READY_WAIT}s waiting for "
                                          rf"READY from {UNITS[1]}$"):
        rollout.start_and_wait(context(host, messages), UNITS)
    assert READY_WAIT < host.clock.now - started <= READY_WAIT + 0.1
    assert messages == [f"waiting for READY: {n}/2 ready" for n in (0, 1)]
