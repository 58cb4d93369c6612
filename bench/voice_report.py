"""bench/results/voice.md and voice.png from the voice benchmark's rows (voice.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ramp
from .voice_cases import AS_SHIPPED, OURS, Case

CPU_GROUPS = ("nginx", "workers", "load")
# Where the hop stops mattering: nginx's share of what a call costs the server side.
SMALL_SHARE = 0.10
HEADER = ("| workers | server | reached | knee (calls) | knee ÷ best peer's | calls carried | "
          "RTT p50 / p99 at carried (ms) | late frames there | loop lag p95 there (ms) | "
          "calls per worker there, max/mean | CPUs per 1,000 calls: nginx / workers / load | "
          "other work on the machine before (CPUs) |")
RULE = "|---|---|---|---|---|---|---|---|---|---|---|---|"


def write(results: dict[str, Any], out: Path) -> None:
    if results.get("runs"):
        plot(results, out / "voice.png")
    (out / "voice.md").write_text(markdown(results))


# -- the rows ------------------------------------------------------------------------

def rows_of(runs: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    """The runs whose case has these fields (defaults for the rest of tls, kind, frame
    CPU and change)."""
    want = {"tls": True, "kind": "json", "frame_cpu_ms": 0.0, "change": "", **match}
    return [r for r in runs if all(r[key] == value for key, value in want.items())]


def best_of_peers(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    peers = [r for r in runs if r["server"] != OURS and r["knee"]]
    return max(peers, key=lambda r: r["knee"]) if peers else None


def ours_in(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in runs if r["server"] == OURS), None)


def reached(run: dict[str, Any]) -> str:
    return "nginx TLS" if run["front"] == "nginx" and run["tls"] else \
        "nginx" if run["front"] == "nginx" else "own TLS" if run["tls"] else "direct"


def name(run: dict[str, Any]) -> str:
    return f"{run['server']} ({reached(run)})"


def server_cpu(run: dict[str, Any]) -> float | None:
    """What a call costs the server side per 1,000 calls: nginx and the workers."""
    per = run["cpu_per_1000"]
    if per.get("workers") is None:
        return None
    return (per.get("nginx") or 0) + per["workers"]


def hop_share(run: dict[str, Any]) -> float | None:
    """nginx's share of what a call costs the server side (TLS and the hop)."""
    total = server_cpu(run)
    nginx = run["cpu_per_1000"].get("nginx")
    return nginx / total if total and nginx is not None else None


def carried_point(run: dict[str, Any]) -> dict[str, Any] | None:
    """The point at the most calls carried (the latest, if measured twice)."""
    chosen = [p for p in run["points"] if p["calls"] == run["carried"]
              and not ramp.frames_fail(p)]
    return chosen[-1] if chosen else None


def latest_per_count(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per number of calls, the last measured (a re-measure afresh wins),
    in order of calls."""
    return sorted({p["calls"]: p for p in points}.values(), key=lambda p: p["calls"])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _cpu(values: dict[str, float | None]) -> str:
    return " / ".join("-" if values.get(g) is None else f"{values[g]:.2f}" for g in CPU_GROUPS)


def _ratio(run: dict[str, Any], best: dict[str, Any] | None) -> str:
    return f"{run['knee'] / best['knee']:.2f}" if run["knee"] and best else "-"


# -- the page ------------------------------------------------------------------------

def table(runs: list[dict[str, Any]]) -> list[str]:
    """One row a run, each knee over the best peer's at its worker count."""
    lines = [HEADER, RULE]
    for workers in sorted({r["workers"] for r in runs}):
        here = [r for r in runs if r["workers"] == workers]
        best = best_of_peers(here)
        for run in here:
            at = carried_point(run) or {}
            lines.append(
                f"| {workers} | {run['server']} | {reached(run)} | "
                f"{run['knee'] or 'not reached'} | {_ratio(run, best)} | {run['carried']} | "
                f"{_ms(at.get('rtt_p50_ms'))} / {_ms(at.get('rtt_p99_ms'))} | "
                f"{at.get('late', '-')} | {_ms(at.get('lag_p95_ms'))} | "
                f"{at.get('balance') or '-'} | {_cpu(run['cpu_per_1000'])} | "
                f"{run.get('busy_before', '-')} |")
    return [*lines, ""]


def against_best(label: str, runs: list[dict[str, Any]]) -> str | None:
    ours, best = ours_in(runs), best_of_peers(runs)
    if not ours or not ours["knee"] or not best:
        return None
    line = (f"- {label}: our knee **{ours['knee']}** calls, **{ours['knee'] / best['knee']:.2f}"
            f" times** the best peer's ({name(best)}, {best['knee']}).")
    if server_cpu(ours) and server_cpu(best):
        line += (f" A call costs the server side {server_cpu(ours):.2f} CPUs per 1,000 through "
                 f"us, {server_cpu(best):.2f} on {best['server']}; nginx's part "
                 f"({'TLS and the hop' if ours['tls'] else 'the hop'}) is "
                 f"{ours['cpu_per_1000']['nginx']:.2f}.")
    return line


def work_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours and the peer measured with the app's work per frame, and their rows at none."""
    worked = [r for r in runs if r["frame_cpu_ms"] and r["kind"] == "json" and not r["change"]]
    servers = {(r["server"], r["front"]) for r in worked}
    plain = [r for r in rows_of(runs, workers=2) if (r["server"], r["front"]) in servers]
    return sorted([*plain, *worked], key=lambda r: (r["frame_cpu_ms"], r["server"] != OURS))


def work_lines(runs: list[dict[str, Any]]) -> list[str]:
    rows = work_rows(runs)
    if not any(r["frame_cpu_ms"] for r in rows):
        return []
    lines = ["## The app's own work per frame", "",
             "The same wss ramp at 2 workers, with the app doing this much CPU work on its "
             "loop for every frame it receives (bench/lagapp.py, `BENCH_FRAME_CPU_MS`: a "
             "voice bot's VAD, resampling and codec work). nginx's share is its CPU over what a "
             "call costs the server side (nginx and the workers; the load generator is the "
             "callers).", "",
             "| CPU a frame (ms) | server | knee (calls) | ours ÷ the peer's | CPUs per 1,000 "
             "calls: nginx / workers / load | nginx's share of the server side |",
             "|---|---|---|---|---|---|"]
    for ms in sorted({r["frame_cpu_ms"] for r in rows}):
        here = [r for r in rows if r["frame_cpu_ms"] == ms]
        ours, peer = ours_in(here), best_of_peers(here)
        for run in here:
            share = hop_share(run) if run["server"] == OURS else None
            ratio = _ratio(run, peer) if run is ours else "-"
            lines.append(f"| {ms:g} | {name(run)} | {run['knee'] or 'not reached'} | {ratio} | "
                         f"{_cpu(run['cpu_per_1000'])} | "
                         f"{'-' if share is None else f'{share:.0%}'} |")
    return [*lines, ""]


def work_summary(runs: list[dict[str, Any]]) -> str | None:
    ours = [r for r in work_rows(runs) if r["server"] == OURS and hop_share(r) is not None]
    if len(ours) < 2:
        return None
    said = "; ".join(f"{r['frame_cpu_ms']:g} ms: {hop_share(r):.0%}" for r in ours)
    small = next((r for r in ours if hop_share(r) < SMALL_SHARE), None)  # type: ignore[operator]
    where = (f"under {SMALL_SHARE:.0%} from {small['frame_cpu_ms']:g} ms of the app's CPU a "
             "frame" if small else f"above {SMALL_SHARE:.0%} at every work measured")
    return f"- nginx's share of a call's server-side CPU, by the app's work a frame: {said}; {where}."


def hop_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Each change on our fleet against the mean of the two ramps as shipped around it."""
    changed = [r for r in runs if r["change"]]
    if not changed:
        return []
    shipped = [r["knee"] for r in changed if r["change"] in AS_SHIPPED and r["knee"]]
    base = sum(shipped) / len(shipped) if len(shipped) == len(AS_SHIPPED) else None
    began = sorted(r["began"] for r in changed if r.get("began"))
    lines = ["## Making the hop cheaper, on TLS", "",
             (f"Measured from {began[0]}: our" if began else "Our")
             + " fleet at 2 workers on wss, one change at a time, each patched inside the "
             "benchmark container only, between two ramps of it as shipped (the machine "
             "drifts: the two say by how much); each knee over their mean. A change the "
             "package takes must move the knee by 5 % or more.", "",
             "| change | knee (calls) | ÷ as shipped | calls carried | CPUs per 1,000 "
             "calls: nginx / workers / load |", "|---|---|---|---|---|"]
    for run in changed:
        ratio = f"{run['knee'] / base:.2f}" if run["knee"] and base else "-"
        lines.append(f"| {run['change']} | {run['knee'] or 'not reached'} | {ratio} | "
                     f"{run['carried']} | {_cpu(run['cpu_per_1000'])} |")
    if base is None:
        lines += ["", "This part stopped before its end: without both ramps as shipped the "
                      "machine's drift is unknown, and no change is kept."]
    return [*lines, ""]


def steps(run: dict[str, Any]) -> list[str]:
    lines = [f"<details><summary>{Case.of(run).label}: every step</summary>", "",
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


def ciphers(runs: list[dict[str, Any]]) -> str:
    seen = sorted({f"{p['cipher']} ({name(r)})" for r in runs for p in r["points"][:1]
                   if p.get("cipher")})
    return "; ".join(seen)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    runs = results.get("runs", [])
    wss = rows_of(runs)
    plain = rows_of(runs, tls=False)
    binary = rows_of(runs, kind="binary")
    lines = [
        "# Voice traffic", "",
        f"{results['date']}; {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, kernel "
        f"{m['kernel']}, {m['container']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(results["versions"].items())) + ". One run, "
        "side by side, on a shared machine: read ratios, not absolute figures.", "",
        "Every call is a WebSocket to the app's `/api/v1/media`, which answers frame for "
        "frame: a 20 ms frame each way, 50 a second, as a telephony media stream carries "
        "(Twilio's JSON `media` event with 160 bytes of μ-law in base64, 0.3 KB; or the same "
        "160 bytes as a binary frame). On `wss://`, as Twilio and browsers speak it, every "
        "side serves the same certificate (the one the package makes, `DOGRAH_TLS=self-signed`)"
        ": our fleet through its nginx; `uvicorn --workers` (`--ssl-*`) and gunicorn with "
        "uvicorn workers (`--certfile`) each with their own TLS, and each behind the same "
        "nginx TLS front door, one upstream with accept() balancing behind it. All run the "
        "same app (bench/lagapp.py, the example app plus its loop lag) on the same uvicorn, "
        "uvloop and FastAPI, and the load generator (bench/voicegen.py) runs on the same CPUs "
        "as the servers. TLS chosen: " + (ciphers(runs) or "-") + ".", "",
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
    short = [against_best(f"wss, {w} workers", rows_of(runs, workers=w))
             for w in sorted({r["workers"] for r in wss})]
    short += [against_best(f"ws:// at {w} workers, every side at its defaults, the peers "
                           "direct", rows_of(runs, tls=False, workers=w))
              for w in sorted({r["workers"] for r in plain})]
    short += [against_best("binary frames on wss, 2 workers", binary), work_summary(runs)]
    said = [line for line in short if line]
    if said:
        lines += ["## In short", "", *said, ""]
    if wss:
        lines += ["## wss:// side by side, Twilio-style JSON frames", "", *table(wss),
                  "![voice](voice.png)", ""]
    if plain:
        lines += ["## Plain ws://", "", *table(plain)]
    if binary:
        lines += ["## Binary frames on wss:// (160 bytes of μ-law)", "", *table(binary)]
    lines += work_lines(runs)
    lines += hop_lines(runs)
    if runs:
        lines += ["## Every step", ""]
        for run in runs:
            lines += steps(run)
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """The frame round trip as wss calls grow, at each worker count, and nginx's share
    of a call's CPU as the app's own work per frame grows."""
    # Only the plot needs matplotlib (the bench extra): the page and its tests do not.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    wss = rows_of(runs)
    workers = sorted({r["workers"] for r in wss})
    fig, axes = plt.subplots(1, len(workers) + 1, figsize=(6 * (len(workers) + 1), 4.8),
                             squeeze=False)
    for column, count in enumerate(workers):
        ax = axes[0][column]
        for run in (r for r in wss if r["workers"] == count):
            points = latest_per_count(run["points"])
            ax.plot([p["calls"] for p in points],
                    [max(p["rtt_p99_ms"] or 1000, 0.5) for p in points], marker="o",
                    markersize=3, label=f"{name(run)} (knee {run['knee'] or 'none'})")
        ax.axhline(results["late_ms"], color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent wss calls, 50 frames/s each way")
        ax.set_ylabel("frame round trip p99 (ms)")
        ax.set_title(f"{count} workers", fontsize=10)
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    ours = [r for r in work_rows(runs) if r["server"] == OURS and hop_share(r) is not None]
    ax.plot([r["frame_cpu_ms"] for r in ours], [100 * hop_share(r) for r in ours],  # type: ignore[operator]
            marker="o", label="nginx's share of a call's server-side CPU")
    ax.axhline(100 * SMALL_SHARE, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("the app's CPU per 20 ms frame (ms)")
    ax.set_ylabel("%")
    ax.set_title("our fleet, 2 workers, wss", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle("Voice traffic on wss://: frame round trip as calls grow\n"
                 f"(knee: p99 above {results['late_ms']} ms or frames lost)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
