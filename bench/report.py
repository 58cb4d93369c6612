"""Turn bench results into report.md and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from . import ramp

SERVERS = ("dograh-systemd", "uvicorn --workers", "gunicorn")


def write(results: dict[str, Any], out: Path) -> None:
    plot_balance(results["balance"], out)
    plot_bars(out / "throughput.png", "HTTP throughput, small JSON endpoint",
              [r["server"] for r in results["throughput"]],
              {"requests/s": [r["rps"] for r in results["throughput"]]})
    plot_bars(out / "deploy.png", "Lost during one deploy under load",
              [r["way"] for r in results["deploy"]],
              {"calls dropped": [r["calls_dropped"] for r in results["deploy"]],
               "requests failed": [r["requests_failed"] for r in results["deploy"]]})
    (out / "report.md").write_text(markdown(results))


def plot_balance(runs: list[dict[str, Any]], out: Path) -> None:
    for workers in sorted({r["workers"] for r in runs}):
        chosen = [r for r in runs if r["workers"] == workers]
        fig, axes = plt.subplots(1, len(chosen), figsize=(5 * len(chosen), 3.6), sharey=True)
        for ax, run in zip(axes, chosen, strict=True):
            names = sorted({w for s in run["timeline"] for w in s["live"]})
            times = [s["t"] for s in run["timeline"]]
            for name in names:
                ax.plot(times, [s["live"].get(name, 0) for s in run["timeline"]], label=name)
            ax.set_title(f"{run['server']}\nmax/mean {run['max_over_mean_avg']:.2f} "
                         f"(worst {run['max_over_mean_worst']:.2f})", fontsize=10)
            ax.set_xlabel("seconds")
        axes[0].set_ylabel("live calls per worker")
        fig.suptitle(f"Call balance, {workers} workers", fontsize=11)
        fig.tight_layout()
        fig.savefig(out / f"balance_{workers}_workers.png", dpi=110)
        plt.close(fig)


def plot_bars(path: Path, title: str, labels: list[str], series: dict[str, list[float]]) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        xs = [x + i * width for x in range(len(labels))]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=9)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels)
    ax.set_title(title, fontsize=11)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(r: dict[str, Any]) -> str:
    m, v = r["machine"], r["versions"]
    base = next(t for t in r["throughput"] if t["server"] == "uvicorn --workers")
    lines = [
        "# Benchmarks",
        "",
        f"Run {r['date']} on {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, kernel "
        f"{m['kernel']}, in {m['container']}. One run, side by side; the machine is shared, "
        "so read ratios, not absolute figures.",
        "",
        "Every server runs the same example app on the same versions: "
        + ", ".join(f"{k} {v[k]}" for k in sorted(v)) + ".",
        "",
        "## Call balance",
        "",
        "WebSocket calls arriving at 3/s, lasting 15 s ± 50 %, for 30 s; live calls per "
        "worker sampled every second. max/mean is the busiest worker's calls over the "
        "average (1.00 is perfect).",
        "",
        "| workers | server | max/mean, time-averaged | max/mean, worst | calls dropped |",
        "|---|---|---|---|---|",
    ]
    for run in r["balance"]:
        lines.append(f"| {run['workers']} | {run['server']} | {run['max_over_mean_avg']:.2f} | "
                     f"{run['max_over_mean_worst']:.2f} | {run['closed_early']} |")
    lines += [
        "",
        "![balance](balance_4_workers.png)",
        "",
        f"## HTTP throughput ({base['workers']} workers = CPUs)",
        "",
        "wrk, 2 threads, 32 connections, 10 s, `GET /api/v1/worker`; our fleet through "
        "nginx, the peers direct, and gunicorn once more behind the same nginx. wrk runs "
        "on the same CPUs as the servers.",
        "",
        "| server | requests/s | ratio to uvicorn --workers | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    for run in r["throughput"]:
        lines.append(f"| {run['server']} | {run['rps']:.0f} | {run['rps'] / base['rps']:.2f} | "
                     f"{run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['non_2xx']} |")
    by = {run["server"]: run for run in r["throughput"]}
    ours, direct = by["dograh-systemd"], by["gunicorn"]
    proxied = by["gunicorn behind nginx"]
    lines += [
        "",
        f"`uvicorn --workers` answers each request after about {base['p50_ms']:.0f} ms, while "
        f"gunicorn on the same uvicorn code takes {direct['p50_ms']:.1f} ms: a stall of about "
        "40 ms per response (the length of a Linux delayed ACK), which a single uvicorn "
        "process does not have; so the ratio to it says little. Against gunicorn on the same "
        f"uvicorn, our fleet does {ours['rps'] / direct['rps']:.2f} of its requests direct "
        f"and {ours['rps'] / proxied['rps']:.2f} of them behind the same nginx: where the time "
        "goes is the nginx hop (on these 2 CPUs nginx, wrk and the workers share the cores), "
        "which the call balance needs; the worker runtime itself costs nothing measurable.",
    ]
    lines += [
        "",
        "![throughput](throughput.png)",
        "",
        "## Scale speed",
        "",
        "Medians of 3. The default example starts in a fraction of a second, almost all "
        f"of it CPU-bound Python imports: with {m['cpus']} CPUs four such starts cannot take "
        f"less than about {4 / m['cpus']:.0f} times one, and dograhctl's fixed share weighs "
        "heavily. The second column is the same app waiting 2 s while it starts (as one "
        "that connects to its databases or loads models does), where the parallel starts "
        "show.",
        "",
        "| what | example app (s) | / cold start | app with a 2 s startup (s) | / cold start |",
        "|---|---|---|---|---|",
    ]
    fast, slow = r["scale_speed"], r["scale_speed_slow_start"]
    for label, key in (("one worker, cold start to READY", "cold_start_s"),
                       ("four workers by systemd alone, in parallel", "four_parallel_s"),
                       ("four workers by systemd alone, one after another", "four_sequential_s"),
                       ("`dograhctl scale 2→6`, until all six are in nginx", "scale_2_to_6_s")):
        lines.append(f"| {label} | {fast[key]:.2f} | {fast[key] / fast['cold_start_s']:.2f} | "
                     f"{slow[key]:.2f} | {slow[key] / slow['cold_start_s']:.2f} |")
    lines += [
        "",
        f"dograhctl's own share (scale minus the parallel starts): "
        f"{fast['dograhctl_overhead_s']:.2f} s and {slow['dograhctl_overhead_s']:.2f} s: its "
        "start, the checks, `systemctl enable`, `nginx -t` and the reload.",
        "",
        "## Deploy cost",
        "",
        "Under load (30 requests/s, calls at 2/s lasting 8 s): what one code deploy loses.",
        "",
        "| way | deploy took (s) | calls | calls dropped | requests | requests failed |",
        "|---|---|---|---|---|---|",
    ]
    for run in r["deploy"]:
        lines.append(f"| {run['way']} | {run['deploy_s']:.1f} | {run['calls']} | "
                     f"{run['calls_dropped']} | {run['requests']} | {run['requests_failed']} |")
    mem = r["memory"]
    lines += [
        "",
        "![deploy](deploy.png)",
        "",
        "## Memory",
        "",
        f"RSS per worker after the same warm-up: ours {mem['ours_mib']:.1f} MiB, plain uvicorn "
        f"{mem['plain_uvicorn_mib']:.1f} MiB: overhead **{mem['overhead_mib']:.1f} MiB**.",
        "",
    ]
    return "\n".join(lines)


def write_capacity(results: dict[str, Any], out: Path) -> None:
    plot_capacity(results, out / "capacity.png")
    (out / "capacity.md").write_text(capacity_markdown(results))


def plot_capacity(results: dict[str, Any], path: Path) -> None:
    workers = sorted({run["workers"] for run in results["runs"]})
    fig, axes = plt.subplots(1, len(workers), figsize=(6 * len(workers), 4), sharey=True)
    for ax, count in zip(axes, workers, strict=True):
        for run in (r for r in results["runs"] if r["workers"] == count):
            steps = run["steps"]
            ax.plot([s["calls"] for s in steps], [max(s["lag_p95_ms"], 1) for s in steps],
                    marker="o", label=f"{run['server']} (knee {run['knee'] or 'none'})")
        ax.axhline(results["knee_ms"], color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent calls, each echoing every 5 s")
        ax.set_title(f"{count} workers", fontsize=10)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("event-loop lag p95 of the worst process (ms)")
    fig.suptitle(f"Capacity: loop lag as calls grow (knee: p95 stays above {results['knee_ms']} ms)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def capacity_markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = ["# Capacity benchmark", "",
             f"{results['date']}; {machine['cpus']} CPUs ({machine['cpu']}), "
             f"{machine['memory_gib']} GiB, kernel {machine['kernel']}, {machine['container']}. "
             "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(results["versions"].items()))
             + ".", "",
             "Calls are ramped in steps and stay up; each echoes a small message every 5 s "
             "(through nginx for dograh-systemd, straight to the server for the others). "
             "Every server process gets the open-file limit our API units have "
             "(LimitNOFILE=65536), the load generator its own hard limit. Lag is the "
             "p95 of the worst process's event-loop lag over 10 s; the knee is the first step "
             f"from which it stays above {results['knee_ms']} ms. Memory per call is the growth of the "
             "server processes' RSS divided by the calls held.", "",
             "| workers | server | calls held, 0 refused | knee | KB per call at the top "
             "| calls per worker at the top, max/mean | lag p95 (ms) at "
             + ", ".join(map(str, results["steps"])) + " calls |",
             "|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        top = run["steps"][-1]
        lags = " / ".join(str(s["lag_p95_ms"]) for s in run["steps"])
        lines.append(f"| {run['workers']} | {run['server']} | {run['held_without_refusal']} | "
                     f"{run['knee'] or 'not reached'} | {top['kb_per_call']} | "
                     f"{ramp.max_over_mean(run['final']['per_worker'])} | {lags} |")
    lines += ["", "What `dograhctl status` said this host holds, before each ramp of ours:", ""]
    lines += [f"- {run['workers']} workers: {run['ceiling']}" for run in results["runs"]
              if run.get("ceiling")]
    lines += ["", "![capacity](capacity.png)", ""]
    return "\n".join(lines)
