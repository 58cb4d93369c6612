"""dograhctl: scale, deploy, render and inspect the Dograh fleet (the click CLI)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__, apply, balance, config, lock, status
from . import doctor as doctor_checks
from .config import MAX_API_WORKERS, MAX_ARQ_WORKERS, ConfigError, Settings
from .errors import DograhError

MIB = 1024 * 1024


def report(message: str) -> None:
    click.echo(message, err=True)


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def needs_root(command: Callable[..., Any]) -> Callable[..., Any]:
    """Changing commands write to /etc and drive systemd: refuse early, clearly."""
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.geteuid() != 0:
            name = click.get_current_context().info_name
            fail(f"'{name}' changes systemd and nginx and must run as root (try: sudo dograhctl {name})")
        return command(*args, **kwargs)
    return wrapper


@click.group()
@click.version_option(__version__, prog_name="dograhctl")
@click.option("--config", "config_file", metavar="FILE", envvar="DOGRAH_CONFIG",
              help=f"Env file to read [default: {config.DEFAULT_CONFIG}; env: DOGRAH_CONFIG].")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """Run Dograh's API workers, ARQ workers and singletons as systemd units behind nginx."""
    ctx.obj = config.config_path(config_file)


def pass_settings(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the validated settings; a bad config file stops it with one line."""
    @wraps(command)
    @click.pass_obj
    def wrapper(path: Path, *args: Any, **kwargs: Any) -> Any:
        try:
            settings = config.load(path)
        except ConfigError as exc:
            fail(str(exc))
        return command(settings, *args, **kwargs)
    return wrapper


@main.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Write under this directory instead (a staging root).")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@pass_settings
def render(settings: Settings, root: Path, dry_run: bool) -> None:
    """Write every unit and nginx file from the templates."""
    live = root.resolve() == Path("/")
    if live and not dry_run and os.geteuid() != 0:
        fail("'render' to / changes systemd and nginx and must run as root "
             "(try: sudo dograhctl render, or --root DIR)")
    try:
        if live and not dry_run:
            with lock.exclusive(report):
                changes = apply.render(settings, Path("/"), dry_run, report)
        else:
            changes = apply.render(settings, root.resolve(), dry_run, report)
    except DograhError as exc:
        fail(str(exc))
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


def summary(outcome: apply.Outcome) -> str:
    fleet, plan = outcome.plan.desired, outcome.plan
    ports = sorted(fleet.api_ports)
    text = (f"{len(ports)} API workers"
            + (f" (ports {ports[0]}-{ports[-1]})" if ports else "")
            + f", {len(fleet.arq_indices)} ARQ workers, singletons: "
            + (", ".join(sorted(fleet.singletons)) or "none")
            + f" (started {len(plan.to_start)}, stopped {len(plan.to_stop)})")
    if outcome.calls_cut:
        text += f"; the drain timeout cut {outcome.calls_cut} live call(s)"
    return text


# Negative numbers must reach the range check, not be taken for options.
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("workers", required=False, type=click.IntRange(1, MAX_API_WORKERS))
@click.option("--arq", type=click.IntRange(0, MAX_ARQ_WORKERS), metavar="M",
              help="Number of ARQ workers [default: as now, or ARQ_WORKERS].")
@click.option("--force", is_flag=True, help="Start workers even when memory looks short.")
@drain_options
@needs_root
@pass_settings
def scale(settings: Settings, workers: int | None, arq: int | None, force: bool,
          drain_timeout: int | None, no_drain: bool) -> None:
    """Run WORKERS API workers (default: FASTAPI_WORKERS) behind nginx."""
    try:
        with lock.exclusive(report):
            outcome = apply.scale(settings, workers, arq, force,
                                  drain_limit(settings, drain_timeout, no_drain), report)
    except DograhError as exc:
        fail(str(exc))
    click.echo(summary(outcome))


@main.command()
@click.option("--force", is_flag=True, help="Start the new band even when memory looks short.")
@drain_options
@needs_root
@pass_settings
def restart(settings: Settings, force: bool, drain_timeout: int | None, no_drain: bool) -> None:
    """Replace every worker with a fresh one on the current code, dropping no call.

    A new band of API workers (base port + 100, or back) starts and becomes
    READY, nginx switches to it, and the old band drains, then stops. ARQ
    workers and singletons restart after, one at a time.
    """
    try:
        with lock.exclusive(report):
            outcome = apply.restart(settings, force,
                                    drain_limit(settings, drain_timeout, no_drain), report)
    except DograhError as exc:
        fail(str(exc))
    click.echo("restarted: " + summary(outcome))


@main.command()
@needs_root
@pass_settings
def rebalance(settings: Settings) -> None:
    """Re-weigh the nginx upstream from the workers' live calls (runs by itself after a scale)."""
    try:
        with lock.exclusive(report):
            weights = apply.rebalance(settings, report)
    except DograhError as exc:
        fail(str(exc))
    state = "even" if balance.is_even(weights) else "uneven"
    click.echo(f"{len(weights)} API workers, weights {state}")


@main.command()
@needs_root
@pass_settings
def doctor(settings: Settings) -> None:
    """Check everything a start needs (interpreter, imports, env files, ports, nginx,
    Redis and the database) and say what to fix; exit 1 if anything fails."""
    checks = doctor_checks.run(settings)
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        click.echo(f"{mark} {check.name}: {check.detail}"
                   + ("" if check.ok else f"\n     fix: {check.fix}"))
    failed = sum(not check.ok for check in checks)
    click.echo(f"{len(checks) - failed} ok, {failed} failed")
    sys.exit(1 if failed else 0)


@main.command()
@needs_root
def uninstall() -> None:
    """Stop and disable every Dograh unit and remove the generated files (used on package removal)."""
    try:
        with lock.exclusive(report):
            apply.uninstall(report)
    except DograhError as exc:
        fail(str(exc))


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_settings
def status_command(settings: Settings, as_json: bool) -> None:
    """Desired against actual for every instance; exit 1 when they disagree."""
    try:
        fleet = status.collect(settings)
    except DograhError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(fleet.as_dict(), indent=2))
    else:
        _print_status(fleet)
    sys.exit(1 if fleet.mismatches else 0)


def _print_status(fleet: status.FleetStatus) -> None:
    sections = (("API workers", fleet.api), ("ARQ workers", fleet.arq),
                ("Singletons", fleet.singletons))
    click.echo(f"Configured: FASTAPI_WORKERS={fleet.configured_api_workers}")
    for title, items in sections:
        click.echo(f"{title}:")
        for item in items or []:
            memory = f"{item.memory / MIB:.0f}M" if item.memory else "-"
            enabled = "enabled" if item.enabled else "disabled"
            click.echo(f"  {item.unit:40} {item.active}/{item.sub:9} {enabled:8} "
                       f"pid {item.pid or '-':<7} {memory:>6}  {item.status}")
        if not items:
            click.echo("  (none)")
    click.echo("nginx upstream dograh_api: " + (" ".join(map(str, fleet.upstream)) or "(none)"))
    if fleet.mismatches:
        click.echo("Mismatches:")
        for line in fleet.mismatches:
            click.echo(f"  {line}")
    else:
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
