"""dograhctl: scale, deploy, render and inspect the Dograh fleet (the click CLI)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__, balance, config, lock, paths, status, uninstall, verbs
from . import doctor as doctor_checks
from .config import ConfigError, Settings
from .context import Context
from .errors import DograhError
from .nginx import Nginx
from .operation import Outcome
from .record import Store
from .roles import API, ROLES, Kind
from .systemd import Systemd

MIB = 1024 * 1024
POOLS = {role.name: role for role in ROLES if role.kind is Kind.POOL}


def report(message: str) -> None:
    click.echo(message, err=True)


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def is_root() -> bool:
    return os.geteuid() == 0


def needs_root(command: Callable[..., Any]) -> Callable[..., Any]:
    """Changing commands write to /etc and drive systemd: refuse early, clearly."""
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_root():
            name = click.get_current_context().info_name
            fail(f"'{name}' changes systemd and nginx and must run as root "
                 f"(try: sudo dograhctl {name})")
        return command(*args, **kwargs)
    return wrapper


@click.group()
@click.version_option(__version__, prog_name="dograhctl")
@click.option("--config", "config_file", metavar="FILE", envvar="DOGRAH_CONFIG",
              help=f"Env file to read, an absolute path [default: {config.DEFAULT_CONFIG}; "
                   "env: DOGRAH_CONFIG].")
@click.option("--lock-wait", type=click.IntRange(0, 86400), default=int(lock.WAIT),
              show_default=True, metavar="SECONDS",
              help="How long a changing command waits for another one to finish.")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, lock_wait: int) -> None:
    """Run Dograh's API workers, ARQ workers and singletons as systemd units behind nginx.

    Every command first finishes an operation that an interrupted dograhctl
    left (when run as root), so there is always one band of workers in nginx.
    """
    try:
        ctx.obj = Options(config.config_path(config_file), lock_wait)
    except ConfigError as exc:
        fail(str(exc))


@dataclass(frozen=True)
class Options:
    config: Path
    lock_wait: int


def exclusive() -> AbstractContextManager[None]:
    """The lock, waited on as long as --lock-wait says."""
    options = click.get_current_context().find_object(Options)
    return lock.exclusive(report, wait=options.lock_wait if options else lock.WAIT)


def pass_context(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command its Context; a bad config file stops it with one line."""
    @wraps(command)
    @click.pass_obj
    def wrapper(options: Options, *args: Any, **kwargs: Any) -> Any:
        try:
            settings = config.load(options.config)
        except ConfigError as exc:
            fail(str(exc))
        try:
            return command(Context.here(settings, report), *args, **kwargs)
        except DograhError as exc:
            fail(str(exc))
    return wrapper


def locked(command: Callable[..., Any]) -> Callable[..., Any]:
    """One changing command at a time; it first finishes what an interrupted one left."""
    @wraps(command)
    def wrapper(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        with exclusive():
            return command(ctx, *args, **kwargs)
    return wrapper


@main.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Write under this directory instead (a staging root).")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@pass_context
def render(ctx: Context, root: Path, dry_run: bool) -> None:
    """Write the generated files from the templates.

    On the live root this applies what moves no process (the nginx site,
    dograh.target); changed unit definitions are applied by scale and restart,
    which move the running processes onto them.
    """
    live = root.resolve() == Path("/")
    if live and not dry_run:
        if not is_root():
            fail("'render' to / changes systemd and nginx and must run as root "
                 "(try: sudo dograhctl render, or --root DIR)")
        with exclusive():
            changes = verbs.render(ctx, Path("/"), dry_run)
    else:
        changes = verbs.render(ctx, root.resolve(), dry_run)
    verb = "would change" if dry_run else "changed"
    report(f"{len(changes)} file(s) {verb}" + "".join(f"\n  {p}" for p in changes))


def drain_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--drain-timeout and --no-drain, shared by the commands that stop workers."""
    command = click.option("--no-drain", is_flag=True,
                           help="Stop leaving workers at once, cutting their calls.")(command)
    return click.option("--drain-timeout", type=click.IntRange(0), metavar="SECONDS",
                        help="Longest wait for a leaving worker's calls to end "
                             "[default: DRAIN_TIMEOUT, 300].")(command)


def drain_limit(settings: Settings, drain_timeout: int | None, no_drain: bool) -> float | None:
    if no_drain:
        return None
    return settings.drain_timeout if drain_timeout is None else drain_timeout


def summary(outcome: Outcome) -> str:
    op = outcome.operation
    fleet, before = op.target, set(op.previous.all_units())
    parts = []
    for role in ROLES:
        units = fleet.of(role.name)
        if role.kind is Kind.API:
            ports = sorted(int(role.instance_name(u)) for u in units)
            parts.append(f"{len(ports)} API workers"
                         + (f" (ports {ports[0]}-{ports[-1]})" if ports else ""))
        elif role.kind is Kind.POOL:
            parts.append(f"{len(units)} {role.title.removeprefix('Dograh ')}s")
    singletons = [u for role in ROLES if role.kind is Kind.SINGLETON for u in fleet.of(role.name)]
    started = len(set(fleet.all_units()) - before)
    stopped = len(before - set(fleet.all_units()))
    text = (", ".join(parts) + ", singletons: " + (", ".join(singletons) or "none")
            + f" (started {started}, stopped {stopped})")
    if outcome.calls_cut:
        text += f"; the drain timeout cut {outcome.calls_cut} live call(s)"
    return text


# Negative numbers must reach the range check, not be taken for options.
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("workers", required=False,
                type=click.IntRange(API.count_min, API.count_max))
@click.option("--arq", type=click.IntRange(POOLS["arq"].count_min, POOLS["arq"].count_max),
              metavar="M", help="Number of ARQ workers [default: as now, or ARQ_WORKERS].")
@click.option("--force", is_flag=True, help="Start workers even when memory looks short.")
@drain_options
@needs_root
@pass_context
@locked
def scale(ctx: Context, workers: int | None, arq: int | None, force: bool,
          drain_timeout: int | None, no_drain: bool) -> None:
    """Run WORKERS API workers (default: FASTAPI_WORKERS) behind nginx.

    New workers join nginx once READY; leaving ones leave nginx first, drain,
    then stop. When the unit definitions or the app's environment changed
    since the fleet started (an edited env file, a new DOGRAH_APP), every
    process moves onto them the way restart does, dropping no call, so the
    fleet never serves two definitions at once.
    """
    pools = {} if arq is None else {"arq": arq}
    outcome = verbs.scale(ctx, workers, pools, force,
                          drain_limit(ctx.settings, drain_timeout, no_drain))
    click.echo(summary(outcome))


@main.command()
@click.option("--force", is_flag=True, help="Start the new band even when memory looks short.")
@click.option("--background", is_flag=True,
              help=f"Run as the transient unit {paths.DEPLOY_UNIT} and return at once "
                   "(the package's upgrade does: dpkg never waits for a drain).")
@drain_options
@needs_root
@pass_context
def restart(ctx: Context, force: bool, background: bool, drain_timeout: int | None,
            no_drain: bool) -> None:
    """Replace every worker with a fresh one on the current code, dropping no call.

    Migrations run first. A new band of API workers (base port + 100, or back)
    starts and becomes READY, nginx switches to it, and the old band drains,
    then stops. ARQ workers then restart one at a time; each singleton stops
    before it starts again. A fleet stopped with systemctl stop dograh.target
    stays stopped: only its units are updated.
    """
    if background:
        options = (["--force"] * force + ["--no-drain"] * no_drain
                   + ([f"--drain-timeout={drain_timeout}"] if drain_timeout is not None else []))
        verbs.restart_in_background(ctx, options)
        return
    with exclusive():
        outcome = verbs.restart(ctx, force, drain_limit(ctx.settings, drain_timeout, no_drain))
    click.echo("restarted: " + summary(outcome) if outcome else "the fleet is stopped; its "
               "units are updated")


@main.command()
@needs_root
@pass_context
@locked
def rebalance(ctx: Context) -> None:
    """Re-weigh the nginx upstream from the workers' live calls (runs by itself after a scale)."""
    weights = verbs.rebalance(ctx)
    state = "even" if balance.is_even(weights) else "uneven"
    click.echo(f"{len(weights)} API workers, weights {state}")


@main.command()
@needs_root
@pass_context
def doctor(ctx: Context) -> None:
    """Check everything a start needs (interpreter, imports, env files, ports, nginx,
    Redis and the database) and say what to fix; exit 1 if anything fails."""
    checks = doctor_checks.run(ctx)
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        click.echo(f"{mark} {check.name}: {check.detail}"
                   + ("" if check.ok else f"\n     fix: {check.fix}"))
    failed = sum(not check.ok for check in checks)
    click.echo(f"{len(checks) - failed} ok, {failed} failed")
    sys.exit(1 if failed else 0)


@main.command("uninstall")
@needs_root
def uninstall_command() -> None:
    """Stop and disable every Dograh unit and remove the generated files (used on package removal)."""
    systemd = Systemd()
    try:
        with exclusive():
            uninstall.uninstall(systemd, Nginx(systemd), Store(), report)
    except DograhError as exc:
        fail(str(exc))


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def status_command(ctx: Context, as_json: bool) -> None:
    """The fleet record against what systemd runs and nginx has; exit 1 when they disagree.

    As root, an operation an interrupted command left is finished first (unless
    another dograhctl is at work).
    """
    busy = None
    if is_root():
        try:
            with lock.exclusive(report, wait=0):
                verbs.resume(ctx)
        except lock.Busy as exc:
            busy = exc.holder
    fleet = status.collect(ctx, busy)
    if as_json:
        click.echo(json.dumps(fleet.as_dict(), indent=2))
    else:
        _print_status(ctx.settings, fleet)
    sys.exit(1 if fleet.mismatches else 0)


def _print_status(settings: Settings, fleet: status.FleetStatus) -> None:
    click.echo("Configured: " + ", ".join(
        f"{name} {count}" for name, count in fleet.configured.items()))
    for name, items in fleet.roles.items():
        click.echo(f"{settings.role(name).role.title} ({name}):")
        for item in items:
            memory = f"{item.memory / MIB:.0f}M" if item.memory else "-"
            enabled = "enabled" if item.enabled else "disabled"
            click.echo(f"  {item.unit:40} {item.active}/{item.sub:9} {enabled:8} "
                       f"pid {item.pid or '-':<7} {memory:>6}  {item.status}")
        if not items:
            click.echo("  (none)")
    click.echo("nginx upstream dograh_api: " + (" ".join(map(str, fleet.upstream)) or "(none)"))
    if fleet.deploy:
        click.echo(f"Last deploy ({paths.DEPLOY_UNIT}): {fleet.deploy}")
    for title, lines in (("Pending", fleet.pending), ("Mismatches", fleet.mismatches)):
        if lines:
            click.echo(f"{title}:")
            for line in lines:
                click.echo(f"  {line}")
    if not fleet.mismatches:
        click.echo("No mismatches.")


def run() -> None:
    """The ``dograhctl`` entry point: every error is one line on stderr."""
    try:
        code = main.main(prog_name="dograhctl", standalone_mode=False)
    except click.UsageError as exc:
        click.echo(f"dograhctl: {exc.format_message()} (see: dograhctl --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"dograhctl: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("dograhctl: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
