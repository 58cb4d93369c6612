"""Take the whole fleet off this host: what the package runs on removal.

It needs no settings, so a broken config file cannot block removing the
package, and it succeeds whatever state the admin's own nginx sites are in.
"""

from __future__ import annotations

from . import files, front, paths
from .context import Report
from .nginx import Nginx, restore_connections
from .record import Store
from .roles import ROLES, Role, role_of
from .systemd import Systemd
from .templates import HOST_UNITS


def uninstall(systemd: Systemd, nginx: Nginx, store: Store, report: Report,
              roles: tuple[Role, ...] = ROLES) -> None:
    """Stop and disable every Dograh unit, remove what dograhctl generated; nginx keeps running."""
    host_units = [name for names in HOST_UNITS.values() for name in names]
    seen = set(systemd.listed("dograh-*")) | set(systemd.wanted_by(paths.TARGET))
    ours = sorted(unit for unit in seen if role_of(unit, roles) or unit in host_units)
    # A deploy still at work would start what is being removed.
    systemd.discard(paths.DEPLOY_UNIT)
    unit_files = [paths.UNIT_DIR / name for name in
                  [role.unit_file for role in roles] + [paths.TARGET, *host_units]]
    if any(path.exists() for path in unit_files):
        systemd.stop([*ours, paths.TARGET])
        systemd.disable([*ours, paths.TARGET])
        systemd.reset_failed(ours)
    for path in unit_files:
        if files.is_generated(path):
            path.unlink()
    wants = paths.UNIT_DIR / f"{paths.TARGET}.wants"
    if wants.is_dir() and not any(wants.iterdir()):
        wants.rmdir()
    systemd.cancel_later(paths.REBALANCE_UNIT)
    systemd.daemon_reload()
    front.give_back_stock_default()
    restore_connections()
    warning = nginx.remove_site()
    if warning:
        report(warning)
    store.remove()
    report(f"stopped and disabled {len(ours)} unit(s); removed the generated units "
           "and the nginx site")
