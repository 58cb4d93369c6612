"""The figures the capacity and hosts benchmarks report from a ramp of calls."""

from __future__ import annotations

from bench import ramp


def steps(*lags: int, refused_at: int | None = None) -> list[dict[str, int]]:
    return [{"calls": 1000 * (i + 1), "held": 1000 * (i + 1) - (i == refused_at),
             "refused": int(i == refused_at), "lag_p95_ms": lag} for i, lag in enumerate(lags)]


def test_one_stall_is_not_the_knee() -> None:
    assert ramp.knee(steps(5, 600, 9, 12)) is None


def test_the_knee_is_where_the_lag_stays_high() -> None:
    assert ramp.knee(steps(5, 600, 60, 120)) == 2000
    assert ramp.knee(steps(5, 9, 12, 80)) == 4000
    assert ramp.knee(steps(80, 90)) == 1000


def test_held_is_the_largest_step_with_every_call_up() -> None:
    assert ramp.held_without_refusal(steps(1, 1, 1)) == 3000
    assert ramp.held_without_refusal(steps(1, 1, 1, refused_at=2)) == 2000
    assert ramp.held_without_refusal(steps(1, refused_at=0)) == 0


def test_max_over_mean_is_the_busiest_worker_over_an_even_share() -> None:
    assert ramp.max_over_mean({"a": 2000, "b": 2000}) == "1.00"
    assert ramp.max_over_mean({"a": 3000, "b": 1000}) == "1.50"
    assert ramp.max_over_mean({}) == "-"
