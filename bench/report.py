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


# -- voice traffic ----------------------------------------------------------------------

CPU_GROUPS = ("nginx", "workers", "load")


def write_voice(results: dict[str, Any], out: Path) -> None:
    if results.get("runs"):
        plot_voice(results, out / "voice.png")
    (out / "voice.md").write_text(voice_markdown(results))


def carried_point(run: dict[str, Any]) -> dict[str, Any] | None:
    """The point at the most calls carried (the latest, if measured twice)."""
    chosen = [p for p in run["points"] if p["calls"] == run["carried"]
              and not ramp.frames_fail(p)]
    return chosen[-1] if chosen else None


def plot_voice(results: dict[str, Any], path: Path) -> None:
    runs = [r for r in results["runs"] if r["kind"] == "json"]
    workers = sorted({r["workers"] for r in runs})
    fig, axes = plt.subplots(2, len(workers), figsize=(6 * len(workers), 7.5), squeeze=False)
    for column, count in enumerate(workers):
        top, bottom = axes[0][column], axes[1][column]
        chosen = [r for r in runs if r["workers"] == count]
        for run in chosen:
            points = latest_per_count(run["points"])
            top.plot([p["calls"] for p in points],
                     [max(p["rtt_p99_ms"] or 1000, 0.5) for p in points], marker="o",
                     markersize=3, label=f"{run['server']} (knee {run['knee'] or 'none'})")
        top.axhline(results["late_ms"], color="grey", linestyle="--", linewidth=1)
        top.set_yscale("log")
        top.set_xlabel("concurrent calls, 50 frames/s each way")
        top.set_ylabel("frame round trip p99 (ms)")
        top.set_title(f"{count} workers", fontsize=10)
        top.legend(fontsize=8)
        names = [r["server"] for r in chosen]
        bottom_of = [0.0] * len(chosen)
        for group in CPU_GROUPS:
            values = [r["cpu_per_1000"].get(group) or 0 for r in chosen]
            bottom.bar(names, values, bottom=bottom_of, label=group)
            bottom_of = [a + b for a, b in zip(bottom_of, values, strict=True)]
        bottom.set_ylabel("CPUs per 1,000 calls")
        bottom.set_title("where the CPU goes, below the knee", fontsize=10)
        bottom.legend(fontsize=8)
        bottom.tick_params(axis="x", labelsize=8)
    fig.suptitle("Voice traffic: frame round trip as calls grow\n"
                 f"(knee: p99 above {results['late_ms']} ms or frames lost)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latest_per_count(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per number of calls, the last measured (a re-measure afresh wins),
    in order of calls."""
    return sorted({p["calls"]: p for p in points}.values(), key=lambda p: p["calls"])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _cpu(values: dict[str, float | None]) -> str:
    return " / ".join("-" if values.get(g) is None else f"{values[g]:.2f}" for g in CPU_GROUPS)


def voice_rows(runs: list[dict[str, Any]], ratio_to: dict[int, int | None]) -> list[str]:
    rows = []
    for run in runs:
        at = carried_point(run) or {}
        best = ratio_to.get(run["workers"])
        ratio = f"{run['knee'] / best:.2f}" if run["knee"] and best else "-"
        rows.append(f"| {run['workers']} | {run['server']} | {run['knee'] or 'not reached'} | "
                    f"{ratio} | {run['carried']} | {_ms(at.get('rtt_p50_ms'))} / "
                    f"{_ms(at.get('rtt_p99_ms'))} | {at.get('late', '-')} | "
                    f"{_ms(at.get('lag_p95_ms'))} | {at.get('balance') or '-'} | "
                    f"{_cpu(at.get('cpu', {}))} | "
                    f"{_cpu(run['cpu_per_1000'])} |")
    return rows


def best_peer_knees(runs: list[dict[str, Any]]) -> dict[int, int | None]:
    best: dict[int, int | None] = {}
    for run in runs:
        if run["server"] != "dograh-systemd" and run["knee"]:
            best[run["workers"]] = max(best.get(run["workers"]) or 0, run["knee"])
    return best


def voice_steps(run: dict[str, Any]) -> list[str]:
    lines = [f"<details><summary>{run.get('variant') or run['server']}, {run['workers']} "
             f"workers, {run['kind']} frames: every step</summary>", "",
             "| calls | held | RTT p50 / p99 / max (ms) | late | lost | calls hurt | "
             "loop lag p95 (ms) | calls per worker, max/mean | client lag p99 (ms) | "
             "CPU nginx / workers / load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in run["points"]:
        lines.append(f"| {p['calls']}{' (afresh)' if p.get('fresh') else ''}"
                     f"{' ✗' if ramp.frames_fail(p) else ''} | {p['held']} | "
                     f"{_ms(p['rtt_p50_ms'])} / {_ms(p['rtt_p99_ms'])} / {_ms(p['rtt_max_ms'])} | "
                     f"{p['late']} | {p['lost']} | {p['hurt']} | {_ms(p.get('lag_p95_ms'))} | "
                     f"{p.get('balance') or '-'} | {_ms(p['client_lag_p99_ms'])} | "
                     f"{_cpu(p['cpu'])} |")
    return [*lines, "", "</details>", ""]


def voice_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    runs = results.get("runs", [])
    json_runs = [r for r in runs if r["kind"] == "json"]
    binary_runs = [r for r in runs if r["kind"] == "binary"]
    header = ("| workers | server | knee (calls) | knee ÷ best peer's | calls carried | "
              "RTT p50 / p99 at carried (ms) | late frames there | loop lag p95 there (ms) | "
              "calls per worker there, max/mean | CPU there: nginx / workers / load | "
              "CPUs per 1,000 calls: nginx / workers / load |")
    lines = [
        "# Voice traffic", "",
        f"{results['date']}; {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, kernel "
        f"{m['kernel']}, {m['container']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(results["versions"].items())) + ". One run, "
        "side by side, on a shared machine: read ratios, not absolute figures.", "",
        "Every call is a WebSocket to the app's `/api/v1/media`, which answers frame for "
        "frame: a 20 ms frame each way, 50 a second, as a telephony media stream carries "
        "(Twilio's JSON `media` event with 160 bytes of μ-law in base64, 0.3 KB; or the same "
        "160 bytes as a binary frame). Our fleet is reached through its nginx, the peers "
        "directly; all run the same app (bench/lagapp.py, the example app plus its loop "
        "lag) on the same uvicorn and FastAPI, and the load generator (bench/voicegen.py) "
        "runs on the same CPUs as the servers.", "",
        f"Calls are added in steps and stay up; at each step, after {results['settle_s']} s, "
        f"a {results['window_s']} s window measures the frames sent in it: the round trip "
        "from when the frame was due (so a client too busy to send on time shows too), frames "
        f"late (echo after {results['late_ms']} ms) and lost (no echo within 1 s), the worst "
        "server process's loop-lag p95, and the CPU of every process (nginx, the API "
        "workers, the load generator; on loopback the kernel's work for a message is "
        "mostly charged to its sender). **The knee** is the fewest calls whose frames come "
        f"back later than {results['late_ms']} ms at p99, or are lost, or whose calls are "
        "refused or dropped, there and at every step above; a failing step is measured "
        "once more afresh (all calls hung up and called again) before it counts, and the "
        "gap to the last good step is then halved (three times at most) until it is within "
        "3 %. **Calls carried** is the last good step below the knee. CPU per 1,000 calls "
        "is each part's CPU over the calls held, the median over the good steps from half "
        "the calls carried up.", "",
    ]
    lines += voice_summary(results)
    if json_runs:
        best = best_peer_knees(json_runs)
        lines += ["## Side by side, Twilio-style JSON frames", "", header,
                  "|---|---|---|---|---|---|---|---|---|---|---|", *voice_rows(json_runs, best), "",
                  "![voice](voice.png)", ""]
        lines += voice_hop_share(json_runs)
    if binary_runs:
        lines += ["## Binary frames (160 bytes of μ-law)", "", header,
                  "|---|---|---|---|---|---|---|---|---|---|---|",
                  *voice_rows(binary_runs, best_peer_knees(binary_runs)), ""]
        for run in binary_runs:
            same = next((r for r in json_runs if (r["server"], r["workers"])
                         == (run["server"], run["workers"])), None)
            if same and same["knee"] and run["knee"]:
                lines += [f"{run['server']}, {run['workers']} workers: the knee on binary "
                          f"frames is {run['knee'] / same['knee']:.2f} times the knee on "
                          "Twilio's JSON.", ""]
    hop = results.get("hop", [])
    if hop:
        lines += voice_hop(hop, results.get("hop_date"))
    if runs or hop:
        lines += ["## Every step", ""]
        for run in [*runs, *hop]:
            lines += voice_steps(run)
    return "\n".join(lines) + "\n"


def voice_summary(results: dict[str, Any]) -> list[str]:
    """The figures the done-when list asks for, in a few lines."""
    lines = []
    for kind in ("json", "binary"):
        runs = [r for r in results.get("runs", []) if r["kind"] == kind]
        for workers in sorted({r["workers"] for r in runs}):
            here = [r for r in runs if r["workers"] == workers]
            ours = next((r for r in here if r["server"] == "dograh-systemd"), None)
            peers = [r for r in here if r["server"] != "dograh-systemd" and r["knee"]]
            if not ours or not ours["knee"] or not peers:
                continue
            peer = max(peers, key=lambda r: r["knee"])
            cost = {r["server"]: sum(r["cpu_per_1000"].get(g) or 0 for g in CPU_GROUPS)
                    for r in (ours, peer)}
            nginx = ours["cpu_per_1000"].get("nginx") or 0
            line = (f"- {kind} frames, {workers} workers: our knee **{ours['knee']}** calls, "
                    f"**{ours['knee'] / peer['knee']:.2f} times** the best peer's "
                    f"({peer['server']}, {peer['knee']}).")
            if all(cost.values()):  # the CPU was read at enough steps below both knees
                line += (f" A call costs {cost['dograh-systemd']:.2f} CPUs per 1,000 through "
                         f"us, {cost[peer['server']]:.2f} direct; nginx's part is {nginx:.2f} "
                         f"({nginx / cost['dograh-systemd']:.0%}): on CPU alone we would carry "
                         f"{cost[peer['server']] / cost['dograh-systemd']:.2f} times its calls.")
            lines.append(line)
    hop = results.get("hop", [])
    base = next((r for r in hop if r.get("variant") == "baseline"), None)
    if base and base["knee"]:
        moved = [f"{r['variant']} {r['knee'] / base['knee'] - 1:+.0%}" for r in hop
                 if not r["variant"].startswith(("baseline", "best peer")) and r["knee"]]
        lines.append("- Changes tried on our fleet (2 workers, knee against the baseline in the "
                     "same run): " + "; ".join(moved) + ".")
        lines += hop_against_peer(hop, base)
    return ["## In short", "", *lines, ""] if lines else []


def hop_against_peer(hop: list[dict[str, Any]], base: dict[str, Any]) -> list[str]:
    """Our fleet against the best peer re-measured in the hop's own run: the baseline
    against the peer at its defaults, the winners against the peer on the same uvicorn
    settings."""
    def run(prefix: str) -> dict[str, Any] | None:
        return next((r for r in hop if r["variant"].startswith(prefix) and r["knee"]), None)

    pairs = [(base, run("best peer, same run")),
             (run("the winners together"), run("best peer, same uvicorn settings"))]
    said = [f"{ours['variant']} {ours['knee']} ÷ {peer['variant']} {peer['knee']} = "
            f"**{ours['knee'] / peer['knee']:.2f}**" for ours, peer in pairs if ours and peer]
    return [f"- In that run: {'; '.join(said)}."] if said else []


def voice_hop_share(runs: list[dict[str, Any]]) -> list[str]:
    """What the nginx hop takes of the CPU per call."""
    lines = []
    for run in runs:
        if run["server"] != "dograh-systemd":
            continue
        per = run["cpu_per_1000"]
        if not all(per.get(g) for g in CPU_GROUPS):
            continue
        total = sum(per[g] for g in CPU_GROUPS)
        lines.append(f"- {run['workers']} workers: nginx takes {per['nginx']:.2f} CPUs per "
                     f"1,000 calls, {per['nginx'] / total:.0%} of all the CPU a call costs "
                     f"on this machine ({per['nginx'] / per['workers']:.0%} of what the API "
                     f"workers take for the same frames).")
    if not lines:
        return []
    return ["**What the hop takes.** Per 1,000 calls (100,000 frames a second through "
            "nginx and back):", "", *lines, ""]


def voice_hop(hop: list[dict[str, Any]], date: str | None) -> list[str]:
    base = next((r for r in hop if r.get("variant") == "baseline"), None)
    base_knee = base["knee"] if base else None
    lines = ["## Making the hop cheaper", "",
             (f"Measured {date}: our" if date else "Our") +
             " fleet at 2 workers, Twilio-style frames, one change at a time, each "
             "patched inside the benchmark container only, against the baseline measured in "
             "the same run; a change that moves the knee up by 5 % or more is kept, and the "
             "ones kept are measured together. uvloop is installed in the venv for this part, "
             "so every run names its loop (asyncio unless the change says otherwise); the "
             "best peer is measured again in the same run, at its defaults and with the same "
             "uvicorn settings as ours.", "",
             "| change | knee (calls) | ÷ baseline | calls carried | CPUs per 1,000 calls: "
             "nginx / workers / load |", "|---|---|---|---|---|"]
    for run in hop:
        ratio = f"{run['knee'] / base_knee:.2f}" if run["knee"] and base_knee else "-"
        lines.append(f"| {run['variant']} | {run['knee'] or 'not reached'} | {ratio} | "
                     f"{run['carried']} | {_cpu(run['cpu_per_1000'])} |")
    if not any(run.get("variant") == "baseline, again" for run in hop):
        lines += ["", "This part stopped before its end: the changes after the last row were "
                      "not measured, and without the second baseline the machine's drift "
                      "during the part is unknown, so no change is kept."]
    return [*lines, ""]
