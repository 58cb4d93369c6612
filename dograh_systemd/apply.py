"""Apply a plan: systemd and nginx changes in the order that keeps calls flowing.

New workers start in parallel and nginx sends them nothing before READY;
leaving workers leave nginx first, then drain their live calls and requests,
and only then stop. Every check runs before the first change, and a failure
after it rolls the new instances back, so a failed command leaves the fleet
as it was. Scaling and deploying apply the same way: a deploy asks for the
same number of workers in the other band of ports.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import balance, files, nginx, paths, preflight, systemd, templates
from .config import Settings
from .errors import DograhError
from .names import API_TEMPLATE, SINGLETONS, api_unit, arq_unit
from .plan import Fleet, Plan, desired_fleet
from .worker.live_counts import STATUS_INTERVAL, parse_status

Report = Callable[[str], None]
READY_TIMEOUT = 100  # a little over the units' TimeoutStartSec=90
REBALANCE_AFTER = 60
DRAIN_REPORT_EVERY = 5.0


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    calls_cut: int


def install_units(settings: Settings) -> bool:
    """Write the unit files that changed, remove generated ones no longer called
    for, and tell systemd; True if anything changed."""
    rendered = templates.render_units(settings)
    changes = files.changed(rendered)
    for path, text in changes.items():
        files.write_generated(path, text)
    dropped = [path for path in (paths.UNIT_DIR / t.stem for t in templates.unit_templates())
               if path not in rendered and files.is_generated(path)]
    if dropped:
        systemd.disable(path.name for path in dropped)
    for path in dropped:
        path.unlink()
    if changes or dropped:
        systemd.daemon_reload()
    return bool(changes or dropped)


def scale(settings: Settings, api_count: int | None, arq_count: int | None, force: bool,
          drain_timeout: float | None, report: Report) -> Outcome:
    """Bring the fleet to the asked-for size; ``drain_timeout`` None skips draining."""
    current = systemd.current_fleet()
    plan = Plan(current, desired_fleet(settings, current, api_count, arq_count))
    nginx_files, weights = _preflight(settings, plan, force, report)
    if install_units(settings) and (current.api_ports or current.arq_indices):
        report("warning: the unit files changed; processes already running keep their old "
               "settings until: dograhctl restart")
    calls_cut = _apply(settings, plan, nginx_files, weights, drain_timeout, report)
    return Outcome(plan, calls_cut)


def restart(settings: Settings, force: bool, drain_timeout: float | None,
            report: Report) -> Outcome:
    """Replace every process with a fresh one on the current code, dropping no call.

    Migrations run first. API workers: a full new band starts and becomes
    READY, nginx switches to it, the old band drains and stops. ARQ workers
    restart one at a time, each finishing its job first; singletons stop
    before they start, never twice.
    """
    current = systemd.current_fleet()
    if not current.api_ports:
        raise DograhError("no API workers to restart; start some with: dograhctl scale")
    plan = Plan(current, desired_fleet(settings, current, len(current.api_ports),
                                       len(current.arq_indices), switch_band=True))
    nginx_files, weights = _preflight(settings, plan, force, report)
    install_units(settings)
    if settings.migrate_command:
        # The new code's migrations first; if they fail, nothing has changed.
        report("running migrations")
        try:
            systemd.reload_or_start(templates.MIGRATE_UNIT)
        except DograhError as exc:
            why = systemd.journal_tail(templates.MIGRATE_UNIT)
            raise DograhError(f"migrations failed, the running fleet is unchanged; "
                              f"journal: {why}") from exc
    calls_cut = _apply(settings, plan, nginx_files, weights, drain_timeout, report)
    for unit in [arq_unit(i) for i in sorted(plan.desired.arq_indices)] + sorted(
            plan.desired.singletons):
        report(f"restarting {unit}")
        systemd.restart(unit)
    return Outcome(plan, calls_cut)


def _preflight(settings: Settings, plan: Plan, force: bool,
               report: Report) -> tuple[dict[Path, str], dict[int, int]]:
    """Every check, before the first change; the nginx files the plan will need."""
    nginx.test()
    new_ports = plan.desired.api_ports - plan.current.api_ports
    warning = preflight.check_memory(len(new_ports), _memory_per_worker(settings), force)
    if warning:
        report(warning)
    preflight.check_ports_free(settings.host, new_ports)
    weights = _weights(plan.desired.api_ports)
    return templates.render_nginx(settings, plan.desired.api_ports, weights), weights


def _apply(settings: Settings, plan: Plan, nginx_files: dict[Path, str],
           weights: dict[int, int], drain_timeout: float | None, report: Report) -> int:
    """Start, switch nginx, drain, stop; the number of calls a drain timeout cut."""
    wanted = _units_of(plan.desired)
    states = systemd.show(wanted)
    # New units, and any of the fleet's that died and stayed down.
    starting = [unit for unit in wanted if not states[unit].ready]
    try:
        systemd.enable([paths.TARGET, *wanted])
        _start_and_wait(starting, report)
        if nginx.apply(nginx_files):
            report(f"nginx upstream dograh_api: {_describe(weights)}")
    except BaseException:
        _roll_back(plan.to_start)
        raise
    _follow_up(settings, weights, report)
    calls_cut = 0
    if drain_timeout is not None:
        calls_cut = _drain(plan.api_to_stop, drain_timeout, report)
    systemd.stop(plan.to_stop)
    systemd.disable(plan.to_stop)
    systemd.reset_failed(plan.to_stop)
    return calls_cut


def _units_of(fleet: Fleet) -> list[str]:
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
        time.sleep(0.05)


def _drain(units: list[str], timeout: float, report: Report) -> int:
    """Wait until ``units`` hold no call and no request, up to ``timeout`` seconds.

    Reads each worker's own live counts from its Status line. Returns the
    number of calls still live when the timeout ran out: the ones a stop cuts.
    """
    if not units:
        return 0
    started = time.monotonic()
    # nginx has let go of these workers; a zero must come from a Status line
    # the worker wrote after that.
    time.sleep(STATUS_INTERVAL + 0.2)
    shown: dict[str, tuple[tuple[int, int], float]] = {}
    while True:
        waited = time.monotonic() - started
        busy = {}
        for unit, state in systemd.show(units).items():
            counts = parse_status(state.status) if state.ready else None
            if counts and any(counts):
                busy[unit] = counts
        for unit, counts in sorted(busy.items()):
            last = shown.get(unit)
            if last is None or last[0] != counts or waited - last[1] >= DRAIN_REPORT_EVERY:
                report(f"draining {unit}: {counts[0]} calls, {counts[1]} requests in flight "
                       f"({waited:.0f}s of {timeout:.0f}s)")
                shown[unit] = (counts, waited)
        if not busy:
            report(f"drained {len(units)} worker(s) in {waited:.0f}s")
            return 0
        if waited >= timeout:
            cut = sum(calls for calls, _ in busy.values())
            report(f"drain timeout after {timeout:.0f}s: stopping {len(busy)} worker(s) "
                   f"with {cut} live call(s)")
            return cut
        time.sleep(min(1.0, max(0.0, timeout - waited)))


def _roll_back(units: list[str]) -> None:
    """Stop and disable the units this command added."""
    systemd.stop(units)
    systemd.disable(units)
    systemd.reset_failed(units)


def _describe(weights: dict[int, int]) -> str:
    """Ports, with the weights that are not 1."""
    return "ports " + " ".join(f"{port}" + (f" (weight {w})" if w != 1 else "")
                               for port, w in sorted(weights.items()))


def _weights(ports: frozenset[int]) -> dict[int, int]:
    """Weights for an upstream of ``ports``.

    Only a change of members needs a reload; with the same members the current
    weights stay, nginx is not reloaded and keeps its own, exact counts.
    """
    current = nginx.upstream_weights()
    if set(current) == ports:
        return current
    return balance.weights(_live_calls(ports))


def _live_calls(ports: frozenset[int]) -> dict[int, int]:
    """Each worker's live calls from its Status line; 0 for one not running yet."""
    states = systemd.show(api_unit(p) for p in sorted(ports))
    live = {}
    for port in ports:
        state = states[api_unit(port)]
        counts = parse_status(state.status) if state.ready else None
        live[port] = counts[0] if counts else 0
    return live


def _follow_up(settings: Settings, weights: dict[int, int], report: Report) -> None:
    """While weights are uneven, re-weigh again later; stop once the fleet is even."""
    if balance.is_even(weights):
        systemd.cancel_scheduled()
        return
    systemd.schedule(REBALANCE_AFTER, [sys.executable, "-m", "dograh_systemd", "--config",
                                       str(settings.config_path), "rebalance"])
    report(f"weights are re-derived from live calls in {REBALANCE_AFTER}s, until even")


def rebalance(settings: Settings, report: Report) -> dict[int, int]:
    """Re-weigh the upstream from the workers' live calls; reload nginx only on a change."""
    ports = frozenset(systemd.enabled_instances(API_TEMPLATE))
    if not ports:
        systemd.cancel_scheduled()
        return {}
    weights = balance.weights(_live_calls(ports))
    if nginx.apply(templates.render_nginx(settings, ports, weights)):
        report(f"nginx upstream dograh_api: {_describe(weights)}")
    _follow_up(settings, weights, report)
    return weights


def render(settings: Settings, root: Path, dry_run: bool, report: Report) -> dict[Path, str]:
    """Render every file under ``root``; on the live root, tell systemd and nginx.

    The upstream lists the enabled API workers, or FASTAPI_WORKERS of them when
    none are enabled yet, so rendering never changes which workers serve.
    """
    enabled = frozenset(systemd.enabled_instances(API_TEMPLATE))
    ports = enabled or settings.api_ports(settings.fastapi_workers)
    weights = _weights(enabled) if enabled else None
    unit_files = templates.render_units(settings)
    nginx_files = templates.render_nginx(settings, ports, weights)
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
    systemd.cancel_scheduled()
    systemd.daemon_reload()
    nginx.remove_site()
    report(f"stopped and disabled {len(units)} unit(s); removed the generated units "
           "and the nginx site")
