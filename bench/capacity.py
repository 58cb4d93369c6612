"""Capacity: how many calls a host holds, and where its event loops start to fall behind.

Boots a Debian 12 container, installs the .deb, and ramps concurrent calls
through our nginx on N API workers, each call echoing a small message every
5 s; then the same ramp, side by side in the same run, against
``uvicorn --workers N`` and gunicorn with uvicorn workers, on the same app,
uvicorn and FastAPI (a venv inside the container) and the same open-file
limits. At each step: calls held, refused, the loop-lag p95 of the worst
process, and memory per call. The knee is the step from which that p95 stays
above 50 ms. Every server runs bench/lagapp.py (the example app plus its own loop
lag), so each reports lag the same way.

    sudo make bench-capacity   # bench/results/capacity.md, capacity.json, capacity.png
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.testbed.container import Container

from . import ramp, report
from .run import PEER_PACKAGES, REPO, RESULTS, VENV, installed, machine, save

STEPS = [2000, 4000, 8000, 12000, 16000]
WORKERS = [2, 4]
SERVERS = ("dograh-systemd", "uvicorn --workers", "gunicorn")
PEER_PORT = 9000
APP_DIR = "/opt/bench-app"
TOOLS = ("loadgen.py", "callhold.py", "lagapp.py", "lagsample.py")


class Capacity:
    def __init__(self, ct: Container) -> None:
        self.ct = ct

    def setup(self, wheelhouse: Path) -> dict[str, str]:
        ct = self.ct
        shutil.copytree(wheelhouse, ct.path("/root/wheels"))
        ct.path(APP_DIR).mkdir(parents=True)
        for tool in TOOLS:
            shutil.copy(REPO / "bench" / tool, ct.path(f"{APP_DIR}/{tool}"))
        ct.run("chmod", "-R", "a+rX", APP_DIR)
        ct.run("apt-get", "install", "-y", "python3-venv", timeout=300)
        ct.run("python3", "-m", "venv", VENV)
        ct.run(f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--find-links",
               "/root/wheels", *PEER_PACKAGES, timeout=300)
        env = ct.path("/etc/dograh/dograh.env")
        env.write_text(env.read_text() + f"\nDOGRAH_PYTHON={VENV}/bin/python\n"
                       f"DOGRAH_APP=lagapp:app\nDOGRAH_APP_DIR={APP_DIR}\n")
        versions = json.loads(ct.run(f"{VENV}/bin/python", "-c", (
            "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            f"{PEER_PACKAGES!r}}}))")).stdout)
        versions["nginx"] = ct.run("nginx", "-v").stderr.strip().split("/")[-1]
        versions["dograh-systemd"] = ct.run("dograhctl", "--version").stdout.split()[-1]
        return versions

    @contextmanager
    def serving(self, server: str, workers: int) -> Iterator[tuple[str, str]]:
        """The server at ``workers``; (the base URL to load, how to sample its processes)."""
        if server == "dograh-systemd":
            self.ct.run("dograhctl", "scale", str(workers), "--no-drain", timeout=300)
            self.ct.run("dograhctl", "restart", "--no-drain", timeout=300)  # fresh processes
            self.ct.run("dograhctl", "rebalance")
            ports = self.ct.run("sh", "-c", "systemctl list-units --plain --no-legend "
                                "--state=active 'dograh-api@*' | sed 's/.*@//; s/\\..*//'"
                                ).stdout.split()
            yield "http://localhost", f"--ports {','.join(ports)}"
            return
        if server == "uvicorn --workers":
            argv = [f"{VENV}/bin/uvicorn", "lagapp:app", "--app-dir", APP_DIR, "--host",
                    "127.0.0.1", "--port", str(PEER_PORT), "--workers", str(workers),
                    "--no-access-log", "--timeout-keep-alive", "75"]
        else:
            argv = [f"{VENV}/bin/gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w",
                    str(workers), "-b", f"127.0.0.1:{PEER_PORT}", "--keep-alive", "75",
                    "--chdir", APP_DIR, "lagapp:app"]
        # The same open-file limit our workers get.
        self.ct.run("systemd-run", "--unit=bench-peer", "--property=KillMode=mixed",
                    "--property=LimitNOFILE=65536",
                    "--setenv=PYTHONPATH=/usr/lib/dograh-systemd/python", *argv)
        self.ct.sh(f"until curl -sf http://127.0.0.1:{PEER_PORT}/api/v1/health >/dev/null; "
                   "do sleep 0.2; done", timeout=60)
        try:
            yield (f"http://127.0.0.1:{PEER_PORT}",
                   f"--shared {PEER_PORT} --processes {workers}")
        finally:
            self.ct.run("systemctl", "stop", "bench-peer")
            self.ct.run("systemctl", "reset-failed", "bench-peer", check=False)

    def measure(self, server: str, workers: int) -> dict[str, Any]:
        with self.serving(server, workers) as (base, processes):
            sample = f"python3 {APP_DIR}/lagsample.py {processes}"
            # What dograhctl says this host holds, beside what it held.
            ceiling = (self.ct.run("dograhctl", "status").stdout.split("Capacity: ")[1]
                       .splitlines()[0] if server == "dograh-systemd" else None)
            baseline = json.loads(self.ct.run("sh", "-c", sample).stdout)
            out = self.ct.run("python3", f"{APP_DIR}/callhold.py", "--base", base,
                              "--steps", ",".join(map(str, STEPS)), "--processes", "4",
                              "--concurrency", "50", "--settle", "10", "--hold", "5",
                              "--ping", "5", "--sample", sample, timeout=3600).stdout
        lines = [json.loads(line) for line in out.strip().splitlines()]
        steps = [self.step(line, baseline) for line in lines[:-1]]
        for step in steps:
            print(f"capacity {server} N={workers}: {step['calls']} asked, {step['held']} held, "
                  f"{step['refused']} refused, lag p95 {step['lag_p95_ms']} ms, "
                  f"{step['kb_per_call']} KB/call", flush=True)
        return {"server": server, "workers": workers, "steps": steps,
                "held_without_refusal": ramp.held_without_refusal(steps),
                "knee": ramp.knee(steps), "ceiling": ceiling, "final": lines[-1]}

    @staticmethod
    def step(line: dict[str, Any], baseline: dict[str, dict[str, int]]) -> dict[str, Any]:
        sample = line["sample"]
        grown = sum(p["rss_kb"] for p in sample.values()) - sum(
            p["rss_kb"] for p in baseline.values())
        held = line["connected"]
        return {"calls": line["step"], "held": held,
                "refused": sum(line["refused"].values()),
                "lag_p95_ms": max(p["p95_ms"] for p in sample.values()),
                "kb_per_call": round(grown / held, 1) if held else None,
                "round_trip_p95_ms": line["round_trip_p95_ms"],
                "connect_seconds": line["connect_seconds"]}


def main() -> None:
    with installed("dograh-capacity") as (ct, wheelhouse):
        capacity = Capacity(ct)
        results: dict[str, Any] = {"machine": machine(), "versions": capacity.setup(wheelhouse),
                                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "steps": STEPS, "knee_ms": ramp.KNEE_MS, "runs": []}
        for workers in WORKERS:
            for server in SERVERS:
                results["runs"].append(capacity.measure(server, workers))
    save(results, "capacity")
    report.write_capacity(results, RESULTS)
    print(f"wrote {RESULTS / 'capacity.md'}")

if __name__ == "__main__":
    main()
