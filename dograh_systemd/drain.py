"""Wait until leaving API workers hold nothing: no app call, no socket, no request.

nginx has stopped sending them work before this runs; uvicorn would close
every WebSocket the moment it got SIGTERM, so the stop waits for this.
"""

from __future__ import annotations

from dataclasses import dataclass

from .context import Context
from .worker import contract
from .worker.contract import Load

REPORT_EVERY = 5.0


@dataclass(frozen=True)
class Cut:
    """What a drain timeout left to the stop: live calls, and workers whose app
    could not say how many it had (named, with why)."""

    calls: int = 0
    uncounted: tuple[str, ...] = ()


def until_idle(ctx: Context, units: list[str], deadline: float, timeout: float) -> Cut:
    """Wait until ``units`` are idle, or until ``deadline`` (wall clock, ``timeout``
    seconds after the drain began). Returns what a stop at the deadline cuts.

    Each worker's load comes from its own Status line. A worker that is not
    serving holds nothing; a read of the app's call count that failed is never
    taken for zero.
    """
    units = [unit for unit, state in ctx.systemd.show(units).items() if state.holding]
    if not units:
        return Cut()
    began = ctx.clock.time()
    # nginx has just let go of these workers: a zero must come from a Status
    # line the worker wrote after that, from a read of the app's count that
    # began after it (the slowest read gives up after APP_CALLS_TIMEOUT).
    fresh = contract.STATUS_INTERVAL + 0.2
    if ctx.settings.calls_path:
        fresh += contract.APP_CALLS_INTERVAL + contract.APP_CALLS_TIMEOUT
    ctx.clock.sleep(fresh)
    shown: dict[str, tuple[str, float]] = {}
    while True:
        now = ctx.clock.time()
        waited = now - began
        busy = _busy(ctx, units)
        for unit, (_, text) in sorted(busy.items()):
            last = shown.get(unit)
            if last is None or last[0] != text or waited - last[1] >= REPORT_EVERY:
                ctx.report(f"draining {unit}: {text} ({waited:.0f}s of {timeout:.0f}s)")
                shown[unit] = (text, waited)
        if not busy:
            ctx.report(f"drained {len(units)} worker(s) in {waited:.0f}s")
            return Cut()
        if now >= deadline:
            cut = Cut(calls=sum(load.calls for load, _ in busy.values()),
                      uncounted=tuple(f"{unit} ({load.app_error})"
                                      for unit, (load, _) in sorted(busy.items())
                                      if load.app_error))
            ctx.report(f"drain timeout after {timeout:.0f}s: stopping {len(busy)} worker(s) "
                       f"with {cut.calls} live call(s)"
                       + (f"; the app could not count the calls of {', '.join(cut.uncounted)}"
                          if cut.uncounted else ""))
            return cut
        ctx.clock.sleep(min(1.0, max(0.0, deadline - now)))


def _busy(ctx: Context, units: list[str]) -> dict[str, tuple[Load, str]]:
    """The running workers among ``units`` that still hold something, with what."""
    busy = {}
    for unit, state in ctx.systemd.show(units).items():
        if not state.holding:
            continue  # never started serving, or gone: it holds nothing
        load = contract.parse_status(state.status)
        if load is None:
            busy[unit] = (Load(websockets=0, requests=0, app_error="no Status line yet"),
                          "no Status line yet")
        elif not load.idle:
            busy[unit] = (load, state.status.removeprefix("stopping: "))
    return busy
