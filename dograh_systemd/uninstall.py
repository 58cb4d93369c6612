"""Take the whole fleet off this host: what the package runs on removal.

It needs no settings, so a broken config file cannot block removing the
package, and it succeeds whatever state the admin's own nginx sites are in.
"""

from __future__ import annotations

from . import firewall, front, paths, units
from .context import Report
from .host import Host
from .nginx import Nginx, restore_connections
from .record import Store
from .roles import ROLES, Role


def uninstall(host: Host, report: Report, roles: tuple[Role, ...] = ROLES) -> None:
    """Stop and disable every Dograh unit, remove what dograhctl generated; nginx keeps running."""
    systemd, files = host.systemd, host.files
    ours = units.on_host(host, roles, host_units=True)
    # A deploy, or a change a cluster's agent runs, would start what is being removed.
    systemd.discard(paths.DEPLOY_UNIT)
    systemd.discard(paths.CONVERGE_UNIT)
    unit_files = [paths.UNIT_DIR / name for name in
                  [role.unit_file for role in roles] + [paths.TARGET, *paths.HOST_UNITS]]
    if any(files.exists(path) for path in unit_files):
        systemd.stop([*ours, paths.TARGET])
        systemd.disable([*ours, paths.TARGET])
        systemd.reset_failed(ours)
    for path in unit_files:
        if files.is_generated(path):
            files.unlink(path)
    files.remove_empty_directory(paths.UNIT_DIR / f"{paths.TARGET}.wants")
    firewall.remove(files)
    systemd.cancel_later(paths.REBALANCE_UNIT)
    systemd.daemon_reload()
    front.give_back_stock_default(files)
    restore_connections(files)
    warning = Nginx(host).remove_site()
    if warning:
        report(warning)
    Store(files).remove()
    files.unlink(paths.AGENT_STATE)
    files.remove_tree(paths.LEADER_DIR)
    report(f"stopped and disabled {len(ours)} unit(s); removed the generated units "
           "and the nginx site")
