"""Where new calls land after a scale-up, with and without upstream weights.

2 API workers hold 40 live calls; the fleet grows to 4 and 40 more calls
arrive. "plain reload" is an upstream with equal weights (what a reload gives
nginx: fresh counters, blind to the calls it already proxies); "weights" is
dograhctl's upstream, weighted from the workers' live calls at render time.
Both run side by side in one booted container. Run as root:

    .venv/bin/python -m bench.reload_balance
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from bench.testbed.container import Container

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = "/etc/nginx/dograh/upstream.conf"


def calls(ct: Container, count: int, seconds: int) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = ct.popen("python3", "/root/loadgen.py", "--duration", "1", "--rps", "0",
                    "--call-rate", "0", "--call-seconds", str(seconds), "--jitter", "0",
                    "--initial-calls", str(count))
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())["calls"]


def live(ct: Container, port: int) -> int:
    text = ct.run("systemctl", "show", "-p", "StatusText", "--value",
                  f"dograh-api@{port}.service").stdout
    return int(text.split()[0])


def scenario(ct: Container, weighted: bool) -> dict[str, object]:
    ct.run("dograhctl", "scale", "2", "--no-drain")
    ct.run("dograhctl", "rebalance")
    old, _ = calls(ct, 40, 60)
    time.sleep(0.5)
    ct.run("dograhctl", "scale", "4")
    if not weighted:
        text = ct.path(UPSTREAM).read_text()
        ct.path(UPSTREAM).write_text(re.sub(r" weight=\d+", "", text))
        ct.run("systemctl", "reload", "nginx")
        time.sleep(1)
    new, landed = calls(ct, 40, 60)
    time.sleep(0.5)
    totals = {port: live(ct, port) for port in range(8000, 8004)}
    ct.run("pkill", "-f", "/root/loadgen.py")
    for proc in (old, new):
        proc.wait()
    spread = max(totals.values()) - min(totals.values())
    return {"upstream": "weights" if weighted else "plain reload",
            "new calls per worker": {int(k): v for k, v in sorted(landed.items())},
            "live calls per worker": totals, "max - min": spread,
            "new calls on the 2 new workers": landed.get("8002", 0) + landed.get("8003", 0)}


def main() -> None:
    deb = subprocess.run(["bash", str(REPO / ".ci/build-deb")], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    ct = Container(name="dograh-bench")
    try:
        ct.boot()
        ct.install_deb(Path(deb))
        shutil.copy(REPO / "bench/loadgen.py", ct.path("/root/loadgen.py"))
        for weighted in (False, True):
            print(json.dumps(scenario(ct, weighted)), flush=True)
    finally:
        ct.destroy()


if __name__ == "__main__":
    main()
