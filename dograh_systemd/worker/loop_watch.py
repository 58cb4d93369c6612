"""The event loop's health: its lag as a load signal, and its stack when it stalls.

The heartbeat on the loop records how late each of its wake-ups comes. A
helper thread watches the heartbeat: when the loop has not run for a third of
WatchdogSec, the thread writes the loop thread's stack and
every other thread's to stderr (the journal), from an ordinary thread, well
before systemd's watchdog fires. A process frozen whole (SIGSTOP) runs no
thread at all; for it, the watchdog's SIGABRT is caught by a Python-level
handler, which writes the same stacks when the process runs again, then
aborts. Neither reads frames from inside a C signal handler, which under
uvloop can crash before printing anything.
"""

from __future__ import annotations

import bisect
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from types import FrameType
from typing import TextIO

from . import contract

LAG_WINDOW = 10.0


class LoopLag:
    """Lag of the loop's wake-ups over the last ``LAG_WINDOW`` seconds.

    Each sample counts for as long as the time it covers, so the p95 says how
    late the loop answers at 95 % of moments: a loop blocked 200 ms every
    second shows it, not only the rare tick that met the block.
    """

    def __init__(self, window: float = LAG_WINDOW) -> None:
        self.window = window
        self.samples: deque[tuple[float, float, float]] = deque()  # (at, covers, lag)

    def add(self, at: float, covers: float, lag: float) -> None:
        self.samples.append((at, covers, max(0.0, lag)))
        while self.samples and self.samples[0][0] < at - self.window:
            self.samples.popleft()

    def p95_ms(self) -> int:
        if not self.samples:
            return 0
        ordered = sorted((lag, covers) for _, covers, lag in self.samples)
        cumulative = []
        total = 0.0
        for _, covers in ordered:
            total += covers
            cumulative.append(total)
        index = min(bisect.bisect_left(cumulative, 0.95 * total), len(ordered) - 1)
        return round(ordered[index][0] * 1000)


def stacks(loop_thread: int, loop_frame: FrameType | None = None) -> str:
    """The loop thread's stack first, then every other thread's."""
    frames = sys._current_frames()
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    lines = ["Stack of the event loop thread (most recent call last):\n"]
    lines += traceback.format_stack(loop_frame or frames.get(loop_thread))
    for ident, frame in frames.items():
        if ident not in (loop_thread, threading.get_ident()):
            lines.append(f"Thread {names.get(ident, ident)} (most recent call last):\n")
            lines += traceback.format_stack(frame)
    return "".join(lines)


class StallWatch:
    """A helper thread that writes the loop's stack once per stall."""

    def __init__(self, loop_thread: int, watchdog: float, stream: TextIO = sys.stderr) -> None:
        self.loop_thread = loop_thread
        self.stream = stream
        self.watchdog = watchdog
        self.after = max(1.0, watchdog * contract.STALL_REPORT_FRACTION)
        self.last_beat = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        reported = False
        while not self._stop.wait(self.after / 5):
            stalled = time.monotonic() - self.last_beat
            if stalled < self.after:
                reported = False
            elif not reported:
                reported = True
                self.stream.write(f"Event loop stalled: it has not run for {stalled:.1f}s "
                                  "(systemd's watchdog restarts the worker after "
                                  f"{self.watchdog:g}s)\n"
                                  + stacks(self.loop_thread))
                self.stream.flush()


def write_stacks_on_abort(loop_thread: int, stream: TextIO = sys.stderr) -> None:
    """On the watchdog's SIGABRT, write the stacks from Python, then abort for real."""
    def handler(signum: int, frame: FrameType | None) -> None:
        stream.write("Watchdog timeout: systemd sent SIGABRT\n" + stacks(loop_thread, frame))
        stream.flush()
        signal.signal(signal.SIGABRT, signal.SIG_DFL)
        os.abort()

    signal.signal(signal.SIGABRT, handler)
