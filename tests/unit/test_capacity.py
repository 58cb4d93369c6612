"""The call ceiling: the smallest limit wins, and only memory may bind without a warning."""

from __future__ import annotations

import pytest

from dograh_systemd.capacity import Ceiling


@pytest.mark.parametrize(("ceiling", "calls", "bound_by"), [
    (Ceiling(nginx=20_000, open_files=79_744, memory=5_800), 5_800, "memory"),
    (Ceiling(nginx=384, open_files=79_744, memory=90_000), 384, "nginx's connections"),
    (Ceiling(nginx=40_000, open_files=3_840, memory=90_000), 3_840,
     "the API workers' open files"),
    (Ceiling(nginx=None, open_files=3_840, memory=2_000), 2_000, "memory"),
])
def test_the_smallest_limit_is_the_ceiling(ceiling: Ceiling, calls: int, bound_by: str) -> None:
    assert ceiling.calls == calls
    assert ceiling.bound_by == bound_by
    assert ceiling.describe().startswith(f"about {calls} calls, bound by {bound_by} (")


def test_memory_binding_is_the_only_quiet_case() -> None:
    assert Ceiling(nginx=20_000, open_files=79_744, memory=5_800).short_of_memory is None
    assert "dograhctl render" in (
        Ceiling(nginx=384, open_files=79_744, memory=90_000).short_of_memory or "")
    assert "more API workers" in (
        Ceiling(nginx=40_000, open_files=3_840, memory=90_000).short_of_memory or "")
    assert Ceiling(nginx=None, open_files=3_840, memory=2_000).short_of_memory == \
        "systemctl start nginx"
