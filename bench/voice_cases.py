"""What the voice benchmark measures: one ramp per case, and which cases each part holds.

Pure: bench/voice.py runs the cases, bench/voice_report.py reads their rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

OURS = "dograh-systemd"
PEERS = ("uvicorn --workers", "gunicorn")
WORKERS = [2, 4]
START, FACTOR, LIMIT = 100, 1.25, 4000
# The app's CPU per frame received (ms), beside none: light work, and a voice bot's
# VAD, resampling and codec work on each 20 ms frame.
FRAME_CPU_MS = [0.2, 1.0]
# The hop's changes on our fleet at 2 workers on wss, between two ramps of it as shipped:
# the machine drifts, and the two say by how much.
AS_SHIPPED = ("as shipped", "as shipped, again")
CHANGES: dict[str, dict[str, Any]] = {
    AS_SHIPPED[0]: {},
    "nginx → workers over Unix sockets": {"unix": True},
    "nginx: 1 worker process": {"worker_processes": "1"},
    AS_SHIPPED[1]: {},
}
PARTS = ("side-by-side", "plain", "binary", "work", "hop")


@dataclass(frozen=True)
class Case:
    """One ramp: who serves, how it is reached, and what each frame carries and costs."""

    server: str
    workers: int
    tls: bool = True
    front: str = "direct"  # a peer straight, or behind our nginx ("nginx"); ours: nginx
    kind: str = "json"
    frame_cpu_ms: float = 0.0
    change: str = ""  # one of CHANGES, on our fleet

    @classmethod
    def of(cls, run: dict[str, Any]) -> Case:
        """The case a result row was measured for."""
        return cls(**{key: run[key] for key in cls.__dataclass_fields__})

    @property
    def label(self) -> str:
        how = "" if self.server == OURS else f", {self.front}"
        extra = "".join([f", {self.frame_cpu_ms:g} ms CPU a frame" if self.frame_cpu_ms else "",
                         f", {self.change}" if self.change else ""])
        return (f"{self.server}{how} N={self.workers} {'wss' if self.tls else 'ws'} "
                f"{self.kind}{extra}")

    @property
    def start(self) -> int:
        """Where the ramp starts: lower as the app's own work per frame grows."""
        return max(10, round(START / (1 + 5 * self.frame_cpu_ms) / 5) * 5)


def side_by_side_cases() -> list[Case]:
    """wss at 2 and 4 workers: ours, and each peer direct and behind our nginx."""
    return [case for workers in WORKERS for case in (
        Case(OURS, workers, front="nginx"),
        *(Case(peer, workers, front=front) for front in ("direct", "nginx") for peer in PEERS))]


def plain_cases() -> list[Case]:
    """ws:// at 2 workers, every side at its defaults, the peers direct."""
    return [Case(OURS, 2, tls=False, front="nginx"),
            *(Case(peer, 2, tls=False) for peer in PEERS)]


def best_peer(runs: list[dict[str, Any]], workers: int = 2) -> Case | None:
    """The peer with the highest wss knee on JSON frames at ``workers``, direct or behind
    nginx (one that never reached its knee beats every other)."""
    peers = [r for r in runs if r["server"] != OURS and r["tls"] and r["workers"] == workers
             and r["kind"] == "json" and not r["frame_cpu_ms"]]
    if not peers:
        return None
    best = max(peers, key=lambda r: r["knee"] or LIMIT + 1)
    return Case(best["server"], workers, front=best["front"])


def later_cases(part: str, runs: list[dict[str, Any]]) -> list[Case]:
    """Binary frames, the app's work per frame (ours and the best wss peer at 2 workers),
    and the hop's changes on our fleet."""
    ours = Case(OURS, 2, front="nginx")
    peer = best_peer(runs)
    if part == "hop":
        return [replace(ours, change=name) for name in CHANGES]
    if peer is None:
        raise SystemExit(f"bench.voice: --part {part} compares with the best wss peer: "
                         "measure --part side-by-side first")
    if part == "binary":
        return [replace(ours, kind="binary"), replace(peer, kind="binary")]
    return [replace(case, frame_cpu_ms=ms) for ms in FRAME_CPU_MS for case in (ours, peer)]


def cases(part: str, runs: list[dict[str, Any]]) -> list[Case]:
    if part == "side-by-side":
        return side_by_side_cases()
    if part == "plain":
        return plain_cases()
    return later_cases(part, runs)
