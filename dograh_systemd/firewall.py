"""A worker host's firewall: its API worker ports accept the edge alone.

One nftables table of its own (``inet dograh``), in a file that replaces the
whole table in one ``nft -f`` transaction; dograh-firewall.service loads it,
and reloads it whenever its inputs change (a base port that moved, another
edge). nftables.service's own ruleset begins with ``flush ruleset``: a drop-in
for it loads the table again right after each start or reload, so neither
``systemctl reload nftables`` nor ``restart`` leaves the ports open, and
neither touches the workers (they only Want= the firewall).
"""

from __future__ import annotations

from collections.abc import Iterable

from . import paths, templates
from .context import Context
from .host.files import Files

TABLE = ("inet", "dograh")


def apply(ctx: Context, standing: templates.Standing, running: Iterable[int]) -> None:
    """The table for the config (and the API worker ports ``running`` now) in place and
    loaded; nothing happens when it already is."""
    files = ctx.files
    rendered = templates.render_firewall(ctx.settings, standing, running)
    changes = files.changed(rendered)
    for path, text in changes.items():
        files.write_generated(path, text)
    if paths.NFTABLES_DROP_IN in changes:
        ctx.systemd.daemon_reload()
    if paths.FIREWALL_RULES in changes and ctx.systemd.is_active(paths.FIREWALL_UNIT):
        ctx.systemd.reload_or_restart(paths.FIREWALL_UNIT)


def in_place(ctx: Context) -> bool:
    """Whether the kernel has the table (root only may ask)."""
    return ctx.host.run(["nft", "list", "table", *TABLE]).returncode == 0


def remove(files: Files) -> None:
    """The rules file and the drop-in gone (uninstall stops the unit, which drops the table)."""
    for path in (paths.FIREWALL_RULES, paths.NFTABLES_DROP_IN):
        if files.is_generated(path):
            files.unlink(path)
    files.remove_empty_directory(paths.NFTABLES_DROP_IN.parent)
