"""Metrics for Prometheus: the exposition text of a fake fleet, a fake edge and its
hosts (valid for promtool, every metric there), the file node-exporter reads, and the
shipped alert rules (promtool test rules) and dashboard (only metrics we write).

promtool is Debian's (.ci/setup unpacks it beside the venv's tools); outside CI a
machine without it skips these tests, in CI (CI=true) its absence fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dograh_systemd import metrics, modes, paths
from dograh_systemd.cluster import agent
from dograh_systemd.cluster.keys import Keys
from dograh_systemd.host.commands import run_here
from dograh_systemd.worker.contract import Load

from .conftest import context
from .fake_host import REPO, FakeHost, Killed, NginxProcess, Unit, make_cluster

PROMETHEUS = REPO / "docs/prometheus"
RULES = PROMETHEUS / "dograh.rules.yml"
DASHBOARD = PROMETHEUS / "grafana-dashboard.json"
API = [f"dograh-api@{port}.service" for port in range(8000, 8003)]
EDGE_ONLY = {name for name in metrics.METRICS
             if name.startswith(("dograh_host_", "dograh_front_", "dograh_keepalived_"))}
Samples = dict[str, list[tuple[dict[str, str], float]]]


def promtool() -> str:
    found = shutil.which("promtool") or shutil.which("promtool", path=str(Path(sys.executable).parent))
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is missing (bash .ci/setup unpacks Debian's)")
    pytest.skip("needs promtool (bash .ci/setup unpacks Debian's)")


def checked(text: str) -> None:
    """promtool check metrics: valid, and not one lint warning."""
    result = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                            text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, ""), text


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        found = re.fullmatch(r"([a-z0-9_]+)(?:\{(.*)\})? (\S+)", line)
        assert found, line
        labels = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
        samples.setdefault(found.group(1), []).append((labels, float(found.group(3))))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    matching = [v for got, v in samples[name] if labels.items() <= got.items()]
    assert len(matching) == 1, (name, labels, samples.get(name))
    return matching[0]


def with_openssl(host: FakeHost) -> None:
    host.commands["openssl"] = lambda args: run_here(["openssl", *args])


@pytest.fixture
def busy(host: FakeHost) -> FakeHost:
    """A single host in every state the metrics tell: three API workers holding calls
    (one app with a call registry, one whose registry fails), a worker that restarted,
    a failed background deploy, an old nginx generation, a self-signed certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    host.configure("FASTAPI_WORKERS=3\nARQ_WORKERS=1\nDOGRAH_TLS=self-signed\n")
    with_openssl(host)
    code, _, err = host.dograhctl("scale")
    assert code == 0, err
    units = host.units
    units[API[0]].load = Load(websockets=4, requests=2, served=120, lag_p95_ms=3)
    units[API[1]].load = Load(websockets=5, requests=0, served=80, lag_p95_ms=61, app_calls=7)
    units[API[2]].load = Load(websockets=1, requests=1, served=9, lag_p95_ms=0,
                              app_error="HTTP 503")
    units[API[1]].restarts = 2
    now = host.clock.now
    units[paths.DEPLOY_UNIT] = Unit("failed", "failed", since=now - 600, exited=now - 300)
    host.nginx_processes.append(NginxProcess(999, False, now - 120, connections=6))
    return host


def test_a_single_hosts_text_is_valid_and_carries_every_metric(busy: FakeHost) -> None:
    code, text, err = busy.dograhctl("metrics")
    assert code == 0, err
    checked(text)
    samples = parse(text)
    assert set(samples) == set(metrics.METRICS) - EDGE_ONLY
    assert sum(v for _, v in samples["dograh_live_calls"]) == 4 + 7 + 1
    assert value(samples, "dograh_websockets", unit=API[1]) == 5
    assert value(samples, "dograh_app_calls", unit=API[1]) == 7
    assert [labels["unit"] for labels, _ in samples["dograh_app_calls"]] == [API[1]]
    assert value(samples, "dograh_app_calls_unknown", unit=API[2]) == 1
    assert value(samples, "dograh_app_calls_unknown", unit=API[1]) == 0
    assert value(samples, "dograh_requests_in_flight", unit=API[0]) == 2
    assert value(samples, "dograh_requests_served_total", unit=API[0]) == 120
    assert value(samples, "dograh_loop_lag_p95_seconds", unit=API[1]) == 0.061
    assert value(samples, "dograh_restarts_total", unit=API[1], role="api") == 2
    assert value(samples, "dograh_up", unit="dograh-arq@1.service", role="arq") == 1
    assert value(samples, "dograh_units_desired", role="api") == 3
    assert value(samples, "dograh_units_up", role="api") == 3
    assert value(samples, "dograh_upstream_members") == 3
    # Only API workers have calls.
    assert {labels["role"] for labels, _ in samples["dograh_live_calls"]} == {"api"}
    ceiling = value(samples, "dograh_call_ceiling")
    bound = [labels["limit"] for labels, v in samples["dograh_call_ceiling_bound"] if v == 1]
    assert len(bound) == 1 and value(samples, "dograh_call_limit", limit=bound[0]) == ceiling
    assert ceiling == min(v for _, v in samples["dograh_call_limit"])
    assert value(samples, "dograh_last_deploy_state", state="failed") == 1
    assert value(samples, "dograh_last_deploy_state", state="succeeded") == 0
    deploy = busy.units[paths.DEPLOY_UNIT]
    assert value(samples, "dograh_last_deploy_start_timestamp_seconds") == int(deploy.since)
    assert value(samples, "dograh_last_deploy_end_timestamp_seconds") == int(deploy.exited)
    assert value(samples, "dograh_nginx_old_worker_calls") == 3
    assert value(samples, "dograh_nginx_old_generation_max_age_seconds") == pytest.approx(120, abs=1)
    assert value(samples, "dograh_mismatches") == 1  # the failed deploy
    assert value(samples, "dograh_operation_at_work") == 0
    expiry = value(samples, "dograh_certificate_expiry_timestamp_seconds",
                   certificate=str(paths.SELF_SIGNED), tls="self-signed")
    assert 824 * 86400 < expiry - time.time() <= 825 * 86400  # openssl's -days 825


def test_a_worker_stopped_by_hand_leaves_the_fleet_below_its_size(host: FakeHost) -> None:
    assert host.dograhctl("scale", "3")[0] == 0
    host.units[API[2]].active, host.units[API[2]].sub = "inactive", "dead"
    host.units["dograh-api@8007.service"] = Unit("inactive", "dead")  # not the fleet's
    samples = parse(host.dograhctl("metrics")[1])
    assert value(samples, "dograh_units_desired", role="api") == 3
    assert value(samples, "dograh_units_up", role="api") == 2
    assert value(samples, "dograh_up", unit=API[2]) == 0
    # A unit the record does not want is shown only while it serves.
    assert "dograh-api@8007.service" not in {labels["unit"] for labels, _ in samples["dograh_up"]}
    assert value(samples, "dograh_mismatches") == 1


def test_an_operation_at_work_is_told_from_an_interrupted_one(host: FakeHost,
                                                              tmp_path: Path) -> None:
    assert host.dograhctl("scale", "2")[0] == 0
    host.kill_at = lambda event: event == "write /etc/nginx/dograh/upstream.conf"
    with pytest.raises(Killed):  # its operation stays recorded
        host.dograhctl("scale", "3")
    host.revive()
    samples = parse(host.dograhctl("metrics")[1])
    assert value(samples, "dograh_operation_at_work") == 0
    lock = host.files.path(paths.LOCK)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"fd = os.open({str(lock)!r}, os.O_RDWR)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                               "os.write(fd, str(os.getpid()).encode())\n"
                               "print('held', flush=True)\n"
                               "sys.stdin.read()\n"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        samples = parse(host.dograhctl("metrics")[1])
        assert value(samples, "dograh_operation_at_work") == 1
    finally:
        holder.communicate("")


def test_metrics_go_to_node_exporters_directory_atomically(busy: FakeHost) -> None:
    output = str(paths.METRICS_FILE)
    busy.log.clear()
    code, out, err = busy.dograhctl("metrics", "--output", output)
    assert (code, out) == (0, ""), err
    assert busy.log == [f"write {output}"]  # one rename into place, nothing else changed
    written = busy.files.read(paths.METRICS_FILE) or ""
    checked(written)
    assert written == busy.dograhctl("metrics")[1]
    listed = [p.name for p in busy.files.path(paths.TEXTFILE_DIR).iterdir()]
    assert listed == ["dograh.prom"]  # no temporary file left where *.prom is read
    assert busy.files.path(paths.METRICS_FILE).stat().st_mode & 0o444 == 0o444


def test_an_edges_text_tells_each_host_up_or_down(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, {"edge": "10.0.0.10"},
                           {"worker1": "10.0.0.11", "worker2": "10.0.0.12",
                            "worker3": "10.0.0.13", "worker4": "10.0.0.14"},
                           edge_config="FASTAPI_WORKERS=6\nDOGRAH_FRONT_ADDRESS=10.0.0.100/24\n"
                                       "DOGRAH_FRONT_INTERFACE=eth0\n"
                                       "DOGRAH_FRONT_PEERS=10.0.0.20\n",
                           worker_config="FASTAPI_WORKERS=2\n")
    edge, workers = cluster.edge, cluster.workers
    keepalived = edge.files.path(paths.KEEPALIVED)
    keepalived.parent.mkdir(parents=True)
    keepalived.touch()
    edge.floating.add("10.0.0.100/24")  # this edge holds the floating address
    cluster.run(2)
    assert edge.dograhctl("scale", "6", "--host", "worker4=0")[0] == 0
    workers["worker1"].units[API[0]].load = Load(websockets=6, requests=0)
    cluster.power_off("worker2")
    cluster.stopped.add("worker3")  # replaced by whatever writes this, for good
    cluster.etcd.write(Keys("dograh").host("worker3"), b'{"format": 1}', 0)
    cluster.run(agent.TTL + 2)
    code, text, err = edge.dograhctl("metrics")
    assert code == 0, err
    checked(text)
    samples = parse(text)
    assert set(samples) >= EDGE_ONLY
    assert "dograh_live_calls" not in samples  # each worker host writes its own
    # worker4 is registered in shape, but the edge sends nothing there: not up.
    assert [value(samples, "dograh_host_up", host=f"worker{n}") for n in (1, 2, 3, 4)] == \
        [1, 0, 0, 0]
    assert [value(samples, "dograh_host_unhealthy", host=f"worker{n}")
            for n in (1, 2, 3, 4)] == [0, 0, 1, 0]
    assert value(samples, "dograh_host_live_calls", host="worker1") == 6
    assert value(samples, "dograh_host_upstream_members", host="worker1") == 2
    assert value(samples, "dograh_upstream_members") == 2
    assert value(samples, "dograh_front_address_held", address="10.0.0.100/24") == 1
    assert value(samples, "dograh_keepalived_up") == 1
    assert value(samples, "dograh_nginx_up") == 1
    # The nginx that carries every call has its ceiling on the edge.
    assert value(samples, "dograh_call_ceiling_bound", limit="nginx_connections") == 1
    assert value(samples, "dograh_call_ceiling") > 0
    # A worker host's own text: its units, no site of its own, and its idle nginx is no
    # limit of its calls (the edges' carries them).
    code, text, err = workers["worker1"].dograhctl("metrics")
    assert code == 0, err
    checked(text)
    samples = parse(text)
    assert value(samples, "dograh_live_calls", unit=API[0]) == 6
    assert "dograh_nginx_old_workers" not in samples
    assert "dograh_certificate_expiry_timestamp_seconds" not in samples
    assert not any(labels.get("limit") == "nginx_connections"
                   for labels, _ in samples.get("dograh_call_limit", []))


def test_label_values_are_escaped() -> None:
    out = metrics.Exposition()
    out.add("dograh_certificate_expiry_timestamp_seconds", 1.5e9,
            certificate='/etc/ssl/a "quoted" \\ name\n', tls="files")
    checked(out.text())
    assert ('certificate="/etc/ssl/a \\"quoted\\" \\\\ name\\n"' in out.text())


def test_every_alert_fires_and_stays_silent_as_its_test_says() -> None:
    for args in (["check", "rules", str(RULES)], ["test", "rules", "dograh.rules.test.yml"]):
        result = subprocess.run([promtool(), *args], cwd=PROMETHEUS, capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "dograh.rules.test.yml")
                            .read_text()))
    assert tested == set(re.findall(r"- alert: (\w+)", RULES.read_text()))


def test_the_rules_and_the_dashboard_ask_only_for_metrics_we_write() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"]
               for target in panel.get("targets", [])]
    assert len(queries) >= 20
    rules = re.findall(r"expr: (?:>-\n)?((?:.*\n)+?)(?=\s+(?:for|labels):)", RULES.read_text())
    named = set()
    for query in [*queries, *rules]:
        named |= set(re.findall(r"\b(dograh_[a-z0-9_]+|node_[a-z0-9_]+|ALERTS)\b", query))
    assert named - set(metrics.METRICS) == {"node_textfile_mtime_seconds", "ALERTS"}
    # Every metric but the app registry's own counts (absent without one) is on it.
    shown = {name for query in queries for name in re.findall(r"\bdograh_[a-z0-9_]+", query)}
    assert set(metrics.METRICS) - shown == {"dograh_app_calls", "dograh_app_calls_unknown"}


def test_the_timer_writes_with_no_port_and_only_where_node_exporter_reads(
        host: FakeHost) -> None:
    ctx = context(host)
    rendered = {path.name: text for path, text in modes.choose(ctx.settings).unit_files(
        ctx).items()}
    service, timer = rendered[paths.METRICS_UNIT], rendered[paths.METRICS_TIMER]
    assert f"ConditionPathIsDirectory={paths.TEXTFILE_DIR}\n" in service
    assert f"ReadWritePaths={paths.TEXTFILE_DIR}\n" in service
    assert f"metrics --output {paths.METRICS_FILE}\n" in service
    assert "ProtectSystem=strict\n" in service and "Listen" not in service
    assert "CAP_NET_ADMIN" not in service  # a single host has no firewall of ours
    assert "WantedBy=dograh.target" in timer and "OnUnitActiveSec=15s" in timer
    # A worker host's may look at its firewall's table.
    host.configure("DOGRAH_ETCD_ENDPOINTS=https://10.0.0.10:2379\nDOGRAH_EDGE=10.0.0.10\n"
                   "UVICORN_HOST=10.0.0.11\n")
    ctx = context(host)
    service = next(text for path, text in modes.choose(ctx.settings).unit_files(ctx).items()
                   if path.name == paths.METRICS_UNIT)
    assert "CapabilityBoundingSet=CAP_NET_ADMIN\nRestrictAddressFamilies=AF_NETLINK\n" in service
