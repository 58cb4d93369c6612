"""Draining leaving workers, on the fake host's clock: when the first count is
trusted, how often it looks, what it says, and what a timeout cuts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dograh_systemd import drain
from dograh_systemd.host.systemd import UnitState
from dograh_systemd.worker import contract
from dograh_systemd.worker.contract import Load

from .conftest import context
from .fake_host import FakeHost

A, B = "dograh-api@8000.service", "dograh-api@8001.service"
# A zero is trusted only from a Status line written after nginx let go.
FRESH = contract.STATUS_INTERVAL + 0.2


def drained(host: FakeHost, units: list[str], timeout: float,
            messages: list[str] | None = None) -> tuple[drain.Cut, float]:
    """The drain's cut, and how long it took (fake seconds)."""
    started = host.clock.now
    cut = drain.until_idle(context(host, messages), units, started + timeout, timeout)
    return cut, host.clock.now - started


def test_idle_workers_are_drained_after_one_fresh_status_line(host: FakeHost) -> None:
    host.running(A, B)
    messages: list[str] = []
    cut, took = drained(host, [A, B], 300, messages)
    assert cut == drain.Cut()
    assert took == pytest.approx(FRESH)
    assert messages == ["drained 2 worker(s) in 0s"]


def test_with_the_apps_registry_the_first_count_waits_for_a_read_begun_after(
        host: FakeHost) -> None:
    host.configure("FASTAPI_WORKERS=2\nARQ_WORKERS=1\nDOGRAH_CALLS_PATH=/api/v1/calls\n")
    host.running(A)
    _, took = drained(host, [A], 300)
    assert took == pytest.approx(FRESH + contract.APP_CALLS_INTERVAL
                                 + contract.APP_CALLS_TIMEOUT)


def test_workers_not_serving_hold_nothing(host: FakeHost) -> None:
    host.running(A)
    host.units[A].active, host.units[A].sub = "activating", "start"
    cut, took = drained(host, [A, B], 300)  # B was never started
    assert (cut, took) == (drain.Cut(), 0)


def test_the_drain_looks_every_second_and_ends_when_the_last_call_does(
        host: FakeHost) -> None:
    host.running(A, calls=2)
    host.running(B)
    host.ending[A] = host.clock.now + 7.3
    messages: list[str] = []
    cut, took = drained(host, [A, B], 300, messages)
    assert cut == drain.Cut()
    assert 7.3 <= took <= 8.3
    said = f"draining {A}: 2 websockets, 0 requests in flight, 0 served, loop lag p95 0 ms"
    # said when first seen and again every 5 s while nothing changes
    assert messages == [f"{said} (0s of 300s)", f"{said} (5s of 300s)",
                        "drained 2 worker(s) in 7s"]


def test_a_changed_load_is_said_at_once(host: FakeHost) -> None:
    host.running(A, calls=3)

    def one_call_ends() -> None:
        host.units[A].load = Load(websockets=host.units[A].load.websockets - 1, requests=0)
    for second in (0.4, 1.4, 2.4):  # just before each look
        host.after(second, one_call_ends)
    messages: list[str] = []
    drained(host, [A], 300, messages)
    assert [m.split(": ")[1].split(",")[0] for m in messages[:-1]] == [
        "2 websockets", "1 websockets"]


def test_a_timeout_cuts_at_its_deadline_and_names_what_it_cut(host: FakeHost) -> None:
    host.running(A, B)
    # the app's own count of calls, when it has one, over the sockets
    host.units[A].load = Load(websockets=2, requests=0, app_calls=4)
    host.units[B].load = Load(websockets=1, requests=0, app_error="timed out")
    messages: list[str] = []
    cut, took = drained(host, [A, B], 2.5, messages)
    assert took == pytest.approx(2.5)  # the last sleep stops at the deadline
    assert cut == drain.Cut(calls=5, uncounted=(f"{B} (timed out)",))
    assert messages[-1] == (f"drain timeout after 2s: stopping 2 worker(s) with 5 live "
                            f"call(s); the app could not count the calls of {B} (timed out)")


def test_a_worker_without_a_status_line_is_busy_and_uncounted(host: FakeHost) -> None:
    host.running(A)
    host.units[A].published = False
    messages: list[str] = []
    cut, _ = drained(host, [A], 1, messages)
    assert cut == drain.Cut(calls=0, uncounted=(f"{A} (no Status line yet)",))
    assert messages[0] == f"draining {A}: no Status line yet (0s of 1s)"


def test_a_stopping_workers_line_is_said_without_its_prefix(host: FakeHost,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    host.running(A, calls=1)
    show = host.systemd.show

    def stopping(units: list[str]) -> dict[str, UnitState]:
        return {unit: replace(state, status=f"stopping: {state.status}")
                for unit, state in show(units).items()}
    monkeypatch.setattr(host.systemd, "show", stopping)
    messages: list[str] = []
    drained(host, [A], 1, messages)
    assert messages[0].startswith(f"draining {A}: 1 websockets, ")
