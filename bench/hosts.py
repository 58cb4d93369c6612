"""Several hosts: calls held and HTTP requests/s through one edge for 1, 2 and 3 worker hosts.

Boots an edge and three worker hosts (Debian 12 containers on a private
bridge, as the multi-host tests do), installs the .deb everywhere, and for
1, 2 and 3 hosts of 2 API workers each measures, through the edge's nginx:
HTTP requests/s (wrk, from the edge) and a ramp of concurrent calls (each
echoing every 5 s): calls held, refused, and the worst worker's loop-lag p95
at each step, the knee being where it stays above 50 ms. Every container shares
this machine's CPUs, so the figures show what more hosts cost and that the
balance holds, not what more machines would add; the report says so.

    sudo make bench-hosts   # bench/results/hosts.md, hosts.json
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tests.system.container import Container
from tests.system.hosts import cluster, install

from . import ramp
from .run import REPO, RESULTS, built_deb, machine, save

SUBNET = "10.250.9"
EDGE = f"{SUBNET}.10"
WORKERS = {f"worker{i}": f"{SUBNET}.{10 + i}" for i in (1, 2, 3)}
STEPS = [1000, 2000, 4000, 6000, 8000]
PER_HOST = 2


def setup(hosts: dict[str, Container], deb: Path) -> None:
    install(hosts, deb, EDGE, WORKERS, worker_env="FASTAPI_WORKERS=1\nARQ_WORKERS=0\n",
            edge_env=f"FASTAPI_WORKERS={PER_HOST}\n", edge_tools=("wrk",))
    for tool in ("loadgen.py", "callhold.py"):
        hosts["edge"].path(f"/root/{tool}").write_text((REPO / "bench" / tool).read_text())


def measure(edge: Container, count: int) -> dict[str, Any]:
    hosts = [f"--host={name}={PER_HOST if i < count else 0}" for i, name in enumerate(WORKERS)]
    edge.run("dograhctl", "scale", *hosts, timeout=600)
    edge.run("wrk", "-t2", "-c64", "-d3s", "http://localhost/api/v1/health", timeout=60)
    wrk = edge.run("wrk", "-t2", "-c64", "-d10s", "http://localhost/api/v1/health",
                   timeout=60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
    sample = ("python3 -c 'import json, subprocess; s = json.loads(subprocess.run("
              "[\"dograhctl\", \"status\", \"--json\"], capture_output=True, text=True).stdout); "
              "print(json.dumps({h + \":\" + i[\"unit\"]: {\"p95_ms\": i[\"lag_p95_ms\"] or 0} "
              "for h, st in s[\"hosts\"].items() for i in st[\"roles\"][\"api\"]}))'")
    out = edge.run("python3", "/root/callhold.py", "--steps", ",".join(map(str, STEPS)),
                   "--processes", "4", "--concurrency", "50", "--settle", "10", "--hold", "5",
                   "--ping", "5", "--by-host", "--sample", sample, timeout=3600).stdout
    lines = [json.loads(line) for line in out.strip().splitlines()]
    steps = [{"calls": line["step"], "held": line["connected"],
              "refused": sum(line["refused"].values()),
              "lag_p95_ms": max((v["p95_ms"] for v in line["sample"].values()), default=0)}
             for line in lines[:-1]]
    held, knee = ramp.held_without_refusal(steps), ramp.knee(steps)
    per_worker = lines[-1]["per_worker"]  # host:port -> calls, at the top step
    per_host: dict[str, int] = {}
    for worker, calls in per_worker.items():
        address = worker.rsplit(":", 1)[0]
        per_host[address] = per_host.get(address, 0) + calls
    result = {"hosts": count, "workers": count * PER_HOST, "http_rps": rps, "steps": steps,
              "held_without_refusal": held, "knee": knee, "per_host": per_host,
              "per_worker": per_worker}
    print(f"hosts {count}: {rps:.0f} req/s, held {held}, knee {knee}, per host {per_host}",
          flush=True)
    return result


def markdown(results: dict[str, Any]) -> str:
    first = results["runs"][0]
    lines = ["# Several hosts", "", f"{results['date']}; all containers on one machine: "
             f"{results['machine']['cpus']} CPUs, {results['machine']['memory_gib']} GiB. "
             f"Each worker host runs {PER_HOST} API workers behind one edge nginx. Every host "
             "shares the same CPUs, so this shows what more hosts cost and that the calls "
             "spread over them, not what more machines would add.", "",
             "| worker hosts | API workers | HTTP req/s (ratio to 1 host) | calls held, 0 refused | "
             f"calls per host at {STEPS[-1]} | calls per worker, max/mean | "
             f"knee (loop lag p95 stays above {ramp.KNEE_MS} ms) |",
             "|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        lines.append(f"| {run['hosts']} | {run['workers']} | {run['http_rps']:.0f} "
                     f"({run['http_rps'] / first['http_rps']:.2f}) | "
                     f"{run['held_without_refusal']} | "
                     f"{' / '.join(str(n) for _, n in sorted(run['per_host'].items()))} | "
                     f"{ramp.max_over_mean(run['per_worker'])} | "
                     f"{run['knee'] or 'not reached'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (it boots systemd-nspawn containers)")
    deb = built_deb()
    layout = {"edge": ("bookworm", 10), **{n: ("bookworm", 10 + i)
                                           for i, n in enumerate(WORKERS, start=1)}}
    with cluster(layout, bridge="dograhbench0", subnet=SUBNET) as hosts:
        setup(hosts, deb)
        results = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                               time.gmtime()),
                   "runs": [measure(hosts["edge"], count) for count in (1, 2, 3)]}
    save(results, "hosts")
    (RESULTS / "hosts.md").write_text(markdown(results))
    print(f"wrote {RESULTS / 'hosts.md'}")


if __name__ == "__main__":
    main()
