"""Singletons by lease, Patroni's way (pure): what one host does about one singleton in
one cycle of its agent.

The leader key of a singleton is created only if absent, in one transaction, bound
to the holder's lease, which the holder renews every cycle: a host that stops
renewing (powered off, cut off, its agent hung) loses the key when its lease ends,
and it stops the singleton itself before that, by its own clock. The singleton runs
on the most preferred eligible host that is registered when it starts: the first of
them campaigns when the key is free. It stays where it runs (a host that comes back
takes nothing back) until its host goes, or until the edges place it anew and a host
ahead of its holder is registered: then the holder steps down (stops its singleton,
then gives the key back), so a singleton moved by config moves with one stop before
one start.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence


class Move(enum.Enum):
    HOLD = "hold"            # this host holds the key: run the singleton
    CAMPAIGN = "campaign"    # the key is free and this host is next: try to take it
    STEP_DOWN = "step down"  # this host holds it but should not: stop, then give it back
    STAY_DOWN = "stay down"  # another host holds it, or may take it first: run nothing


def move(me: str, eligible: Sequence[str], alive: Collection[str], holder: str | None,
         placed_anew: bool = False) -> Move:
    """What ``me`` does about a singleton that ``eligible`` hosts may run (the preferred
    first), while the ``alive`` hosts are registered and ``holder`` holds its key (None:
    nobody; "": a lease that is nobody's registration, still on its way out);
    ``placed_anew``: the edges placed it since its holder took it."""
    mine = holder == me
    if me not in eligible:
        return Move.STEP_DOWN if mine else Move.STAY_DOWN
    ahead = [host for host in eligible[:eligible.index(me)] if host in alive]
    if mine:
        return Move.STEP_DOWN if ahead and placed_anew else Move.HOLD
    if holder is None and not ahead:
        return Move.CAMPAIGN
    return Move.STAY_DOWN

