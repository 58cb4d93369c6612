"""Capacity on voice traffic: calls that stream a 20 ms frame each way, side by side.

Boots a Debian 12 container, installs the .deb, and ramps voice calls
(bench/voicegen.py: a Twilio-style media stream per call, 50 frames a second
each way, echoed frame for frame by the app's ``WS /api/v1/media``) through
our nginx on N API workers, then straight to ``uvicorn --workers N`` and to
gunicorn with uvicorn workers, on the same app, uvicorn and FastAPI (a venv in
the container), 2 and 4 workers on the machine's CPUs. At each step: calls
held, the frames' round trip (p50, p99), frames late (> 60 ms) and lost, the
worst worker's loop lag p95, and the CPU of nginx, the workers and the load
generator. The knee is the fewest calls whose frames come back late at p99
or not at all, at that step and every one above it; the ramp confirms a
failing step once afresh, then halves the gap to the last good step until it
is within 3 % (three times at most).

Then the nginx hop on its own: the same ramp on our fleet with one change at
a time (nginx worker processes, CPU affinity, its tunnel buffer,
Unix sockets to the workers, uvicorn's WebSocket implementation, uvloop), each
patched inside the container only, and the best peer with the same uvicorn
settings.

    sudo make bench-voice                        # bench/results/voice.md, voice.json, voice.png
    python -m bench.voice --part side-by-side    # or --part hop: one half, the other kept
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.testbed.container import CACHE_DIR, CommandFailed, Container

from . import ramp, report
from .capacity import APP_DIR, PEER_PORT, Capacity
from .run import PEER_PACKAGES, REPO, RESULTS, VENV, installed, machine, save

SERVERS = ("dograh-systemd", "uvicorn --workers", "gunicorn")
WORKERS = [2, 4]
START, FACTOR, LIMIT = 100, 1.25, 4000
BISECTIONS = 3
# The hop's variants start below the baseline's knee, in finer steps.
HOP_START, HOP_FACTOR = 0.7, 1.1
SETTLE, WINDOW = 4, 8
# A venv for the load generator alone, with uvloop: a cheaper client leaves more
# of the shared CPUs to the servers, the same for every server.
LOAD_VENV = "/opt/voicegen"
EXTRA_PACKAGES = ["uvloop", "wsproto"]
RUNTIME = "/usr/lib/python3/dist-packages/dograh_systemd/worker/runtime.py"
UPSTREAM = "/etc/nginx/dograh/upstream.conf"
NGINX_CONF = "/etc/nginx/nginx.conf"
SITE_LINK = "/etc/nginx/sites-enabled/dograh"
UDS_DROPIN = "/etc/systemd/system/dograh-api@.service.d/bench-uds.conf"

# Knobs for the worker runtime, inside the benchmark container only: uvicorn's
# WebSocket implementation and loop, and a Unix socket beside the TCP port.
RUNTIME_KNOBS = '''

def _bench_knobs() -> dict:
    import os
    return {key: os.environ[env] for key, env in (("ws", "DOGRAH_BENCH_WS"),
                                                  ("loop", "DOGRAH_BENCH_LOOP"))
            if os.environ.get(env)}


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
        shutil.copy(REPO / "bench/peerworker.py", ct.path(f"{APP_DIR}/peerworker.py"))
        ct.run("chmod", "-R", "a+rX", APP_DIR)
        # wsproto changes nothing by itself: uvicorn's "auto" prefers websockets.
        ct.run(f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--find-links",
               "/root/wheels-voice", "wsproto", timeout=300)
        runtime = ct.path(RUNTIME)
        text = runtime.read_text()
        for old, new in (("        **extra,\n    )", "        **extra,\n        **_bench_knobs(),\n    )"),
                         ("    server.run()\n", "    server.run(sockets=_bench_sockets(config))\n")):
            assert old in text, f"the worker runtime changed: {old!r} not found"
            text = text.replace(old, new)
        runtime.write_text(text + RUNTIME_KNOBS)
        packages = [*PEER_PACKAGES, "wsproto"]
        versions.update(json.loads(ct.run(f"{VENV}/bin/python", "-c", (
            "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            f"{packages!r}}}))")).stdout))
        versions["python"] = ct.run(f"{VENV}/bin/python", "-V").stdout.split()[-1]
        return versions

    # -- what serves -----------------------------------------------------------------

    @contextmanager
    def peer_serving(self, server: str, workers: int, uvicorn: dict[str, str]
                     ) -> Iterator[tuple[str, str]]:
        """A peer, with uvicorn's ``loop`` and ``ws`` set when ``uvicorn`` names them."""
        if not uvicorn or server == "dograh-systemd":
            with self.serving(server, workers) as served:
                yield served
            return
        if server == "uvicorn --workers":
            argv = [f"{VENV}/bin/uvicorn", "lagapp:app", "--app-dir", APP_DIR, "--host",
                    "127.0.0.1", "--port", str(PEER_PORT), "--workers", str(workers),
                    "--no-access-log", "--timeout-keep-alive", "75",
                    *(f"--{key}={value}" for key, value in uvicorn.items())]
        else:
            argv = [f"{VENV}/bin/gunicorn", "-k", "peerworker.Worker", "-w", str(workers),
                    "-b", f"127.0.0.1:{PEER_PORT}", "--keep-alive", "75", "--chdir", APP_DIR,
                    "lagapp:app"]
        self.ct.run("systemd-run", "--unit=bench-peer", "--property=KillMode=mixed",
                    "--property=LimitNOFILE=65536",
                    f"--setenv=PYTHONPATH=/usr/lib/dograh-systemd/python:{APP_DIR}",
                    *(f"--setenv=BENCH_UVICORN_{key.upper()}={value}"
                      for key, value in uvicorn.items()), *argv)
        self.ct.sh(f"until curl -sf http://127.0.0.1:{PEER_PORT}/api/v1/health >/dev/null; "
                   "do sleep 0.2; done", timeout=60)
        try:
            yield (f"http://127.0.0.1:{PEER_PORT}", f"--shared {PEER_PORT} --processes {workers}")
        finally:
            self.ct.run("systemctl", "stop", "bench-peer")
            self.ct.run("systemctl", "reset-failed", "bench-peer", check=False)

    @contextmanager
    def variant(self, change: dict[str, Any]) -> Iterator[None]:
        """Our fleet with one change, undone afterwards: ``env`` for the worker runtime,
        ``nginx_main`` (lines after worker_processes, or its new value as
        ``worker_processes``), ``site`` (lines in the server block), ``unix``."""
        ct = self.ct
        site = ct.run("readlink", "-f", SITE_LINK).stdout.strip()  # a link inside the container
        files = {path: ct.path(path).read_text() for path in
                 (NGINX_CONF, site, "/etc/dograh/dograh.env")}
        try:
            env = ct.path("/etc/dograh/dograh.env")
            env.write_text(files["/etc/dograh/dograh.env"] + "".join(
                f"{key}={value}\n" for key, value in change.get("env", {}).items()))
            conf = files[NGINX_CONF]
            if "worker_processes" in change:
                conf = conf.replace("worker_processes auto;",
                                    f"worker_processes {change['worker_processes']};")
            for line in change.get("nginx_main", []):
                conf = conf.replace("worker_processes", f"{line}\nworker_processes", 1)
            ct.path(NGINX_CONF).write_text(conf)
            if change.get("site"):
                ct.path(site).write_text(files[site].replace(
                    "    proxy_buffering off;",
                    "    proxy_buffering off;\n" + "".join(f"    {x}\n" for x in change["site"])))
            if change.get("unix"):
                dropin = ct.path(UDS_DROPIN)
                dropin.parent.mkdir(parents=True, exist_ok=True)
                dropin.write_text("[Service]\nRuntimeDirectory=dograh-api/%i\n"
                                  "RuntimeDirectoryMode=0755\n"
                                  "Environment=DOGRAH_BENCH_UDS=/run/dograh-api/%i/http.sock\n")
                ct.run("systemctl", "daemon-reload")
            ct.run("nginx", "-t")
            ct.run("systemctl", "reload", "nginx")
            yield
        finally:
            for path, text in files.items():
                ct.path(path).write_text(text)
            if ct.path(UDS_DROPIN).exists():
                ct.path(UDS_DROPIN).unlink()
                ct.run("systemctl", "daemon-reload")
            ct.run("systemctl", "reload", "nginx")

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
        self.ct.run("nginx", "-t")
        self.ct.run("systemctl", "reload", "nginx")
        time.sleep(2)  # the old nginx workers leave

    # -- ramps -------------------------------------------------------------------------

    def ramp(self, server: str, workers: int, kind: str, start: int, factor: float,
             uvicorn: dict[str, str] | None = None, unix: bool = False, label: str = ""
             ) -> dict[str, Any]:
        with self.peer_serving(server, workers, uvicorn or {}) as (base, processes):
            if unix:
                self.to_unix_sockets()
            stream = Stream(self.ct, base, kind)
            probe = LagProbe(self.ct, processes)
            try:
                points = run_ramp(lambda calls, fresh: stream.step(calls, fresh, probe),
                                  start, factor, label=label or f"{server} N={workers} {kind}")
            finally:
                stream.close()
        return {"server": server, "workers": workers, "kind": kind, **summary(points)}

    def side_by_side(self, results: dict[str, Any]) -> None:
        # Binary frames on our fleet only: what the JSON costs the same path.
        for kind, counts, servers in (("json", WORKERS, SERVERS),
                                      ("binary", WORKERS[:1], SERVERS[:1])):
            for workers in counts:
                for server in servers:
                    results["runs"].append(self.ramp(server, workers, kind, START, FACTOR))
                    save(results, "voice")

    def hop(self, results: dict[str, Any]) -> None:
        """One change at a time on our fleet at 2 workers, then the winners together, and
        the best peer in the same run, at its defaults and with the same uvicorn settings."""
        ct = self.ct
        ct.run(f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--find-links",
               "/root/wheels-voice", "uvloop", timeout=300)
        results["versions"]["uvloop"] = ct.run(
            f"{VENV}/bin/python", "-c", "import uvloop; print(uvloop.__version__)").stdout.strip()
        workers = 2
        base_knee: int | None = None
        won: list[dict[str, Any]] = []
        for name, change in VARIANTS:
            start = START if base_knee is None else round(base_knee * HOP_START / 10) * 10
            run = self.hop_ramp(name, change, workers, start,
                                FACTOR if base_knee is None else HOP_FACTOR)
            if base_knee is None:
                base_knee = run["knee"] or LIMIT
            elif change and run["knee"] and run["knee"] >= WIN * base_knee:
                won.append(change)
            results["hop"].append(run)
            save(results, "voice")
        start = round((base_knee or START) * HOP_START / 10) * 10
        together = combined(won)
        if len(won) > 1:
            results["hop"].append(self.hop_ramp("the winners together", together, workers,
                                                start, HOP_FACTOR))
        peers = [r for r in results.get("runs", []) if r["workers"] == workers
                 and r["kind"] == "json" and r["server"] != "dograh-systemd"]
        peer = max(peers, key=lambda r: r["knee"] or LIMIT)["server"] if peers \
            else "uvicorn --workers"
        settings = {"loop": "asyncio"}  # uvloop is installed now: name the default
        for name, uvicorn in (("best peer, same run", settings),
                              ("best peer, same uvicorn settings", together.get("uvicorn"))):
            if not uvicorn or (name.endswith("settings") and uvicorn == settings):
                continue
            run = self.ramp(peer, workers, "json", start, HOP_FACTOR, uvicorn=uvicorn,
                            label=f"hop {name}")
            run["variant"] = f"{name}: {peer}, " + ", ".join(f"{k}={v}" for k, v in
                                                             uvicorn.items())
            results["hop"].append(run)
            save(results, "voice")

    def hop_ramp(self, name: str, change: dict[str, Any], workers: int, start: int,
                 factor: float) -> dict[str, Any]:
        uvicorn = {"loop": "asyncio", **change.get("uvicorn", {})}
        env = {f"DOGRAH_BENCH_{key.upper()}": value for key, value in uvicorn.items()}
        with self.variant({**change, "env": env}):
            run = self.ramp("dograh-systemd", workers, "json", start, factor,
                            unix=bool(change.get("unix")), label=f"hop {name}")
        run["variant"] = name
        run["change"] = change
        return run


# One change each, measured against the baseline in the same run.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("baseline", {}),
    ("nginx: 1 worker process", {"worker_processes": "1"}),
    ("nginx: worker_cpu_affinity auto", {"nginx_main": ["worker_cpu_affinity auto;"]}),
    # nginx wants its busy buffers below all of proxy_buffers: those grow with it.
    ("nginx: proxy_buffer_size 64k", {"site": ["proxy_buffer_size 64k;",
                                               "proxy_buffers 8 64k;"]}),
    ("nginx → workers over Unix sockets", {"unix": True}),
    ("uvicorn ws=wsproto", {"uvicorn": {"ws": "wsproto"}}),
    ("uvloop", {"uvicorn": {"loop": "uvloop"}}),
    # The machine drifts: the baseline once more, last, says by how much.
    ("baseline, again", {}),
]
# A change is kept when the knee moves up by this much.
WIN = 1.05


def combined(changes: list[dict[str, Any]]) -> dict[str, Any]:
    """Several changes as one."""
    together: dict[str, Any] = {}
    for change in changes:
        for key, value in change.items():
            if isinstance(value, dict):
                together[key] = {**together.get(key, {}), **value}
            elif isinstance(value, list):
                together[key] = [*together.get(key, []), *value]
            else:
                together[key] = value
    return together


def main() -> None:
    # A benchmark stopped with kill still powers its containers off and removes them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "side-by-side", "hop"), default="all")
    args = parser.parse_args()
    previous = RESULTS / "voice.json"
    results: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    with installed("dograh-voice") as (ct, wheelhouse):
        voice = Voice(ct)
        results.update({"machine": machine(), "versions": voice.setup(wheelhouse),
                        "late_ms": ramp.FRAME_LATE_MS, "settle_s": SETTLE, "window_s": WINDOW})
        now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        if args.part in ("all", "side-by-side"):
            results.update(runs=[], date=now)
            voice.side_by_side(results)
        if args.part in ("all", "hop"):
            results.update(hop=[], hop_date=now)  # a part run alone keeps the other's date
            voice.hop(results)
    save(results, "voice")
    report.write_voice(results, RESULTS)
    print(f"wrote {RESULTS / 'voice.md'}")


if __name__ == "__main__":
    main()
