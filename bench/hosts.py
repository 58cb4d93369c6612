"""Several hosts: voice calls through one edge for 1, 2 and 3 worker hosts of a fixed size.

Boots an edge and three worker hosts (Debian 12 containers on a private
bridge, as the multi-host tests do), installs the .deb everywhere, and holds
each worker host to a fixed share of this machine's CPUs, CPU_PER_HOST, as
systemd's ``CPUQuota=`` (with ``CPUQuotaPeriodSec=10ms``) would on its scope:
1, 2 and 3 worker hosts are then 1, 2 and 3 times the CPU of API workers
behind the same edge, as separate machines would be. For each count, through
the edge's nginx: HTTP requests/s (wrk) and a ramp of voice calls
(bench/voicegen.py on the edge, 50 frames a second each way per call, the
knee as in bench/voice.py), the CPU of the edge's nginx and of every worker
host per 1,000 calls, and from them how many such worker hosts one edge
carries before its nginx is the limit.

    sudo make bench-hosts   # bench/results/hosts.md, hosts.json, hosts.png
    sudo .venv/bin/python -m bench.hosts --at-rest   # only the hosts at rest, again
    sudo .venv/bin/python -m bench.hosts --failover  # only the floating address's failover
    sudo .venv/bin/python -m bench.hosts --host-loss # only a worker host powered off
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.testbed.cluster import cluster, front_keys, holders, install
from bench.testbed.container import Container
from dograh_systemd import paths
from dograh_systemd.cluster.agent import TTL

from . import ramp
from .failover import failover_seconds
from .run import RESULTS, built_deb, machine, save
from .voice import HOP_FACTOR, HOP_START, Probe, Stream, install_load_generator, run_ramp
from .voice_cases import FACTOR
from .voice_report import latest_per_count

SUBNET = "10.250.9"
EDGE = f"{SUBNET}.10"
WORKERS = {f"worker{i}": f"{SUBNET}.{10 + i}" for i in (1, 2, 3)}
PER_HOST = 1
MEMBERS = ("edge", "worker1", "worker2")  # etcd's three members
# Each worker host's CPUs. The edge (nginx, and the load generator beside it) has
# what the worker hosts leave of this machine's 2: with three hosts, 1.25 CPUs.
CPU_PER_HOST = 0.25
# A short period: a host at its quota runs slower instead of stopping for most of
# systemd's default 100 ms, which no real machine of that size does.
PERIOD_US = 10_000
START = 10
V1 = Path("/sys/fs/cgroup")


class Cgroups:
    """Each container's CPU, counted, and capped for the worker hosts.

    The containers run here without a host systemd, so what ``CPUQuota=`` would
    write on a container's scope is written straight into a cgroup of its own:
    cgroup v1's cpu and cpuacct controllers where the machine has them (as this
    one does), else the container's cgroup v2 (``cpu.max``).
    """

    def __init__(self, hosts: dict[str, Container], caps: dict[str, float]) -> None:
        self.hosts = hosts
        self.caps = caps
        self.v1 = (V1 / "cpu/cpu.cfs_quota_us").exists() and (V1 / "cpuacct/cpuacct.usage").exists()
        self.groups: dict[str, dict[str, Path]] = {}

    def __enter__(self) -> Cgroups:
        for name, ct in self.hosts.items():
            if self.v1:
                groups = {c: V1 / c / f"dograh-bench-{name}" for c in ("cpu", "cpuacct")}
                for group in groups.values():
                    group.mkdir(exist_ok=True)
                if name in self.caps:
                    (groups["cpu"] / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                    (groups["cpu"] / "cpu.cfs_quota_us").write_text(
                        str(int(self.caps[name] * PERIOD_US)))
                for group in groups.values():
                    move(pids(ct), group)
            else:
                own = ct.cgroups[-1]  # the container's own, made by tests.system.container
                if name in self.caps:
                    subtree = own.parent / "cgroup.subtree_control"
                    if "cpu" not in subtree.read_text().split():
                        subtree.write_text("+cpu")
                    (own / "cpu.max").write_text(f"{int(self.caps[name] * PERIOD_US)} {PERIOD_US}")
                groups = {"cpu": own, "cpuacct": own}
            self.groups[name] = groups
        return self

    def usage(self) -> dict[str, float]:
        """CPU seconds each container has used."""
        used = {}
        for name, groups in self.groups.items():
            if self.v1:
                used[name] = int((groups["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
            else:
                stat = (groups["cpu"] / "cpu.stat").read_text()
                used[name] = int(re.search(r"usage_usec (\d+)", stat).group(1)) / 1e6
        return used

    def throttled(self) -> dict[str, float]:
        """Seconds each capped container has waited for its quota."""
        waited = {}
        for name in self.caps:
            stat = (self.groups[name]["cpu"] / "cpu.stat").read_text()
            if self.v1:
                waited[name] = int(re.search(r"throttled_time (\d+)", stat).group(1)) / 1e9
            else:
                waited[name] = int(re.search(r"throttled_usec (\d+)", stat).group(1)) / 1e6
        return waited

    def __exit__(self, *_: object) -> None:
        if not self.v1:
            return  # the container's own cgroup goes with it
        for name, groups in self.groups.items():
            for controller, group in groups.items():
                move(pids(self.hosts[name]), V1 / controller)
                with contextlib.suppress(OSError):
                    group.rmdir()


def pids(ct: Container) -> list[int]:
    """Every process of a container, from its own cgroup tree."""
    found: set[int] = set()
    for own in ct.cgroups[:1]:
        for procs in own.rglob("cgroup.procs"):
            found.update(int(pid) for pid in procs.read_text().split())
    return sorted(found)


def move(processes: list[int], group: Path) -> None:
    for pid in processes:
        with contextlib.suppress(ProcessLookupError, OSError):  # it ended meanwhile
            (group / "cgroup.procs").write_text(str(pid))


class HostsProbe(Probe):
    """Each container's CPU over the window, how long the worker hosts waited for
    their quota, and the worst API worker's loop lag (dograhctl status on the edge)."""

    def __init__(self, edge: Container, cgroups: Cgroups) -> None:
        self.edge = edge
        self.cgroups = cgroups
        self.before: tuple[float, dict[str, float], dict[str, float]] = (0, {}, {})

    def start(self) -> None:
        self.before = (time.monotonic(), self.cgroups.usage(), self.cgroups.throttled())

    def finish(self) -> dict[str, Any]:
        started, used, waited = self.before
        seconds = time.monotonic() - started
        host_cpu = {name: round((cpu - used[name]) / seconds, 3)
                    for name, cpu in self.cgroups.usage().items()}
        throttled = {name: round((wait - waited[name]) / seconds, 3)
                     for name, wait in self.cgroups.throttled().items()}
        status = json.loads(self.edge.run("dograhctl", "status", "--json", check=False,
                                          timeout=60).stdout or "{}")
        # Each API worker's Status line: "…, loop lag p95 3 ms".
        lags = [int(lag.group(1)) for report in status.get("hosts", {}).values()
                for unit in report.get("units", []) if unit["role"] == "api"
                and (lag := re.search(r"loop lag p95 (\d+) ms", unit["status"]))]
        return {"host_cpu": host_cpu, "throttled": throttled,
                "lag_p95_ms": max(lags, default=None)}


def at_rest(edge: Container, cgroups: Cgroups, seconds: float = 45) -> dict[str, float]:
    """Each container's CPU with every worker host serving and no call: what a host
    spends on its own (its agent renews its lease every second and watches the
    cluster's keys; the edge, worker1 and worker2 run etcd's three members)."""
    edge.run("dograhctl", "scale", *(f"--host={name}={PER_HOST}" for name in WORKERS),
             timeout=600)
    probe = HostsProbe(edge, cgroups)
    before = {name: units_cpu(cgroups.hosts[name]) for name in WORKERS}
    probe.start()
    time.sleep(seconds)
    rest = probe.finish()
    after = {name: units_cpu(cgroups.hosts[name]) for name in WORKERS}
    # Where a worker host's CPU went, by unit (its own systemd's accounting), busiest first.
    units = {name: dict(sorted(((unit, round((used - before[name].get(unit, 0)) / seconds, 4))
                                for unit, used in after[name].items()),
                               key=lambda item: -item[1])[:6]) for name in WORKERS}
    print(f"hosts at rest: CPU {rest['host_cpu']}, waiting for quota {rest['throttled']}, "
          f"by unit {units}", flush=True)
    return {"cpu": rest["host_cpu"], "throttled": rest["throttled"], "units": units,
            "seconds": seconds, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# What a worker host spends on being in the cluster: under the SSH poll its status
# commands (user.slice) and sshd; on etcd its agent and, where it is a member, etcd.
CONTROL_PLANE = ("user.slice", "system.slice/ssh.service", "system.slice/dograh-agent.service",
                 "system.slice/etcd.service")


def control_plane(rest: dict[str, Any]) -> str:
    """Each worker host's control-plane CPU at rest, and the CPU-seconds a minute of the
    mean host."""
    spent = {name: sum(units.get(unit, 0) for unit in CONTROL_PLANE)
             for name, units in rest["units"].items()}
    mean = sum(spent.values()) / len(spent)
    return (", ".join(f"{name} {cpu:.3f}" for name, cpu in spent.items())
            + f" ({60 * mean:.1f} CPU-seconds a minute)")


def units_cpu(ct: Container) -> dict[str, float]:
    """CPU seconds each unit (and slice) of a container has used, from its cgroup tree."""
    out = ct.sh("for f in /sys/fs/cgroup/*.slice/cpu.stat /sys/fs/cgroup/*.slice/*/cpu.stat; "
                "do echo \"$f $(head -1 $f)\"; done").stdout
    used = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] == "usage_usec":
            name = fields[0].removeprefix("/sys/fs/cgroup/").removesuffix("/cpu.stat")
            used[name] = int(fields[2]) / 1e6
    return used


def setup(hosts: dict[str, Container], deb: Path) -> None:
    install(hosts, deb, {"edge": EDGE}, WORKERS, MEMBERS,
            worker_env="FASTAPI_WORKERS=1\nARQ_WORKERS=0\n",
            edge_env=f"FASTAPI_WORKERS={PER_HOST}\n", tools=("wrk", "python3-venv"))
    install_load_generator(hosts["edge"], "/root")


def measure(edge: Container, cgroups: Cgroups, count: int, start: int, factor: float
            ) -> dict[str, Any]:
    hosts = [f"--host={name}={PER_HOST if i < count else 0}" for i, name in enumerate(WORKERS)]
    edge.run("dograhctl", "scale", *hosts, timeout=600)
    edge.run("wrk", "-t2", "-c64", "-d3s", "http://localhost/api/v1/health", timeout=60)
    wrk = edge.run("wrk", "-t2", "-c64", "-d10s", "http://localhost/api/v1/health",
                   timeout=60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
    serving = list(WORKERS)[:count]
    stream = Stream(edge, "http://localhost", "json", script="/root/voicegen.py")
    probe = HostsProbe(edge, cgroups)

    def step(calls: int, fresh: bool) -> dict[str, Any]:
        point = stream.step(calls, fresh, probe)
        # The API workers' CPU is on the worker hosts, not where the load generator looks.
        point["cpu"]["workers"] = round(sum(point["host_cpu"][n] for n in serving), 3)
        return point

    try:
        points = run_ramp(step, start, factor, label=f"{count} worker host(s)")
    finally:
        stream.close()
    result = {"hosts": count, "workers": count * PER_HOST, "cpus": count * CPU_PER_HOST,
              "http_rps": rps, "points": points, "knee": ramp.frame_knee(points),
              "carried": ramp.frames_carried(points),
              "cpu_per_1000": {g: ramp.per_thousand(points, g) for g in ("nginx", "workers")}}
    print(f"hosts {count}: {rps:.0f} req/s, knee {result['knee']}, carried {result['carried']}, "
          f"CPU per 1,000 calls {result['cpu_per_1000']}", flush=True)
    return result


def sizing(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """How close to linear the knees are, the edge's CPU per 1,000 calls, and how many
    worker hosts of this size one edge carries."""
    one = runs[0]["knee"] or runs[0]["carried"]
    edges = [run["cpu_per_1000"]["nginx"] for run in runs if run["cpu_per_1000"]["nginx"]]
    edge = round(sum(edges) / len(edges), 3) if edges else None
    per_host = ramp.calls_per_host(runs)
    return {"linear": {run["hosts"]: round((run["knee"] or 0) / (run["hosts"] * one), 2)
                       for run in runs} if one else {},
            "edge_cpu_per_1000": edge, "calls_per_host": per_host,
            "calls_per_worker_cpu": round(per_host / CPU_PER_HOST) if per_host else None,
            "hosts_per_edge": ramp.hosts_per_edge(edge, per_host, CPU_PER_HOST),
            "hosts_per_edge_cpu": ramp.hosts_per_edge(edge, per_host, 1.0)}


def markdown(results: dict[str, Any]) -> str:
    first, size = results["runs"][0], results["sizing"]
    m = results["machine"]
    lines = ["# Several hosts", "",
             f"{results['date']}; all containers on one machine: {m['cpus']} CPUs ({m['cpu']}), "
             f"{m['memory_gib']} GiB. Each worker host runs {PER_HOST} API worker and is held to "
             f"**{CPU_PER_HOST} CPU** (a CPU quota on its container's cgroup, period "
             f"{PERIOD_US // 1000} ms, as systemd's `CPUQuota={CPU_PER_HOST:.0%}` with "
             f"`CPUQuotaPeriodSec={PERIOD_US // 1000}ms` would be): 1, 2 and 3 worker hosts are "
             f"{CPU_PER_HOST}, {2 * CPU_PER_HOST} and {3 * CPU_PER_HOST} CPUs of API workers "
             "behind one edge nginx, which shares the rest of the machine with the load "
             "generator. Calls are voice-shaped: each a WebSocket streaming a Twilio-style 20 ms "
             "frame each way, 50 a second, echoed by the app (bench/voicegen.py); the knee is "
             f"the fewest calls whose frames come back later than {ramp.FRAME_LATE_MS} ms at "
             "p99 or not at all, there and above (as in [voice.md](voice.md)).", "",
             "| worker hosts | CPUs of API workers | HTTP req/s (ratio to 1 host) | knee (calls) "
             "| knee ÷ (hosts x 1 host's) | calls carried | RTT p50 / p99 there (ms) | "
             "worker hosts' CPU per 1,000 calls | edge nginx CPU per 1,000 calls |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        at = next((p for p in reversed(run["points"]) if p["calls"] == run["carried"]
                   and not ramp.frames_fail(p)), {})
        per = run["cpu_per_1000"]
        lines.append(
            f"| {run['hosts']} | {run['cpus']} | {run['http_rps']:.0f} "
            f"({run['http_rps'] / first['http_rps']:.2f}) | {run['knee'] or 'not reached'} | "
            f"{size['linear'].get(run['hosts'], '-')} | {run['carried']} | "
            f"{at.get('rtt_p50_ms', '-')} / {at.get('rtt_p99_ms', '-')} | "
            f"{per.get('workers') or '-'} | {per.get('nginx') or '-'} |")
    edge, per_cpu = size["edge_cpu_per_1000"], size["calls_per_worker_cpu"]
    lines += ["", "![hosts](hosts.png)", ""]
    if edge and per_cpu:
        lines += [
            "**How many worker hosts one edge carries.** The edge's nginx takes "
            f"**{edge:.2f} CPUs per 1,000 calls** (the mean of the three ramps' figures, each "
            "the median CPU per call over its upper steps below the knee): one CPU of nginx "
            f"relays about {1000 / edge:,.0f} calls. "
            f"A worker host carries {size['calls_per_host']} calls per {CPU_PER_HOST} CPU, "
            f"about {per_cpu:,} calls per CPU of API workers. So one edge CPU keeps up with "
            f"**{size['hosts_per_edge_cpu']:.1f} worker hosts of {CPU_PER_HOST} CPU**, i.e. "
            f"{size['hosts_per_edge_cpu'] * CPU_PER_HOST:.1f} CPUs of API workers; an edge "
            f"the size of a worker host carries **{size['hosts_per_edge']:.1f} worker hosts** "
            "with its nginx at full CPU. Keep its CPU below about 70 % for headroom (TLS, "
            f"reloads, bursts of new calls): {0.7 * size['hosts_per_edge']:.1f} worker hosts "
            "per edge of the same size. On loopback and on this bridge the kernel's work for a "
            "message is mostly charged to its sender, so the edge's figure includes the "
            "network stack for both of its legs.", ""]
    rest = results["at_rest"]
    idle = [rest["cpu"][name] for name in WORKERS]
    lines += [
        f"**A worker host at rest** (its API worker up, no call, {rest['seconds']:.0f} s, "
        f"{rest.get('date', results['date'])}): "
        f"{sum(idle) / len(idle):.3f} CPU on average ("
        + ", ".join(f"{name} {rest['cpu'][name]:.3f}" for name in WORKERS) + "), of which it "
        f"waited {sum(rest['throttled'].values()) / len(idle):.2f} s per second for its quota. "
        f"That is {60 * sum(idle) / len(idle):.1f} CPU-seconds a minute. By unit (the host's own "
        "systemd's accounting, CPUs): "
        + "; ".join(f"{name}: " + ", ".join(f"{unit} {cpu}" for unit, cpu in units.items())
                    for name, units in rest["units"].items()) + ".", ""]
    before = results.get("at_rest_before")
    if before:
        lines += [
            "**The control plane at rest, before and after etcd** (per worker host, CPU; "
            "its units by its own systemd's accounting, above): "
            f"{control_plane(before)} before ({before['date']}, the edge polling every host "
            f"over SSH); {control_plane(rest)} now ({rest['date']}).", ""]
    loss = results.get("host_loss")
    if loss:
        out = [r["upstream"] for r in loss["runs"]]
        moved = [r["singletons"] for r in loss["runs"]]
        lines += [
            f"**A worker host powered off** ({loss['date']}; an edge and two worker hosts, "
            f"etcd's three members on them, the agents' lease {loss['ttl']} s): the host "
            "that runs both singletons powered off (its link down, then its init killed), "
            f"over {len(out)} runs (min / median / max): out of the edge's upstream after "
            f"**{min(out)} / {statistics.median(out)} / {max(out)} s**, both singletons "
            f"running on the other host after **{min(moved)} / {statistics.median(moved)} / "
            f"{max(moved)} s**, with no admin command.", ""]
    over = results.get("failover")
    if over:
        lines += [
            f"**The floating address fails over** ({over['date']}; two edges, Debian 12 and "
            "13, keepalived's VRRP version 3 at 0.2 s adverts): the edge holding the address "
            "powered off (its link down, then its init killed), a client on the same network "
            "asking the address every 50 ms (each a new connection, 200 ms to answer); "
            "address gone → first request answered by the other edge, over "
            f"{len(over['runs'])} runs: **min {over['min']:.2f} s, median "
            f"{over['median']:.2f} s, max {over['max']:.2f} s** ("
            + ", ".join(f"{t:.2f}" for t in over["runs"]) + ").", ""]
    lines += ["<details><summary>every step</summary>", ""]
    for run in results["runs"]:
        lines += [f"{run['hosts']} worker host(s):", "",
                  "| calls | held | RTT p50 / p99 (ms) | late | lost | API loop lag p95 (ms) | "
                  "edge nginx CPU | worker hosts' CPU | waiting for quota (s/s) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in run["points"]:
            lines.append(f"| {p['calls']}{' (afresh)' if p.get('fresh') else ''}"
                         f"{' ✗' if ramp.frames_fail(p) else ''} | {p['held']} | "
                         f"{p['rtt_p50_ms']} / {p['rtt_p99_ms']} | {p['late']} | {p['lost']} | "
                         f"{p.get('lag_p95_ms')} | {p['cpu'].get('nginx')} | "
                         f"{p['cpu'].get('workers')} | "
                         f"{round(sum(p['throttled'].values()), 2)} |")
        lines.append("")
    return "\n".join([*lines, "</details>", ""])


def plot(results: dict[str, Any], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run in results["runs"]:
        points = latest_per_count(run["points"])
        left.plot([p["calls"] for p in points], [max(p["rtt_p99_ms"] or 1000, 0.5)
                                                   for p in points],
                  marker="o", markersize=3, label=f"{run['hosts']} host(s), knee {run['knee']}")
    left.axhline(ramp.FRAME_LATE_MS, color="grey", linestyle="--", linewidth=1)
    left.set_yscale("log")
    left.set_xlabel("concurrent calls through the edge")
    left.set_ylabel("frame round trip p99 (ms)")
    left.legend(fontsize=8)
    counts = [run["hosts"] for run in results["runs"]]
    one = results["runs"][0]["knee"] or 0
    right.plot(counts, [run["knee"] or 0 for run in results["runs"]], marker="o",
               label="knee, measured")
    right.plot(counts, [n * one for n in counts], linestyle="--", color="grey",
               label="linear in hosts")
    right.set_xticks(counts)
    right.set_xlabel(f"worker hosts of {CPU_PER_HOST} CPU")
    right.set_ylabel("calls")
    right.legend(fontsize=8)
    fig.suptitle("Several hosts behind one edge, voice traffic", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The floating address: two edges, one worker host, a caller; each run powers the edge
# that holds the address off, then boots it again.
FRONT_SUBNET = "10.250.10"
FRONT_EDGES = {"edge1": f"{FRONT_SUBNET}.20", "edge2": f"{FRONT_SUBNET}.21"}
FRONT_LAYOUT = {"edge1": ("bookworm", 20), "edge2": ("trixie", 21), "worker1": ("bookworm", 22),
                "caller": ("bookworm", 23)}
FLOATING = f"{FRONT_SUBNET}.100"
FAILOVER_RUNS = 10


def failover(deb: Path) -> dict[str, Any]:
    """Address gone (its holder powered off) → first request another edge answered, over
    FAILOVER_RUNS runs."""
    network = f"{FRONT_SUBNET}.0/24"
    with cluster(FRONT_LAYOUT, bridge="dograhbench1", subnet=FRONT_SUBNET) as hosts:
        workers = {"worker1": f"{FRONT_SUBNET}.22"}
        install({name: hosts[name] for name in (*FRONT_EDGES, *workers)}, deb, FRONT_EDGES,
                workers, (*FRONT_EDGES, *workers), worker_env="FASTAPI_WORKERS=2\n",
                edge_env="FASTAPI_WORKERS=2\n", tools=("keepalived",))
        for i, name in enumerate(FRONT_EDGES):
            env = hosts[name].path("/etc/dograh/dograh.env")
            env.write_text(env.read_text() + front_keys(name, FRONT_EDGES, FLOATING, 150 - i * 50))
            hosts[name].run("dograhctl", "render", timeout=120)
        hosts["edge1"].run("dograhctl", "scale", "2", timeout=300)
        hosts["caller"].path("/root/failover.py").write_text(
            (Path(__file__).parent / "failover.py").read_text())
        times = []
        for run in range(FAILOVER_RUNS):
            deadline = time.monotonic() + 60
            while len(on_floating := holders(hosts, FRONT_EDGES, FLOATING)) != 1:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench: no single edge holds {FLOATING}")
                time.sleep(0.2)
            holder = on_floating[0]
            poller = hosts["caller"].popen("python3", "/root/failover.py",
                                           f"http://{FLOATING}/api/v1/health", "--within",
                                           network, "--seconds", "8")
            time.sleep(2)
            cut = hosts[holder].power_cut()  # when its link went down
            out, _ = poller.communicate(timeout=60)
            seconds = failover_seconds([json.loads(line) for line in out.splitlines()], cut)
            if seconds is None:
                raise SystemExit(f"bench: {FLOATING} did not answer again within 6 s")
            times.append(round(seconds, 3))
            print(f"failover {run + 1}: {holder} off, answered after {seconds:.3f} s",
                  flush=True)
            hosts[holder].boot()
            hosts[holder].run("systemctl", "start", "keepalived.service")
        return {"runs": times, "min": min(times), "median": statistics.median(times),
                "max": max(times), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# A worker host powered off, LOSS_RUNS times: the host that runs the singletons goes,
# the other takes them; it boots again and rejoins before the next run.
LOSS_SUBNET = "10.250.11"
LOSS_WORKERS = {"worker1": f"{LOSS_SUBNET}.11", "worker2": f"{LOSS_SUBNET}.12"}
LOSS_LAYOUT = {"edge": ("bookworm", 10), "worker1": ("bookworm", 11), "worker2": ("trixie", 12)}
LOSS_SINGLETONS = ("dograh-ari-manager.service", "dograh-campaign-orchestrator.service")
LOSS_RUNS = 5


def host_loss(deb: Path) -> dict[str, Any]:
    """Power-off of the host that runs the singletons → its address gone from the edge's
    upstream, and → every singleton active on the other host (sampled every 0.2 s)."""
    placed = " ".join(f"{unit.removeprefix('dograh-').removesuffix('.service')}="
                      f"{','.join(LOSS_WORKERS)}" for unit in LOSS_SINGLETONS)
    with cluster(LOSS_LAYOUT, bridge="dograhbench2", subnet=LOSS_SUBNET) as hosts:
        install(hosts, deb, {"edge": f"{LOSS_SUBNET}.10"}, LOSS_WORKERS, tuple(LOSS_LAYOUT),
                worker_env="FASTAPI_WORKERS=1\nARQ_WORKERS=0\n",
                edge_env=f"DOGRAH_SINGLETON_HOSTS=\"{placed}\"\nFASTAPI_WORKERS=2\n")
        edge = hosts["edge"]
        edge.run("dograhctl", "scale", "2", timeout=600)

        def running(name: str) -> bool:
            out = hosts[name].run("systemctl", "is-active", *LOSS_SINGLETONS,
                                  check=False).stdout.split()
            return out == ["active"] * len(LOSS_SINGLETONS)

        def upstream_has(address: str) -> bool:
            return f"{address}:" in edge.path(str(paths.NGINX_UPSTREAM)).read_text()

        def upstream_lacks(address: str) -> bool:
            return not upstream_has(address)

        def wait(predicate: Any, seconds: float, what: str) -> float:
            started = time.monotonic()
            while not predicate():
                if time.monotonic() > started + seconds:
                    raise SystemExit(f"bench: not within {seconds:.0f} s: {what}")
                time.sleep(0.2)
            return time.monotonic()

        runs = []
        for run in range(LOSS_RUNS):
            wait(lambda: all(upstream_has(a) for a in LOSS_WORKERS.values()), 120,
                 "every worker host in the upstream")
            holder = next(name for name in LOSS_WORKERS if running(name))
            other = next(name for name in LOSS_WORKERS if name != holder)
            cut = hosts[holder].power_cut()
            left = wait(functools.partial(upstream_lacks, LOSS_WORKERS[holder]), 60,
                        f"{holder} left the upstream")
            moved = wait(functools.partial(running, other), 60, f"the singletons on {other}")
            runs.append({"upstream": round(left - cut, 1), "singletons": round(moved - cut, 1)})
            print(f"host loss {run + 1}: {holder} off; out of the upstream after "
                  f"{left - cut:.1f} s, its singletons on {other} after {moved - cut:.1f} s",
                  flush=True)
            hosts[holder].boot()
        return {"runs": runs, "ttl": TTL,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main() -> None:
    # A benchmark stopped with kill still powers its containers off and removes them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (it boots systemd-nspawn containers)")
    # --at-rest: only the hosts at rest again (the control plane's own cost); --failover:
    # only the floating address's failover; --host-loss: only a worker host powered off;
    # each into the last full run's report.
    only_at_rest = sys.argv[1:] == ["--at-rest"]
    deb = built_deb()
    only = {"--failover": ("failover", failover), "--host-loss": ("host_loss", host_loss)}
    if len(sys.argv) == 2 and sys.argv[1] in only:
        key, measured = only[sys.argv[1]]
        results = json.loads((RESULTS / "hosts.json").read_text())
        results[key] = measured(deb)
        save(results, "hosts")
        (RESULTS / "hosts.md").write_text(markdown(results))
        print(f"wrote {RESULTS / 'hosts.md'}")
        return
    layout = {"edge": ("bookworm", 10), **{n: ("bookworm", 10 + i)
                                           for i, n in enumerate(WORKERS, start=1)}}
    with cluster(layout, bridge="dograhbench0", subnet=SUBNET) as hosts:
        setup(hosts, deb)
        runs: list[dict[str, Any]] = []
        with Cgroups(hosts, {name: CPU_PER_HOST for name in WORKERS}) as cgroups:
            rest = at_rest(hosts["edge"], cgroups)
            for count in () if only_at_rest else (1, 2, 3):
                linear = count * (runs[0]["knee"] if runs and runs[0]["knee"] else START)
                start = START if not runs else ramp.nice(linear * HOP_START)
                runs.append(measure(hosts["edge"], cgroups, count, start,
                                    FACTOR if not runs else HOP_FACTOR))
    if only_at_rest:
        results = json.loads((RESULTS / "hosts.json").read_text())
        results["at_rest"] = rest
    else:
        results = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                               time.gmtime()),
                   "cpu_per_host": CPU_PER_HOST, "period_us": PERIOD_US, "at_rest": rest,
                   "runs": runs}
        results["sizing"] = sizing(runs)
        plot(results, RESULTS / "hosts.png")
    save(results, "hosts")
    (RESULTS / "hosts.md").write_text(markdown(results))
    print(f"wrote {RESULTS / 'hosts.md'}")


if __name__ == "__main__":
    main()
