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
