"""Wait until leaving API workers hold nothing: no app call, no socket, no request.

nginx has stopped sending them work before this runs; uvicorn would close
every WebSocket the moment it got SIGTERM, so the stop waits for this.
"""

from __future__ import annotations

from .context import Context
from .worker import contract
from .worker.contract import Load

REPORT_EVERY = 5.0


def until_idle(ctx: Context, units: list[str], deadline: float, timeout: float) -> int:
    """Wait until ``units`` are idle, or until ``deadline`` (wall clock, ``timeout``
    seconds after the drain began). Returns the calls live at the deadline: the ones
    a stop cuts.

    Each worker's load comes from its own Status line. A worker that is not
    serving holds nothing; a read of the app's call count that failed is never
    taken for zero.
    """
    units = [unit for unit, state in ctx.systemd.show(units).items() if _serving(state.active)]
    if not units:
        return 0
    began = ctx.clock.time()
    # nginx has just let go of these workers: a zero must come from a Status
    # line the worker wrote after that.
    ctx.clock.sleep(contract.STATUS_INTERVAL + 0.2)
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
            return 0
        if now >= deadline:
            cut = sum(load.calls for load, _ in busy.values())
            ctx.report(f"drain timeout after {timeout:.0f}s: stopping {len(busy)} worker(s) "
                       f"with {cut} live call(s)")
            return cut
        ctx.clock.sleep(min(1.0, max(0.0, deadline - now)))


def _busy(ctx: Context, units: list[str]) -> dict[str, tuple[Load, str]]:
    """The running workers among ``units`` that still hold something, with what."""
    busy = {}
    for unit, state in ctx.systemd.show(units).items():
        if not _serving(state.active):
            continue  # never started serving, or gone: it holds nothing
        load = contract.parse_status(state.status)
        if load is None:
            busy[unit] = (Load(websockets=0, requests=0, app_error="no Status line yet"),
                          "no Status line yet")
        elif not load.idle:
            busy[unit] = (load, state.status.removeprefix("stopping: "))
    return busy


def _serving(active: str) -> bool:
    return active in ("active", "reloading", "deactivating")
