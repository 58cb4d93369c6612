"""Upstream weights that show nginx the calls it cannot count after a reload.

A reload starts nginx worker processes with zero least_conn counts; the calls
held by the previous generation stay invisible to them, so new calls would
spread evenly instead of filling the emptier workers first. Weighting each
worker by its spare room (from its own live call count) makes nginx send new
calls where there is room; once the fleet is even again, every weight is 1
and the upstream is plain least_conn.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_WEIGHT = 10
# Loads this close are even: least_conn keeps them so without help.
EVEN_SPREAD = 2
EVEN_FRACTION = 0.1


def weights(live_calls: Mapping[int, int]) -> dict[int, int]:
    """Weight per port: 1 for the busiest worker, up to MAX_WEIGHT for an idle one."""
    if not live_calls:
        return {}
    most, least = max(live_calls.values()), min(live_calls.values())
    if most - least <= max(EVEN_SPREAD, EVEN_FRACTION * most):
        return dict.fromkeys(live_calls, 1)
    return {port: 1 + round((MAX_WEIGHT - 1) * (most - calls) / most)
            for port, calls in live_calls.items()}


def is_even(port_weights: Mapping[int, int]) -> bool:
    return all(weight == 1 for weight in port_weights.values())
