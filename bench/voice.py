"""Capacity on voice traffic: calls that stream a 20 ms frame each way, side by side.

Boots a Debian 12 container, installs the .deb, and ramps voice calls
(bench/voicegen.py: a Twilio-style media stream per call, 50 frames a second
each way, echoed frame for frame by the app's ``WS /api/v1/media``) on the
same app, uvicorn, uvloop and FastAPI (a venv in the container), 2 and 4
workers on the machine's CPUs. On ``wss://``, as Twilio and browsers speak
it: our fleet behind its nginx with the package's self-signed certificate;
``uvicorn --workers N`` with ``--ssl-*`` and gunicorn with uvicorn workers and
``--certfile``, each direct and each behind the same nginx TLS front door (one
upstream, accept() balancing behind it). Then plain ``ws://`` at 2 workers,
binary frames, the app's own CPU work per frame (``BENCH_FRAME_CPU_MS``), and
the nginx hop's changes (Unix sockets, one nginx worker process) on TLS.

At each step: calls held, the frames' round trip (p50, p99), frames late
(> 60 ms) and lost, the worst worker's loop lag p95, and the CPU of nginx,
the workers and the load generator. The knee is the fewest calls whose frames
come back late at p99 or not at all, at that step and every one above it; the
ramp confirms a failing step once afresh, then halves the gap to the last good
step until it is within 3 % (three times at most).

    sudo make bench-voice             # bench/results/voice.md, voice.json, voice.png
    python -m bench.voice --part plain  # one part again, the others' rows kept
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.testbed.container import CACHE_DIR, CommandFailed, Container

from . import ramp, voice_report
from .capacity import APP_DIR, PEER_PORT, Capacity
from .run import PEER_PACKAGES, REPO, RESULTS, VENV, installed, machine, save
from .voice_cases import CHANGES, FACTOR, LIMIT, OURS, PARTS, Case, cases

BISECTIONS = 3
# Ramps that start near a knee already known (bench/hosts.py's), in finer steps.
HOP_START, HOP_FACTOR = 0.7, 1.1
SETTLE, WINDOW = 4, 8
# A venv for the load generator alone, with uvloop: a cheaper client leaves more
# of the shared CPUs to the servers, the same for every server.
LOAD_VENV = "/opt/voicegen"
EXTRA_PACKAGES = ["uvloop"]
RUNTIME = "/usr/lib/python3/dist-packages/dograh_systemd/worker/runtime.py"
UPSTREAM = "/etc/nginx/dograh/upstream.conf"
NGINX_CONF = "/etc/nginx/nginx.conf"
ENV = "/etc/dograh/dograh.env"
UDS_DROPIN = "/etc/systemd/system/dograh-api@.service.d/bench-uds.conf"
# The package's self-signed pair, key and certificate in one file: every side serves it.
TLS_PEM = "/etc/dograh/tls/self-signed.pem"

# A Unix socket beside the worker's TCP port, inside the benchmark container only.
RUNTIME_SOCKETS = '''

def _bench_sockets(config):
    import os
    import socket
    path = os.environ.get("DOGRAH_BENCH_UDS")
    if not path:
        return None
    if os.path.exists(path):
        os.unlink(path)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    os.chmod(path, 0o666)
    unix.listen(config.backlog)
    return [config.bind_socket(), unix]
'''

def extra_wheels() -> Path:
    """uvloop and wsproto for the container's Python 3.11, cached beside the peers'."""
    target = CACHE_DIR / "wheels-voice-cp311"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                    "--disable-pip-version-check", "--dest", str(target), "--only-binary=:all:",
                    "--python-version", "3.11", "--platform", "manylinux_2_17_x86_64",
                    "--implementation", "cp", *EXTRA_PACKAGES], check=True)
    return target


def install_load_generator(ct: Container, directory: str) -> None:
    """voicegen.py in ``directory``, its venv with uvloop, and the extra wheels in
    /root/wheels-voice (python3-venv is in the container)."""
    shutil.copytree(extra_wheels(), ct.path("/root/wheels-voice"))
    shutil.copy(REPO / "bench/voicegen.py", ct.path(f"{directory}/voicegen.py"))
    ct.run("python3", "-m", "venv", LOAD_VENV)
    ct.run(f"{LOAD_VENV}/bin/pip", "install", "--quiet", "--no-index", "--find-links",
           "/root/wheels-voice", "uvloop", timeout=300)


class Probe:
    """What a benchmark reads besides the load generator's figures: ``start`` when a
    window starts, ``finish`` after it (its dict joins the point)."""

    def start(self) -> None:
        pass

    def finish(self) -> dict[str, Any]:
        return {}


class LagProbe(Probe):
    """The worst server process's loop-lag p95 and how evenly the calls are spread,
    through the lag app's own endpoint."""

    def __init__(self, ct: Container, processes: str) -> None:
        self.ct = ct
        self.processes = processes

    def finish(self) -> dict[str, Any]:
        try:
            out = self.ct.sh(f"python3 {APP_DIR}/lagsample.py {self.processes}", timeout=120)
            sample = json.loads(out.stdout)
        except (CommandFailed, subprocess.TimeoutExpired, ValueError):
            return {"lag_p95_ms": None}  # a loop too busy to answer is in the RTT already
        calls = [p["websockets"] for p in sample.values() if p.get("websockets") is not None]
        return {"lag_p95_ms": max((p["p95_ms"] for p in sample.values()), default=None),
                # The busiest process's calls over an even share: 1.00 is even.
                "balance": round(max(calls) / (sum(calls) / len(calls)), 2)
                if calls and sum(calls) else None}


class Stream:
    """One load generator in a container, holding calls step by step."""

    def __init__(self, ct: Container, base: str, kind: str, processes: int = 4,
                 script: str = f"{APP_DIR}/voicegen.py") -> None:
        # Its warnings go to a file: a pipe nobody reads would fill and stall it.
        self.proc = ct.popen("sh", "-c", (
            f"exec {LOAD_VENV}/bin/python {script} --base {base} --kind {kind} "
            f"--processes {processes} --settle {SETTLE} --window {WINDOW} "
            "2>>/root/voicegen.err"))

    def step(self, calls: int, fresh: bool, probe: Probe) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"calls": calls, "fresh": fresh}) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"voicegen ended: {self.proc.stderr.read() if self.proc.stderr else ''}")
            event = json.loads(line)
            if event["event"] == "window":
                probe.start()
            else:
                event.pop("event")
                return {**event, **probe.finish(), "fresh": fresh}

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
        self.proc.stdin.close()
        self.proc.wait(60)


def run_ramp(step: Callable[[int, bool], dict[str, Any]], start: int, factor: float,
             limit: int = LIMIT, label: str = "") -> list[dict[str, Any]]:
    """Ramp up until frames fail twice at one step (once afresh), then halve the gap to
    the last good step until it is within 3 %."""
    points: list[dict[str, Any]] = []

    def measure(calls: int, fresh: bool) -> dict[str, Any]:
        point = step(calls, fresh)
        points.append(point)
        print(f"voice {label}: {calls} calls{' (afresh)' if fresh else ''}: held {point['held']}, "
              f"RTT p50 {point['rtt_p50_ms']} p99 {point['rtt_p99_ms']} ms, late {point['late']}, "
              f"lost {point['lost']}, lag p95 {point.get('lag_p95_ms')} ms, CPU {point['cpu']}"
              f"{' FAIL' if ramp.frames_fail(point) else ''}", flush=True)
        return point

    calls = start
    while calls <= limit:
        if ramp.frames_fail(measure(calls, False)) and ramp.frames_fail(measure(calls, True)):
            break
        calls = ramp.next_step(calls, factor)
    for _ in range(BISECTIONS):
        knee = ramp.frame_knee(points)
        middle = None if knee is None else ramp.between(ramp.frames_carried(points), knee)
        if middle is None or middle in {p["calls"] for p in points}:
            break  # close enough, or a step that passed and failed: as near as noise allows
        measure(middle, True)
    return points


def busy_cpus(seconds: float = 3) -> float:
    """How many CPUs the whole machine keeps busy over a few seconds (/proc/stat: every
    field but idle and iowait)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields) - fields[3] - fields[4], sum(fields)
    busy, total = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    cpus = len([line for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("cpu") and line[3:4].isdigit()])
    return round(cpus * (busy_after - busy) / max(1, total_after - total), 2)


def summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    return {"points": points, "knee": ramp.frame_knee(points),
            "carried": ramp.frames_carried(points),
            "cpu_per_1000": {group: ramp.per_thousand(points, group)
                             for group in ("nginx", "workers", "load")}}


class Voice(Capacity):
    def setup(self, wheelhouse: Path) -> dict[str, str]:  # type: ignore[override]
        versions = super().setup(wheelhouse)
        ct = self.ct
        install_load_generator(ct, APP_DIR)
        # uvloop for every server: our workers and uvicorn's loop="auto" both take it.
        ct.run(f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--find-links",
               "/root/wheels-voice", *EXTRA_PACKAGES, timeout=300)
        runtime = ct.path(RUNTIME)
        text = runtime.read_text()
        old = "    server.run()\n"
        assert old in text, f"the worker runtime changed: {old!r} not found"
        runtime.write_text(text.replace(old, "    server.run(sockets=_bench_sockets(config))\n")
                           + RUNTIME_SOCKETS)
        # The package's own certificate setup makes the pair every side serves.
        self.tls(True)
        self.ct.run("dograhctl", "scale", "2", "--no-drain", timeout=300)
        packages = [*PEER_PACKAGES, *EXTRA_PACKAGES]
        versions.update(json.loads(ct.run(f"{VENV}/bin/python", "-c", (
            "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            f"{packages!r}}}))")).stdout))
        versions["python"] = ct.run(f"{VENV}/bin/python", "-V").stdout.split()[-1]
        versions["openssl"] = ct.run("openssl", "version").stdout.split()[1]
        return versions

    def tls(self, on: bool) -> None:
        """The site on HTTPS with the package's self-signed certificate, or plain HTTP;
        the next ``dograhctl scale`` renders it."""
        env = self.ct.path(ENV)
        lines = [line for line in env.read_text().splitlines()
                 if not line.startswith("DOGRAH_TLS=")]
        env.write_text("\n".join([*lines, f"DOGRAH_TLS={'self-signed' if on else 'off'}"]) + "\n")

    # -- what serves -----------------------------------------------------------------

    @contextmanager
    def serving_case(self, case: Case) -> Iterator[tuple[str, str]]:
        """The case's server, ready: (the base URL to load, how to sample its processes)."""
        self.tls(case.tls)
        scheme = "https" if case.tls else "http"
        with self.app_work(case.frame_cpu_ms), self.change(CHANGES.get(case.change, {})):
            if case.server == OURS:
                with self.serving(OURS, case.workers) as (_, processes):
                    if case.change and CHANGES[case.change].get("unix"):
                        self.to_unix_sockets()
                    yield f"{scheme}://localhost", processes
                return
            if case.front == "nginx":
                self.ct.run("dograhctl", "scale", str(case.workers), "--no-drain", timeout=300)
                with self.peer(case, tls=False) as processes, self.upstream_to_peer():
                    yield f"{scheme}://localhost", processes
                return
            with self.peer(case, tls=case.tls) as processes:
                yield f"{scheme}://127.0.0.1:{PEER_PORT}", processes

    @contextmanager
    def peer(self, case: Case, tls: bool) -> Iterator[str]:
        """uvicorn --workers or gunicorn on PEER_PORT, with its own TLS when ``tls``."""
        if case.server == "uvicorn --workers":
            argv = [f"{VENV}/bin/uvicorn", "lagapp:app", "--app-dir", APP_DIR, "--host",
                    "127.0.0.1", "--port", str(PEER_PORT), "--workers", str(case.workers),
                    "--no-access-log", "--timeout-keep-alive", "75",
                    *(["--ssl-keyfile", TLS_PEM, "--ssl-certfile", TLS_PEM] if tls else [])]
        else:
            argv = [f"{VENV}/bin/gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w",
                    str(case.workers), "-b", f"127.0.0.1:{PEER_PORT}", "--keep-alive", "75",
                    "--chdir", APP_DIR,
                    *(["--keyfile", TLS_PEM, "--certfile", TLS_PEM] if tls else []), "lagapp:app"]
        # The same open-file limit our workers get.
        self.ct.run("systemd-run", "--unit=bench-peer", "--property=KillMode=mixed",
                    "--property=LimitNOFILE=65536",
                    f"--setenv=PYTHONPATH=/usr/lib/dograh-systemd/python:{APP_DIR}",
                    f"--setenv=BENCH_FRAME_CPU_MS={case.frame_cpu_ms:g}", *argv)
        self.ct.sh(f"until curl -ksf {'https' if tls else 'http'}://127.0.0.1:{PEER_PORT}"
                   "/api/v1/health >/dev/null; do sleep 0.2; done", timeout=60)
        try:
            yield f"--shared {PEER_PORT} --processes {case.workers}{' --tls' if tls else ''}"
        finally:
            self.ct.run("systemctl", "stop", "bench-peer")
            self.ct.run("systemctl", "reset-failed", "bench-peer", check=False)

    @contextmanager
    def upstream_to_peer(self) -> Iterator[None]:
        """Our nginx's one upstream pointed at the peer's one port (our idle workers stay
        up), put back afterwards."""
        upstream = self.ct.path(UPSTREAM)
        text = upstream.read_text()
        servers = re.compile(r"^    server .*;\n", re.MULTILINE)
        assert servers.search(text), text
        upstream.write_text(servers.sub("", text).replace(
            "    keepalive ", f"    server 127.0.0.1:{PEER_PORT} max_fails=3 fail_timeout=10s;\n"
                             "    keepalive ", 1))
        try:
            self.reload_nginx()
            yield
        finally:
            upstream.write_text(text)
            self.reload_nginx()

    @contextmanager
    def app_work(self, frame_cpu_ms: float) -> Iterator[None]:
        """Our workers do the app's work per frame too (the peers get it on their command
        line); they read it when the next scale restarts them."""
        env = self.ct.path(ENV)
        text = env.read_text()
        if frame_cpu_ms:
            env.write_text(text + f"BENCH_FRAME_CPU_MS={frame_cpu_ms:g}\n")
        try:
            yield
        finally:
            env.write_text(text)

    @contextmanager
    def change(self, change: dict[str, Any]) -> Iterator[None]:
        """One of CHANGES, undone afterwards: ``worker_processes`` for nginx, ``unix``
        (each worker listens on a Unix socket too)."""
        ct = self.ct
        conf = ct.path(NGINX_CONF).read_text()
        try:
            if "worker_processes" in change:
                ct.path(NGINX_CONF).write_text(conf.replace(
                    "worker_processes auto;", f"worker_processes {change['worker_processes']};"))
                self.reload_nginx()
            if change.get("unix"):
                dropin = ct.path(UDS_DROPIN)
                dropin.parent.mkdir(parents=True, exist_ok=True)
                dropin.write_text("[Service]\nRuntimeDirectory=dograh-api/%i\n"
                                  "RuntimeDirectoryMode=0755\n"
                                  "Environment=DOGRAH_BENCH_UDS=/run/dograh-api/%i/http.sock\n")
                ct.run("systemctl", "daemon-reload")
            yield
        finally:
            ct.path(NGINX_CONF).write_text(conf)
            if ct.path(UDS_DROPIN).exists():
                ct.path(UDS_DROPIN).unlink()
                ct.run("systemctl", "daemon-reload")
            self.reload_nginx()

    def reload_nginx(self) -> None:
        self.ct.run("nginx", "-t")
        self.ct.run("systemctl", "reload", "nginx")
        time.sleep(2)  # the old nginx workers leave

    def to_unix_sockets(self) -> None:
        """nginx dials the workers' Unix sockets instead of their ports."""
        ports = self.ct.run("sh", "-c", "systemctl list-units --plain --no-legend "
                            "--state=active 'dograh-api@*' | sed 's/.*@//; s/\\..*//'"
                            ).stdout.split()
        upstream = self.ct.path(UPSTREAM)
        text = upstream.read_text()
        for port in ports:
            assert f"127.0.0.1:{port}" in text, text
            text = text.replace(f"127.0.0.1:{port}", f"unix:/run/dograh-api/{port}/http.sock")
        upstream.write_text(text)
        self.reload_nginx()

    # -- ramps -------------------------------------------------------------------------

    def ramp(self, case: Case) -> dict[str, Any]:
        began = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        # With the servers idle: any other work on the shared machine shows here.
        busy = busy_cpus()
        with self.serving_case(case) as (base, processes):
            stream = Stream(self.ct, base, case.kind)
            probe = LagProbe(self.ct, processes)
            try:
                points = run_ramp(lambda calls, fresh: stream.step(calls, fresh, probe),
                                  case.start, FACTOR, label=case.label)
            finally:
                stream.close()
        return {**asdict(case), "began": began, "busy_before": busy, **summary(points)}

    def measure_cases(self, cases: list[Case], results: dict[str, Any]) -> None:
        """Each case's ramp, in place of the row a run before left for it."""
        for case in cases:
            run = self.ramp(case)
            results["runs"] = [r for r in results["runs"] if Case.of(r) != case] + [run]
            save(results, "voice")


def main() -> None:
    # A benchmark stopped with kill still powers its containers off and removes them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", *PARTS), default="all")
    args = parser.parse_args()
    previous = RESULTS / "voice.json"
    results: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    if args.part == "all" or "runs" not in results or "tls" not in results["runs"][0]:
        results["runs"] = []  # every row from one run, or the older layout's rows gone
    with installed("dograh-voice") as (ct, wheelhouse):
        voice = Voice(ct)
        results.update({"machine": machine(), "versions": voice.setup(wheelhouse),
                        "late_ms": ramp.FRAME_LATE_MS, "settle_s": SETTLE, "window_s": WINDOW})
        if args.part == "all":
            results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        for part in PARTS if args.part == "all" else (args.part,):
            voice.measure_cases(cases(part, results["runs"]), results)
    save(results, "voice")
    voice_report.write(results, RESULTS)
    print(f"wrote {RESULTS / 'voice.md'}")


if __name__ == "__main__":
    main()
