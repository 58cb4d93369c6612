"""Benchmarks: this package against what users would pick instead, in one run.

Boots a Debian 12 container, installs the .deb, and puts the peers in a venv
inside it at their current releases: ``uvicorn --workers N`` and gunicorn with
uvicorn workers. Every server runs the same example app on the same uvicorn
and FastAPI from that venv (our fleet through DOGRAH_PYTHON), on the same
machine, side by side. Figures are ratios from this one run.

    sudo make bench      # writes bench/results/report.md, results.json and PNG plots
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.testbed.container import CACHE_DIR, Container

from . import report

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench/results"
VENV = "/opt/bench"
PEER_PACKAGES = ["uvicorn", "gunicorn", "uvicorn-worker", "fastapi", "websockets"]
# Where the package exposes its code to any venv; the peers import the same app.
APP_PATH = "--setenv=PYTHONPATH=/usr/lib/dograh-systemd/python"
APP = "dograh_systemd.example.app:app"
PEER_PORT = 9000
LOADGEN = "/root/loadgen.py"


def wheels() -> Path:
    """Current releases of the peers for the container's Python 3.11, cached."""
    target = CACHE_DIR / "wheels-cp311"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--dest", str(target), "--only-binary=:all:", "--python-version", "3.11",
                    "--platform", "manylinux_2_17_x86_64", "--implementation", "cp",
                    *PEER_PACKAGES], check=True)
    return target


class Bench:
    def __init__(self, ct: Container) -> None:
        self.ct = ct
        self.cpus = int(ct.run("nproc").stdout)

    # -- setup -------------------------------------------------------------------

    def setup(self, wheelhouse: Path) -> dict[str, str]:
        ct = self.ct
        shutil.copytree(wheelhouse, ct.path("/root/wheels"))
        shutil.copy(REPO / "bench/loadgen.py", ct.path(LOADGEN))
        ct.run("apt-get", "install", "-y", "python3-venv", "wrk", timeout=300)
        ct.run("python3", "-m", "venv", VENV)
        ct.run(f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--find-links",
               "/root/wheels", *PEER_PACKAGES, timeout=300)
        # Our fleet on the venv's uvicorn and FastAPI too, as for a real app's venv.
        env = ct.path("/etc/dograh/dograh.env")
        env.write_text(env.read_text() + f"\nDOGRAH_PYTHON={VENV}/bin/python\n")
        ct.run("dograhctl", "render")
        ct.run("dograhctl", "restart", "--no-drain")
        versions = json.loads(ct.run(f"{VENV}/bin/python", "-c", (
            "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            f"{PEER_PACKAGES!r}}}))")).stdout)
        versions["nginx"] = ct.run("nginx", "-v").stderr.strip().split("/")[-1]
        versions["python"] = ct.run(f"{VENV}/bin/python", "-V").stdout.split()[-1]
        versions["dograh-systemd"] = ct.run("dograhctl", "--version").stdout.split()[-1]
        return versions

    # -- helpers -----------------------------------------------------------------

    def fleet(self, workers: int) -> None:
        """Our fleet at ``workers``, settled: no calls, weights even."""
        self.ct.run("dograhctl", "scale", str(workers), "--no-drain", timeout=300)
        self.ct.run("dograhctl", "rebalance")

    def api_ports(self) -> list[int]:
        """Ports of our running API workers (a deploy moves them between bands)."""
        out = self.ct.run("systemctl", "list-units", "--plain", "--no-legend", "--state=active",
                          "dograh-api@*").stdout
        return sorted(int(re.search(r"@(\d+)", line).group(1)) for line in out.splitlines())

    @contextmanager
    def peer(self, kind: str, workers: int) -> Iterator[None]:
        if kind == "uvicorn":
            argv = [f"{VENV}/bin/uvicorn", APP, "--host", "127.0.0.1", "--port", str(PEER_PORT),
                    "--workers", str(workers), "--no-access-log", "--timeout-keep-alive", "75"]
        else:
            argv = [f"{VENV}/bin/gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w",
                    str(workers), "-b", f"127.0.0.1:{PEER_PORT}", "--keep-alive", "75", APP]
        self.ct.run("systemd-run", "--unit=bench-peer", "--property=KillMode=mixed", APP_PATH,
                    *argv)
        self.ct.sh(f"until curl -sf http://127.0.0.1:{PEER_PORT}/api/v1/health >/dev/null; "
                   "do sleep 0.2; done", timeout=60)
        try:
            yield
        finally:
            self.ct.run("systemctl", "stop", "bench-peer")
            self.ct.run("systemctl", "reset-failed", "bench-peer", check=False)

    def load(self, base: str, *args: str) -> dict:  # type: ignore[type-arg]
        out = self.ct.run("python3", LOADGEN, "--base", base, *args, timeout=600).stdout
        return json.loads(out.strip().splitlines()[-1])

    def base(self, server: str) -> str:
        return "http://localhost:80" if server == "dograh-systemd" else f"http://127.0.0.1:{PEER_PORT}"

    @contextmanager
    def serving(self, server: str, workers: int) -> Iterator[None]:
        if server == "dograh-systemd":
            self.fleet(workers)
            yield
        else:
            with self.peer(server.split()[0], workers):
                yield

    # -- 1. call balance -----------------------------------------------------------

    def balance(self) -> list[dict[str, object]]:
        runs = []
        for workers in sorted({2, 4, self.cpus}):
            for server in ("dograh-systemd", "uvicorn --workers", "gunicorn"):
                with self.serving(server, workers):
                    result = self.load(self.base(server), "--duration", "30", "--rps", "0",
                                       "--call-rate", "3", "--call-seconds", "15",
                                       "--jitter", "0.5")
                runs.append({"server": server, "workers": workers,
                             **balance_figures(result["timeline"], workers),
                             "timeline": result["timeline"],
                             "closed_early": result["calls"]["closed_early"]})
                print(f"balance {server} N={workers}: time-averaged max/mean "
                      f"{runs[-1]['max_over_mean_avg']:.2f}, worst {runs[-1]['max_over_mean_worst']:.2f}",
                      flush=True)
        return runs

    # -- 2. HTTP throughput --------------------------------------------------------

    def throughput(self) -> list[dict[str, object]]:
        runs = []
        for server in ("dograh-systemd", "uvicorn --workers", "gunicorn"):
            with self.serving(server, self.cpus):
                runs.append({"server": server, "workers": self.cpus,
                             **self.wrk(f"{self.base(server)}/api/v1/worker")})
                if server == "gunicorn":
                    # The same peer behind the same nginx: what the proxy hop costs.
                    with self.behind_nginx():
                        runs.append({"server": "gunicorn behind nginx", "workers": self.cpus,
                                     **self.wrk("http://localhost:8081/api/v1/worker")})
            for run in runs[-2:] if server == "gunicorn" else runs[-1:]:
                print(f"throughput {run['server']}: {run['rps']:.0f} req/s", flush=True)
        return runs

    @contextmanager
    def behind_nginx(self) -> Iterator[None]:
        conf = self.ct.path("/etc/nginx/conf.d/bench-peer.conf")
        conf.write_text(
            f"upstream bench_peer {{ server 127.0.0.1:{PEER_PORT}; keepalive 32; }}\n"
            "server { listen 8081; location / { proxy_pass http://bench_peer; "
            "proxy_http_version 1.1; proxy_set_header Connection \"\"; } }\n")
        self.ct.run("systemctl", "reload", "nginx")
        time.sleep(1)
        try:
            yield
        finally:
            conf.unlink()
            self.ct.run("systemctl", "reload", "nginx")

    def wrk(self, url: str) -> dict[str, float]:
        self.ct.run("wrk", "-t2", "-c32", "-d3s", url, timeout=60)  # warm up
        out = self.ct.run("wrk", "-t2", "-c32", "-d10s", "--latency", url, timeout=60).stdout
        latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                "p50_ms": to_ms(latency["50"]), "p99_ms": to_ms(latency["99"]),
                "non_2xx": int(errors.group(1)) if errors else 0}

    # -- 3. scale speed ------------------------------------------------------------

    def scale_speed(self, startup_seconds: float = 0) -> dict[str, object]:
        """dograhctl scale 2→6 against one cold start, with what bounds it on this machine:
        the same four starts by systemd alone, in parallel and one after another.
        ``startup_seconds``: the app waits that long while starting, as one that
        connects to its databases or loads models does."""
        spare = [f"dograh-api@{p}.service" for p in range(8050, 8054)]
        env = self.ct.path("/etc/dograh/dograh.env")
        original = env.read_text()
        env.write_text(original + f"DOGRAH_EXAMPLE_STARTUP_SECONDS={startup_seconds}\n")

        def timed(*argv: str) -> float:
            started = time.monotonic()
            self.ct.run(*argv, timeout=300)
            return time.monotonic() - started

        cold, parallel, sequential, scale = [], [], [], []
        for _ in range(3):
            self.fleet(2)
            cold.append(timed("systemctl", "start", spare[0]))  # returns at READY
            self.ct.run("systemctl", "stop", *spare)
            parallel.append(timed("systemctl", "start", *spare))  # one transaction
            self.ct.run("systemctl", "stop", *spare)
            sequential.append(timed("sh", "-c", " && ".join(f"systemctl start {u}" for u in spare)))
            self.ct.run("systemctl", "stop", *spare)
            scale.append(timed("dograhctl", "scale", "6"))  # returns once all six are in nginx
        figures = {"cold_start_s": statistics.median(cold),
                   "four_parallel_s": statistics.median(parallel),
                   "four_sequential_s": statistics.median(sequential),
                   "scale_2_to_6_s": statistics.median(scale)}
        figures["ratio"] = figures["scale_2_to_6_s"] / figures["cold_start_s"]
        figures["parallel_ratio"] = figures["four_parallel_s"] / figures["cold_start_s"]
        figures["dograhctl_overhead_s"] = figures["scale_2_to_6_s"] - figures["four_parallel_s"]
        figures["startup_seconds"] = startup_seconds
        env.write_text(original)
        print(f"scale speed: {figures}", flush=True)
        return figures

    # -- 4. deploy cost ------------------------------------------------------------

    def deploy_cost(self) -> list[dict[str, object]]:
        runs = []
        ways = [("dograhctl restart", "dograh-systemd", ["dograhctl", "restart"]),
                ("stop all, then start", "dograh-systemd",
                 ["systemctl", "restart", "dograh.target"]),
                ("uvicorn --workers SIGHUP", "uvicorn --workers",
                 ["systemctl", "kill", "--kill-whom=main", "--signal=HUP", "bench-peer"])]
        for name, server, deploy in ways:
            with self.serving(server, self.cpus):
                load = self.ct.popen("python3", LOADGEN, "--base", self.base(server),
                                     "--duration", "20", "--rps", "30", "--call-rate", "2",
                                     "--call-seconds", "8", "--initial-calls", "8")
                assert load.stdout is not None
                load.stdout.readline()  # warm
                time.sleep(4)
                started = time.monotonic()
                self.ct.run(*deploy, timeout=600)
                took = time.monotonic() - started
                result = json.loads(load.communicate(timeout=600)[0].strip().splitlines()[-1])
            runs.append({"way": name, "deploy_s": took,
                         "calls": result["calls"]["started"],
                         "calls_dropped": result["calls"]["closed_early"] + result["calls"]["failed"],
                         "requests": result["requests"]["ok"] + result["requests"]["failed"],
                         "requests_failed": result["requests"]["failed"]})
            print(f"deploy {name}: {runs[-1]}", flush=True)
        return runs

    # -- 5. memory -----------------------------------------------------------------

    def memory(self) -> dict[str, float]:
        self.fleet(2)
        self.ct.run("systemd-run", "--unit=bench-plain", APP_PATH, f"{VENV}/bin/uvicorn", APP,
                    "--host", "127.0.0.1", "--port", "9100", "--no-access-log")
        self.ct.sh("until curl -sf http://127.0.0.1:9100/api/v1/health >/dev/null; do "
                   "sleep 0.2; done", timeout=60)
        ports = self.api_ports()
        for port in (*ports, 9100):  # the same warm-up for every process
            self.ct.run("wrk", "-t1", "-c8", "-d3s", f"http://127.0.0.1:{port}/api/v1/worker")
        ours = [rss_mib(self.ct, f"dograh-api@{p}.service") for p in ports]
        plain = rss_mib(self.ct, "bench-plain.service")
        self.ct.run("systemctl", "stop", "bench-plain")
        figures = {"ours_mib": statistics.mean(ours), "plain_uvicorn_mib": plain}
        figures["overhead_mib"] = figures["ours_mib"] - plain
        print(f"memory: {figures}", flush=True)
        return figures


def balance_figures(timeline: list[dict], workers: int) -> dict[str, float]:  # type: ignore[type-arg]
    """max/mean of live calls across workers, averaged over time and at its worst."""
    ratios = []
    for sample in timeline:
        live = list(sample["live"].values()) + [0] * (workers - len(sample["live"]))
        total = sum(live)
        if total >= 2 * workers:  # past the first arrivals
            ratios.append(max(live) / (total / workers))
    return {"max_over_mean_avg": statistics.mean(ratios), "max_over_mean_worst": max(ratios)}


def to_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def rss_mib(ct: Container, unit: str) -> float:
    pid = ct.run("systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()
    status = ct.run("cat", f"/proc/{pid}/status").stdout
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def machine() -> dict[str, object]:
    cpu = re.search(r"model name\s+: (.*)", Path("/proc/cpuinfo").read_text())
    return {"cpus": os.cpu_count(), "cpu": cpu.group(1) if cpu else platform.processor(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "kernel": platform.release(), "container": "Debian 12, systemd-nspawn"}


def save(results: dict[str, Any], stem: str) -> None:
    """The raw figures beside the report, for a later look or another plot."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1))


def built_deb() -> Path:
    """The package from this checkout, as .ci/build-deb makes it."""
    out = subprocess.run(["bash", str(REPO / ".ci/build-deb")], check=True,
                         capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


@contextmanager
def installed(name: str) -> Iterator[tuple[Container, Path]]:
    """A booted Debian 12 container with the package installed, and the peers' wheels."""
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (it boots a systemd-nspawn container)")
    deb = built_deb()
    wheelhouse = wheels()
    ct = Container(name=name)
    try:
        ct.boot()
        ct.install_deb(deb)
        yield ct, wheelhouse
    finally:
        ct.destroy()


def main() -> None:
    with installed("dograh-bench") as (ct, wheelhouse):
        bench = Bench(ct)
        results = {"machine": machine(), "versions": bench.setup(wheelhouse),
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        results["memory"] = bench.memory()
        results["scale_speed"] = bench.scale_speed()
        results["scale_speed_slow_start"] = bench.scale_speed(startup_seconds=2)
        results["throughput"] = bench.throughput()
        results["deploy"] = bench.deploy_cost()
        results["balance"] = bench.balance()
    save(results, "results")
    report.write(results, RESULTS)
    print(f"wrote {RESULTS / 'report.md'}")

if __name__ == "__main__":
    main()
