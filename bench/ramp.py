"""What a ramp of held calls shows: how many were held, and where the loops fell behind.

Each step is a dict with ``calls`` (asked), ``held``, ``refused`` and
``lag_p95_ms`` (the worst server process's loop-lag p95 at that step).
"""

from __future__ import annotations

from typing import Any

# Loop lag above this is felt on a call: audio frames arrive late.
KNEE_MS = 50


def held_without_refusal(steps: list[dict[str, Any]]) -> int:
    """The largest step at which every call asked for was up and none refused."""
    return max((s["calls"] for s in steps if s["refused"] == 0 and s["held"] == s["calls"]),
               default=0)


def knee(steps: list[dict[str, Any]]) -> int | None:
    """The first step from which the lag p95 stays above KNEE_MS at every later step:
    a lasting slowdown, not one stall of one loop at one step."""
    for index, step in enumerate(steps):
        if all(later["lag_p95_ms"] > KNEE_MS for later in steps[index:]):
            return step["calls"]
    return None


def max_over_mean(per_worker: dict[str, int]) -> str:
    """How far the busiest worker is above an even share: 1.00 is perfectly even."""
    counts = list(per_worker.values())
    return f"{max(counts) / (sum(counts) / len(counts)):.2f}" if counts else "-"


# -- voice traffic: every call streams a 20 ms frame each way ---------------------------
#
# Each point is a dict with ``calls`` (asked), ``held``, ``rtt_p99_ms`` (the
# frames' round trip), ``lost`` (frames with no echo within 1 s) and
# ``dropped`` (calls cut, by reason).

# A frame back later than this misses a jitter buffer's usual depth: the caller hears it.
FRAME_LATE_MS = 60


def frames_fail(point: dict[str, Any]) -> bool:
    """A point where calls are not carried: frames late at p99, or lost, or a call
    refused or dropped."""
    p99 = point["rtt_p99_ms"]
    return (p99 is None or p99 > FRAME_LATE_MS or point["lost"] > 0
            or point["held"] < point["calls"] or bool(point["dropped"]))


def frame_knee(points: list[dict[str, Any]]) -> int | None:
    """The fewest calls at which frames failed and failed at every point with as many
    calls or more: a lasting limit, not one noisy window."""
    for calls in sorted({p["calls"] for p in points if frames_fail(p)}):
        if all(frames_fail(p) for p in points if p["calls"] >= calls):
            return calls
    return None


def frames_carried(points: list[dict[str, Any]]) -> int:
    """The most calls carried below the knee (every point at that count passed)."""
    knee = frame_knee(points)
    passed = {p["calls"] for p in points if not frames_fail(p)}
    failed = {p["calls"] for p in points if frames_fail(p)}
    return max((c for c in passed - failed if knee is None or c < knee), default=0)


def nice(calls: float) -> int:
    """Two significant digits, so that steps read well in a table."""
    digits = max(0, len(str(int(calls))) - 2)
    return int(calls / 10**digits + 0.5) * 10**digits


def next_step(calls: int, factor: float) -> int:
    """The next step of a ramp: about ``factor`` times as many calls."""
    return max(calls + 1, nice(calls * factor))


def between(good: int, bad: int, resolution: float = 0.03) -> int | None:
    """A step halfway between a point that passed and one that failed, or None once
    they are within ``resolution`` (a fraction of ``bad``) or one call of each other."""
    if bad - good <= max(1, resolution * bad):
        return None
    for middle in (nice((good + bad) / 2), (good + bad) // 2):
        if good < middle < bad:
            return middle
    return None


def per_thousand(points: list[dict[str, Any]], group: str) -> float | None:
    """CPUs a group uses per 1,000 calls, where it matters: the median of its CPU over
    the calls held, at the points that carried their calls with at least half as many
    as the most carried (a fixed cost such as an idle loop's ticks weighs little
    there, and past the knee the CPU is capped)."""
    top = frames_carried(points)
    ratios = sorted(p["cpu"].get(group, 0.0) * 1000 / p["held"] for p in points
                    if not frames_fail(p) and p["held"] and p["held"] >= top / 2)
    if not ratios:
        return None
    middle = len(ratios) // 2
    median = ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2
    return round(median, 3)


def calls_per_host(runs: list[dict[str, Any]]) -> int | None:
    """One worker host's share of the knee, averaged over the host counts measured
    (``hosts`` and ``knee`` in each run)."""
    shares = [run["knee"] / run["hosts"] for run in runs if run["knee"]]
    return round(sum(shares) / len(shares)) if shares else None


def hosts_per_edge(edge_cpu_per_1000: float | None, per_host: int | None,
                   edge_cpus: float) -> float | None:
    """Worker hosts an edge of ``edge_cpus`` keeps up with before its nginx is at full
    CPU: the calls its CPUs relay over the calls one worker host carries."""
    if not edge_cpu_per_1000 or not per_host:
        return None
    return round(edge_cpus * 1000 / edge_cpu_per_1000 / per_host, 1)
