"""Metrics in Prometheus, from Debian's own packages: prometheus-node-exporter reads the
file dograh-metrics.timer writes, Debian's prometheus scrapes it and evaluates the
shipped alert rules, and every query of the shipped dashboard has an answer.

One host is enough: what only an edge writes (its worker hosts, the floating
address) is checked on the edges of test_hosts.py and test_front_door.py. Debian 12
alone: Prometheus and node-exporter add nothing on 13 that the package does not
already do the same way there.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.testbed.container import Container

from .fleet import api_ports, dograhctl, main_pid, reset
from .load import Load

DASHBOARD = Path(__file__).resolve().parents[2] / "docs/prometheus/grafana-dashboard.json"
TEXTFILE = "/var/lib/prometheus/node-exporter/dograh.prom"
RULES = "/usr/share/dograh-systemd/prometheus/dograh.rules.yml"
# Fast enough for a test: a scrape and an evaluation every second.
PROMETHEUS_CONFIG = f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["localhost:9100"]
"""
# The panels of the dashboard that only an edge's metrics answer, or a site with TLS.
NOT_HERE = re.compile(r"dograh_(host_|front_|keepalived_|certificate_)")


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """``check()``'s first truthy answer, polled; a timeout names ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s"
        time.sleep(0.5)


def query(ct: Container, promql: str) -> list[dict[str, Any]]:
    """Prometheus' HTTP API: an instant query's series."""
    out = ct.run("curl", "-sf", "http://localhost:9090/api/v1/query",
                 "--data-urlencode", f"query={promql}").stdout
    answer = json.loads(out)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def scalar(ct: Container, promql: str) -> float | None:
    result = query(ct, promql)
    return float(result[0]["value"][1]) if result else None


def firing(ct: Container, alertname: str) -> list[dict[str, str]]:
    """The labels of ``alertname``'s firing alerts, from /api/v1/alerts."""
    out = json.loads(ct.run("curl", "-sf", "http://localhost:9090/api/v1/alerts").stdout)
    return [alert["labels"] for alert in out["data"]["alerts"]
            if alert["labels"]["alertname"] == alertname and alert["state"] == "firing"]


def refresh(ct: Container) -> None:
    """One turn of the hardened service now, rather than at the timer's next."""
    ct.run("systemctl", "start", "dograh-metrics.service")


def install_prometheus(ct: Container) -> None:
    ct.run("apt-get", "install", "-y", "--no-install-recommends", "prometheus",
           "prometheus-node-exporter", timeout=300)
    ct.path("/etc/prometheus/prometheus.yml").write_text(PROMETHEUS_CONFIG)
    ct.run("systemctl", "restart", "prometheus")


@pytest.mark.parametrize("container", ["bookworm"], indirect=True)
def test_prometheus_sees_the_fleet_and_its_alerts(container: Container) -> None:
    ct = container
    started = time.monotonic()
    reset(ct, 3)
    dograhctl(ct, "restart", "--background")  # a deploy for the metrics to tell of
    try:
        install_prometheus(ct)
        # The timer skipped its turns without node-exporter; now it writes, unasked.
        installed = time.monotonic()
        wait_for(TEXTFILE, lambda: ct.path(TEXTFILE).exists(), 30)
        first_file = time.monotonic() - installed
        wait_for("finished deploy", lambda: ct.run(
            "systemctl", "show", "-p", "SubState", "--value", "dograh-deploy.service"
        ).stdout.strip() == "exited", 120)
        lint = ct.sh(f"promtool check metrics < {TEXTFILE}", check=False)  # as written
        assert (lint.returncode, lint.stdout + lint.stderr) == (0, ""), lint
        wait_for("Prometheus", lambda: ct.run("curl", "-sf", "http://localhost:9090/-/ready",
                                              check=False).returncode == 0, 60)
        security = ct.run("systemd-analyze", "security", "--no-pager",
                          "dograh-metrics.service").stdout
        score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)",
                                security).group(1))
        assert score <= 3.0, security

        # 30 live calls over three workers: Prometheus sums them.
        ports = api_ports(ct)
        load = Load(ct, "--duration", "1", "--rps", "0", "--call-rate", "0",
                    "--call-seconds", "60", "--jitter", "0", "--initial-calls", "30")
        assert sorted(load.warm_calls.values()) == [10, 10, 10], load.warm_calls
        time.sleep(0.5)  # the workers publish a changed Status line within 0.25 s
        refresh(ct)
        wait_for("30 calls in Prometheus", lambda: scalar(
            ct, "sum(dograh_live_calls)") == 30, 30)
        assert scalar(ct, "count(dograh_live_calls > 0)") == 3
        # The sandboxed service sees nginx's workers: their limit, and after a reload
        # the old generation holding the calls.
        assert scalar(ct, 'dograh_call_limit{limit="nginx_connections"}')
        ct.run("systemctl", "reload", "nginx")
        time.sleep(1)  # the old workers stop accepting within a second of the reload
        refresh(ct)
        wait_for("30 calls on old nginx workers", lambda: scalar(
            ct, 'dograh_nginx_old_worker_calls{instance="localhost:9100"}') == 30, 30)
        load.stop(ct)

        # kill -9: systemd restarts the worker, and the counter rises.
        unit = f"dograh-api@{ports[0]}.service"
        restarts = f'dograh_restarts_total{{unit="{unit}"}}'
        before = scalar(ct, restarts)
        assert before is not None
        ct.run("kill", "-9", str(main_pid(ct, unit)))
        wait_for(f"{unit} back", lambda: ct.run("systemctl", "is-active", unit,
                                                check=False).stdout.strip() == "active", 30)
        refresh(ct)
        after = wait_for("a restart in Prometheus",
                         lambda: (scalar(ct, restarts) or 0) > before and scalar(ct, restarts), 30)

        # A worker stopped by hand: past the rule's for:, the fleet is below its size.
        stopped = f"dograh-api@{ports[2]}.service"
        ct.run("systemctl", "stop", stopped)
        refresh(ct)
        down = time.monotonic()
        below = wait_for("DograhFleetBelowDesired firing",
                         lambda: firing(ct, "DograhFleetBelowDesired"), 120)
        fired = time.monotonic() - down
        assert [labels["role"] for labels in below] == ["api"]
        worker_down = wait_for("DograhWorkerDown firing",
                               lambda: firing(ct, "DograhWorkerDown"), 30)
        assert [labels["unit"] for labels in worker_down] == [stopped]

        # Every query of the dashboard has an answer from this Prometheus.
        dashboard = json.loads(DASHBOARD.read_text())
        asked = [(panel["title"], target["expr"].replace("$instance", ".+")
                  .replace("$__rate_interval", "1m"))
                 for panel in dashboard["panels"] for target in panel.get("targets", [])
                 if not NOT_HERE.search(target["expr"])]
        assert [f"{title}: {expr}" for title, expr in asked if not query(ct, expr)] == []
        queries = len(asked)
        assert scalar(ct, 'dograh_last_deploy_state{instance="localhost:9100",'
                          'state="succeeded"}') == 1
        print(f"\ndograh.prom {first_file:.0f}s after node-exporter came; sum(dograh_live_calls) "
              f"30; {unit} restarts {before:.0f} -> {after:.0f}; DograhFleetBelowDesired firing "
              f"{fired:.0f}s after the stop; {queries} dashboard queries answered; "
              f"exposure {score}; "
              f"the whole test {time.monotonic() - started:.0f}s")
    finally:
        ct.run("apt-get", "purge", "-y", "prometheus", "prometheus-node-exporter",
               check=False, timeout=300)
        ct.run("rm", "-rf", "/var/lib/prometheus", check=False)
        reset(ct, 3)
