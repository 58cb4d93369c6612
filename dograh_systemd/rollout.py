"""Start units in parallel and wait until every one is READY."""

from __future__ import annotations

from .context import Context
from .errors import DograhError
from .worker import contract


def start_and_wait(ctx: Context, units: list[str]) -> None:
    """Start ``units`` (systemd runs them in parallel) and wait for READY.

    A unit that fails, or waits to restart after failing, will not become
    ready by itself: that ends the wait with its journal.
    """
    if not units:
        return
    ctx.systemd.start_no_block(units)
    deadline = ctx.clock.monotonic() + contract.READY_WAIT
    shown = ""
    while True:
        states = ctx.systemd.show(units)
        failed = [unit for unit in units if states[unit].failed]
        if failed:
            why = ctx.systemd.journal_tail(failed[0])
            raise DograhError(f"{failed[0]} failed to start; journal: {why or 'empty'}")
        ready = sum(states[unit].ready for unit in units)
        progress = f"waiting for READY: {ready}/{len(units)} ready"
        if progress != shown:
            ctx.report(progress)
            shown = progress
        if ready == len(units):
            return
        if ctx.clock.monotonic() > deadline:
            late = next(unit for unit in units if not states[unit].ready)
            raise DograhError(f"timed out after {contract.READY_WAIT}s waiting for READY "
                              f"from {late}")
        ctx.clock.sleep(0.05)
