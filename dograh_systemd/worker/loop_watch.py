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
import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from types import FrameType

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


# Process-directed signals a helper thread leaves to the main thread.
_MAIN_THREAD_SIGNALS = {signal.SIGABRT, signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                        signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2}


def _write(text: str) -> None:
    """Straight to fd 2 (the journal): no stream lock the interrupted code may hold."""
    data = text.encode("utf-8", "backslashreplace")
    while data:
        try:
            data = data[os.write(2, data):]
        except InterruptedError:
            continue
        except OSError:
            return


def _where(frame: FrameType | None) -> str:
    if frame is None:
        return "no Python frame"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def stacks(heading: str, loop_thread: int, loop_frame: FrameType | None = None) -> str:
    """``heading`` and where the loop is, its thread's stack, then every other thread's."""
    frames = sys._current_frames()
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    loop_frame = loop_frame or frames.get(loop_thread)
    lines = [f"{heading}; the event loop is at {_where(loop_frame)}\n",
             "Stack of the event loop thread (most recent call last):\n"]
    lines += traceback.format_stack(loop_frame) if loop_frame else ["  (no Python frame)\n"]
    for ident, frame in frames.items():
        if ident not in (loop_thread, threading.get_ident()):
            lines.append(f"Thread {names.get(ident, ident)} (most recent call last):\n")
            lines += traceback.format_stack(frame)
    return "".join(lines)


class StallWatch:
    """A helper thread that writes the loop's stack once per stall.

    Two more cases it tells apart: when the thread itself did not run (the
    whole process was frozen, e.g. SIGSTOP) it says so in one line, since a
    stack taken now would show a loop already running again; and a loop stuck
    in C code that holds the GIL stops this thread and the SIGABRT handler
    alike, so faulthandler's own C thread, re-armed on every turn, writes the
    stacks a little after systemd's watchdog fired.
    """

    def __init__(self, loop_thread: int, watchdog: float) -> None:
        self.loop_thread = loop_thread
        self.watchdog = watchdog
        self.after = max(1.0, watchdog * contract.STALL_REPORT_FRACTION)
        self.turn = min(0.5, self.after / 4)
        self.last_beat = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watch", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_THREAD_SIGNALS)
        reported = False
        woke = time.monotonic()
        while True:
            faulthandler.dump_traceback_later(self.watchdog + 2, exit=True, file=2)
            if self._stop.wait(self.turn):
                break
            now = time.monotonic()
            frozen, woke = now - woke - self.turn, now
            if frozen > max(0.5, self.after / 2):
                _write(f"The worker did not run at all for {frozen + self.turn:.1f}s "
                       "(the process was stopped, or C code held the GIL)\n")
                continue
            stalled = now - self.last_beat
            if stalled < self.after:
                reported = False
            elif not reported:
                reported = True
                _write(stacks(f"Event loop stalled: it has not run for {stalled:.1f}s "
                              f"(systemd's watchdog restarts the worker after "
                              f"{self.watchdog:g}s)", self.loop_thread))
        faulthandler.cancel_dump_traceback_later()


def write_stacks_on_abort(loop_thread: int) -> None:
    """On the watchdog's SIGABRT, write the stacks from Python, then abort for real.

    faulthandler keeps every other fatal signal; Python runs this handler in
    the main thread (the loop's) between bytecodes, with the interrupted frame.
    """
    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            _write(stacks("Watchdog timeout: systemd sent SIGABRT", loop_thread, frame))
        finally:
            signal.signal(signal.SIGABRT, signal.SIG_DFL)
            os.abort()

    signal.signal(signal.SIGABRT, handler)
