"""The load generator (bench/loadgen.py) running inside a test container."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.testbed.container import Container
from dograh_systemd.worker import contract

LOADGEN = Path(__file__).resolve().parents[2] / "bench/loadgen.py"


class Load:
    """The load generator running in the container until it finishes by itself."""

    def __init__(self, ct: Container, *args: str) -> None:
        shutil.copy(LOADGEN, ct.path("/root/loadgen.py"))
        self.proc = ct.popen("python3", "/root/loadgen.py", *args)
        assert self.proc.stdout is not None
        warm = json.loads(self.proc.stdout.readline() or "{}")
        assert warm.get("event") == "warm", "the load generator did not start"
        self.warm_calls: dict[str, int] = warm["calls"]

    def stop(self, ct: Container) -> None:
        """End it early: killing nsenter would leave the generator running inside."""
        ct.run("pkill", "-f", "/root/loadgen.py", check=False)
        self.proc.wait(30)

    def result(self, timeout: float = 300) -> dict:  # type: ignore[type-arg]
        out, _ = self.proc.communicate(timeout=timeout)
        result = json.loads(out.strip().splitlines()[-1])
        print(json.dumps({k: v for k, v in result.items() if k != "timeline"}))
        return result


def live_calls(ct: Container, port: int) -> tuple[int, int]:
    """(live calls, requests in flight) from a worker's Status line."""
    text = ct.run("systemctl", "show", "-p", "StatusText", "--value",
                  f"dograh-api@{port}.service").stdout.strip()
    load = contract.parse_status(text)
    assert load is not None, f"dograh-api@{port}: no load in its Status line {text!r}"
    return load.calls, load.requests


def assert_nothing_lost(result: dict) -> None:  # type: ignore[type-arg]
    assert result["requests"]["failed"] == 0, result["requests"]
    assert result["requests"]["ok"] > 0
    assert result["calls"]["failed"] == 0, result["calls"]
    assert result["calls"]["closed_early"] == 0, result["calls"]
    assert result["calls"]["completed"] == result["calls"]["started"]
