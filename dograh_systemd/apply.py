"""Apply a plan: systemd and nginx changes in the order that keeps calls flowing.

Scaling up starts the new workers in parallel and waits for READY before nginx
sends them anything; scaling down takes workers out of nginx before they stop.
Every check runs before the first change, and a failure after it rolls the
new instances back, so a failed command leaves the fleet as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from . import files, nginx, paths, preflight, systemd, templates
from .config import Settings
from .errors import DograhError
from .names import API_TEMPLATE, SINGLETONS, api_unit, arq_unit
from .plan import Plan, desired_fleet

Report = Callable[[str], None]
READY_TIMEOUT = 100  # a little over the units' TimeoutStartSec=90


def install_units(settings: Settings) -> bool:
    """Write the unit files that changed and tell systemd; True if any did."""
    changes = files.changed(templates.render_units(settings))
    for path, text in changes.items():
        files.write_generated(path, text)
    if changes:
        systemd.daemon_reload()
    return bool(changes)


def scale(settings: Settings, api_count: int | None, arq_count: int | None, force: bool,
          report: Report) -> Plan:
    current = systemd.current_fleet()
    plan = Plan(current, desired_fleet(settings, current, api_count, arq_count))

    # Checks first: nothing below this block runs unless all of them pass.
    nginx.test()
    new_ports = plan.desired.api_ports - current.api_ports
    warning = preflight.check_memory(len(new_ports), _memory_per_worker(settings),
                                     force)
    if warning:
        report(warning)
    preflight.check_ports_free(settings.host, new_ports)
    nginx_files = templates.render_nginx(settings, plan.desired.api_ports)

    install_units(settings)
    systemd.enable([paths.TARGET])
    wanted = _units_of(plan)
    states = systemd.show(wanted)
    # New units, and any of the fleet's that died and stayed down.
    starting = [unit for unit in wanted if not states[unit].ready]
    try:
        systemd.enable(wanted)
        _start_and_wait(starting, report)
        if nginx.apply(nginx_files):
            report(f"nginx upstream dograh_api: ports {_ports(plan.desired.api_ports)}")
    except BaseException:
        _roll_back(plan.to_start)
        raise
    systemd.stop(plan.to_stop)
    systemd.disable(plan.to_stop)
    systemd.reset_failed(plan.to_stop)
    return plan


def _units_of(plan: Plan) -> list[str]:
    fleet = plan.desired
    return ([api_unit(p) for p in sorted(fleet.api_ports)]
            + [arq_unit(i) for i in sorted(fleet.arq_indices)]
            + sorted(fleet.singletons))


def _memory_per_worker(settings: Settings) -> int:
    """Measured mean of the running API workers, else the configured estimate."""
    running = systemd.show(api_unit(p) for p in sorted(systemd.running_instances(API_TEMPLATE)))
    measured = [s.memory for s in running.values() if s.memory]
    if measured:
        return sum(measured) // len(measured)
    return settings.worker_memory_mb * preflight.MIB


def _start_and_wait(units: list[str], report: Report) -> None:
    """Start ``units`` in parallel and wait until every one is ready."""
    if not units:
        return
    systemd.start_no_block(units)
    deadline = time.monotonic() + READY_TIMEOUT
    shown = ""
    while True:
        states = systemd.show(units)
        failed = [u for u in units if states[u].failed]
        if failed:
            why = systemd.journal_tail(failed[0])
            raise DograhError(f"{failed[0]} failed to start (rolled back); "
                              f"journal: {why or 'empty'}")
        ready = sum(states[u].ready for u in units)
        progress = f"waiting for READY: {ready}/{len(units)} ready"
        if progress != shown:
            report(progress)
            shown = progress
        if ready == len(units):
            return
        if time.monotonic() > deadline:
            raise DograhError(f"timed out after {READY_TIMEOUT}s waiting for READY "
                              "(rolled back)")
        time.sleep(0.2)


def _roll_back(units: list[str]) -> None:
    """Stop and disable the units this command added."""
    systemd.stop(units)
    systemd.disable(units)
    systemd.reset_failed(units)


def _ports(ports: frozenset[int]) -> str:
    return " ".join(map(str, sorted(ports)))


def render(settings: Settings, root: Path, dry_run: bool, report: Report) -> dict[Path, str]:
    """Render every file under ``root``; on the live root, tell systemd and nginx.

    The upstream lists the enabled API workers, or FASTAPI_WORKERS of them when
    none are enabled yet, so rendering never changes which workers serve.
    """
    ports = frozenset(systemd.enabled_instances(API_TEMPLATE)) or settings.api_ports(
        settings.fastapi_workers)
    unit_files = templates.render_units(settings)
    nginx_files = templates.render_nginx(settings, ports)
    changes = files.changed({**unit_files, **nginx_files}, root)
    if dry_run:
        for path, text in changes.items():
            report(files.unified_diff(path, files.read(files.under(root, path)), text))
    elif root == Path("/"):
        install_units(settings)
        nginx.apply(nginx_files)
    else:
        for path, text in changes.items():
            files.write_generated(files.under(root, path), text)
    return changes


def uninstall(report: Report) -> None:
    """Stop and disable every Dograh unit, remove what dograhctl generated; nginx keeps running.

    Needs no settings, so a broken config file cannot block removing the package.
    """
    fleet = systemd.current_fleet()
    units = ([api_unit(p) for p in sorted(fleet.api_ports)]
             + [arq_unit(i) for i in sorted(fleet.arq_indices)] + list(SINGLETONS))
    unit_files = [paths.UNIT_DIR / t.stem for t in templates.unit_templates()]
    if any(path.exists() for path in unit_files):
        systemd.stop([*units, paths.TARGET])
        systemd.disable([*units, paths.TARGET])
        systemd.reset_failed(units)
    for path in unit_files:
        if files.is_generated(path):
            path.unlink()
    if paths.TARGET_WANTS.is_dir() and not any(paths.TARGET_WANTS.iterdir()):
        paths.TARGET_WANTS.rmdir()
    systemd.daemon_reload()
    nginx.remove_site()
    report(f"stopped and disabled {len(units)} unit(s); removed the generated units "
           "and the nginx site")
