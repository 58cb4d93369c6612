"""No failed request and no dropped call while scaling, deploying or reloading.

Every test runs the load generator (bench/loadgen.py) inside the container,
against nginx, while it changes the fleet, and asserts on what the load saw.
"""

from __future__ import annotations

import time

import pytest

from bench.testbed.container import Container

from .fleet import api_ports, dograhctl, main_pid, reset, units
from .load import Load, assert_nothing_lost, live_calls

pytestmark = pytest.mark.system


def test_scale_2_to_6_to_2_under_load(container: Container) -> None:
    reset(container, 2)
    load = Load(container, "--duration", "24", "--rps", "30", "--call-rate", "3",
                "--call-seconds", "6", "--initial-calls", "6")
    time.sleep(3)
    dograhctl(container, "scale", "6")
    time.sleep(8)
    down = dograhctl(container, "scale", "2")
    assert "drained 4 worker(s)" in down.stderr
    result = load.result()
    assert_nothing_lost(result)
    # The new workers took calls and requests once they were ready.
    assert set(map(int, result["calls"]["per_worker"])) == set(range(8000, 8006))
    assert api_ports(container) == [8000, 8001]


def test_restart_twice_under_load(container: Container) -> None:
    reset(container, 3)
    before = {main_pid(container, f"dograh-api@{p}.service") for p in range(8000, 8003)}
    others = ["dograh-arq@1.service", "dograh-ari-manager.service",
              "dograh-campaign-orchestrator.service"]
    others_before = {u: main_pid(container, u) for u in others}
    load = Load(container, "--duration", "20", "--rps", "30", "--call-rate", "2",
                "--call-seconds", "5", "--initial-calls", "6")
    first = dograhctl(container, "restart")
    assert api_ports(container) == [8100, 8101, 8102]
    second = dograhctl(container, "restart")
    assert api_ports(container) == [8000, 8001, 8002]
    result = load.result()
    assert_nothing_lost(result)
    for out in (first, second):
        assert "drained 3 worker(s)" in out.stderr
    after = {main_pid(container, f"dograh-api@{p}.service") for p in range(8000, 8003)}
    assert not after & before, "every API worker must be a new process"
    for unit, pid in others_before.items():
        assert main_pid(container, unit) not in (0, pid), f"{unit} was not restarted"
        assert units(container, unit) == [unit]


def test_ten_nginx_reloads_fail_no_request(container: Container) -> None:
    reset(container, 3)
    load = Load(container, "--duration", "12", "--rps", "50", "--call-rate", "2",
                "--call-seconds", "4", "--initial-calls", "6")
    for _ in range(10):
        container.run("systemctl", "reload", "nginx")
        time.sleep(0.8)
    assert_nothing_lost(load.result())


def test_kill_9_loses_only_that_workers_calls(container: Container) -> None:
    reset(container, 3)
    load = Load(container, "--duration", "10", "--rps", "20", "--call-rate", "0",
                "--call-seconds", "15", "--jitter", "0", "--initial-calls", "30")
    time.sleep(0.5)  # Status lines follow within 0.1 s
    victims_calls, in_flight = live_calls(container, 8001)
    assert victims_calls == load.warm_calls["8001"] > 0
    container.run("kill", "-9", str(main_pid(container, "dograh-api@8001.service")))
    result = load.result()
    assert result["calls"]["closed_early"] == victims_calls
    assert result["calls"]["completed"] == 30 - victims_calls
    assert result["requests"]["failed"] <= in_flight, result["requests"]


def test_drain_timeout_shorter_than_the_calls(container: Container) -> None:
    reset(container, 3)
    load = Load(container, "--duration", "1", "--rps", "0", "--call-rate", "0",
                "--call-seconds", "30", "--jitter", "0", "--initial-calls", "15")
    time.sleep(0.5)
    on_leaving, _ = live_calls(container, 8002)
    assert on_leaving > 0
    started = time.monotonic()
    out = dograhctl(container, "scale", "2", "--drain-timeout", "3")
    took = time.monotonic() - started
    assert took < 3 + 6, f"scale took {took:.1f}s with a 3 s drain timeout"
    assert f"the drain timeout cut {on_leaving} live call(s)" in out.stdout
    result = load.result()
    assert result["calls"]["closed_early"] == on_leaving
    assert result["calls"]["completed"] == 15 - on_leaving


def test_new_calls_fill_new_workers_after_a_scale_up(container: Container) -> None:
    """2 -> 4 workers while 40 calls are live on the first two: where do 40 new calls land?"""
    reset(container, 2)
    old = Load(container, "--duration", "1", "--rps", "0", "--call-rate", "0",
               "--call-seconds", "40", "--jitter", "0", "--initial-calls", "40")
    assert old.warm_calls == {"8000": 20, "8001": 20}
    time.sleep(0.5)
    up = dograhctl(container, "scale", "4")
    assert "8002 (weight 10)" in up.stderr
    new = Load(container, "--duration", "1", "--rps", "0", "--call-rate", "0",
               "--call-seconds", "20", "--jitter", "0", "--initial-calls", "40")
    time.sleep(1.5)
    totals = {port: live_calls(container, port)[0] for port in range(8000, 8004)}
    print(f"new calls per worker: {new.warm_calls}; totals: {totals}")
    # The new workers fill first: each ends within a few calls of the others.
    assert max(totals.values()) - min(totals.values()) <= 6, totals
    assert new.warm_calls.get("8002", 0) + new.warm_calls.get("8003", 0) >= 32
    # A follow-up re-weighs later; once the calls are gone the weights go
    # back to 1 and no further follow-up is scheduled.
    assert "re-derived from live calls" in up.stderr
    for load in (old, new):
        load.stop(container)
    reset(container, 4)
    assert container.run("systemctl", "list-timers", "--all", "--no-legend",
                         "dograh-rebalance-*").stdout.strip() == ""


def test_old_nginx_generations_are_shown_then_gone(container: Container) -> None:
    """After three reloads under 30 live calls, status names the old nginx worker
    processes that hold them, and the bound they end by; once the calls end, none."""
    reset(container, 3)
    load = Load(container, "--duration", "1", "--rps", "0", "--call-rate", "0",
                "--call-seconds", "12", "--jitter", "0", "--initial-calls", "30")
    for _ in range(3):
        container.run("systemctl", "reload", "nginx")
        time.sleep(0.5)
    shown = dograhctl(container, "status").stdout
    held = [line for line in shown.splitlines() if "old nginx worker(s) from" in line]
    assert held and sum(int(line.split(" hold ")[1].split()[0]) for line in held) == 30, shown
    assert "at 360s (worker_shutdown_timeout)" in held[0]
    assert load.result()["calls"]["closed_early"] == 0
    deadline = time.monotonic() + 20
    while "old nginx worker" in dograhctl(container, "status").stdout:
        assert time.monotonic() < deadline, "the old generations did not end with their calls"
        time.sleep(0.5)
