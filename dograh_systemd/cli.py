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

from . import __version__, balance, cluster, config, lock, paths, status, uninstall, verbs
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


class Busy(click.ClickException):
    """Another dograhctl holds the lock: try again later (EX_TEMPFAIL)."""

    exit_code = 75


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
        except lock.Busy as exc:
            raise Busy(str(exc)) from None
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
    if outcome.cut.calls:
        text += f"; the drain timeout cut {outcome.cut.calls} live call(s)"
    if outcome.cut.uncounted:
        text += (f"; {len(outcome.cut.uncounted)} worker(s) stopped while their app could not "
                 "count its calls")
    return text


def edge_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """What an edge passes to its worker hosts: stop once READY, and print JSON."""
    command = click.option("--json", "as_json", is_flag=True,
                           help="Print what changed as JSON (an edge reads it).")(command)
    return click.option("--stage", is_flag=True,
                        help="Stop once the new workers are READY; resume (or the next "
                             "changing command) finishes. An edge switches its nginx "
                             "in between.")(command)


def outcome_json(outcome: Outcome | None) -> str:
    """What a worker host tells its edge: where to send, and what the change cut."""
    if outcome is None:
        return json.dumps({"staged": False, "members": [], "cut": None})
    members = [{"address": m.address, "port": m.port, "weight": m.weight, "ready": True,
                "calls": 0} for m in outcome.operation.target.upstream]
    return json.dumps({"staged": outcome.staged, "members": members,
                       "summary": summary(outcome),
                       "cut": {"calls": outcome.cut.calls,
                               "uncounted": list(outcome.cut.uncounted)}})


def cluster_summary(outcome: cluster.ClusterOutcome) -> str:
    hosts = ", ".join(f"{name}: {result.get('summary', 'done')}"
                      for name, result in outcome.hosts.items())
    down = "".join(f"; {name} is left out ({why})" for name, why in outcome.down.items())
    return f"{len(outcome.upstream)} API workers behind the edge ({hosts}){down}"


# Negative numbers must reach the range check, not be taken for options.
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("workers", required=False, type=click.IntRange(0, API.count_max))
@click.option("--arq", type=click.IntRange(POOLS["arq"].count_min, POOLS["arq"].count_max),
              metavar="M", help="Number of ARQ workers [default: as now, or ARQ_WORKERS].")
@click.option("--force", is_flag=True, help="Start workers even when memory looks short.")
@click.option("--host", "per_host", multiple=True, metavar="NAME=N",
              help="On an edge: this host's API workers; the others share the rest by "
                   "their CPUs.")
@click.option("--singletons", metavar="ROLES",
              help="On a worker host: the singletons it runs, comma-separated (its edge "
                   "sets it).")
@edge_options
@drain_options
@needs_root
@pass_context
@locked
def scale(ctx: Context, workers: int | None, arq: int | None, force: bool,
          per_host: tuple[str, ...], singletons: str | None, stage: bool, as_json: bool,
          drain_timeout: int | None, no_drain: bool) -> None:
    """Run WORKERS API workers (default: FASTAPI_WORKERS) behind nginx.

    New workers join nginx once READY; leaving ones leave nginx first, drain,
    then stop. When the unit definitions or the app's environment changed
    since the fleet started (an edited env file, a new DOGRAH_APP), every
    process moves onto them the way restart does, dropping no call, so the
    fleet never serves two definitions at once. On an edge, the workers are
    spread over the worker hosts (DOGRAH_HOSTS) by their CPUs, or as --host
    says; 0 is for a worker host only.
    """
    drain = drain_limit(ctx.settings, drain_timeout, no_drain)
    if ctx.settings.mode == "edge":
        click.echo(cluster_summary(cluster.scale(ctx, workers, _per_host(per_host), drain)))
        return
    pools = {} if arq is None else {"arq": arq}
    chosen = None if singletons is None else frozenset(filter(None, singletons.split(",")))
    outcome = verbs.scale(ctx, workers, pools, force, drain, chosen, stage)
    click.echo(outcome_json(outcome) if as_json else summary(outcome))


def _per_host(pairs: tuple[str, ...]) -> dict[str, int]:
    counts = {}
    for pair in pairs:
        name, _, count = pair.partition("=")
        if not count.isdigit():
            fail(f"--host {pair}: give NAME=N, e.g. --host worker1=4")
        counts[name] = int(count)
    return counts


@main.command()
@click.option("--force", is_flag=True, help="Start the new band even when memory looks short.")
@click.option("--background", is_flag=True,
              help=f"Run as the transient unit {paths.DEPLOY_UNIT} and return at once "
                   "(the package's upgrade does: dpkg never waits for a drain).")
@edge_options
@drain_options
@needs_root
@pass_context
def restart(ctx: Context, force: bool, background: bool, stage: bool, as_json: bool,
            drain_timeout: int | None, no_drain: bool) -> None:
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
    drain = drain_limit(ctx.settings, drain_timeout, no_drain)
    with exclusive():
        if ctx.settings.mode == "edge":
            click.echo("restarted: " + cluster_summary(cluster.restart(ctx, drain)))
            return
        outcome = verbs.restart(ctx, force, drain, stage)
    if as_json:
        click.echo(outcome_json(outcome))
        return
    click.echo("restarted: " + summary(outcome) if outcome else "the fleet is stopped; its "
               "units are updated")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print what changed as JSON.")
@needs_root
@pass_context
@locked
def resume(ctx: Context, as_json: bool) -> None:
    """Finish an operation an interrupted (or staged) command left; nothing else."""
    _, outcome = verbs.finish(ctx)
    if as_json:
        click.echo(outcome_json(outcome))
    else:
        click.echo(summary(outcome) if outcome else "nothing to finish")


@main.command()
@needs_root
@pass_context
@locked
def rebalance(ctx: Context) -> None:
    """Re-weigh the nginx upstream from the workers' live calls (runs by itself after a scale).

    On an edge: the upstream follows the worker hosts that answer (dograh-cluster.timer
    runs this every 15 s)."""
    if ctx.settings.mode == "edge":
        click.echo(cluster_summary(cluster.rebalance(ctx)))
        return
    if ctx.settings.mode == "worker":
        fail("a worker host has no nginx upstream: its edge weighs it (dograhctl rebalance "
             "there)")
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
    if ctx.settings.mode == "edge":
        found = cluster.status(ctx)
        click.echo(json.dumps(found, indent=2) if as_json else _cluster_text(found))
        sys.exit(1 if found["mismatches"] else 0)
    busy = None
    if is_root():
        try:
            with lock.exclusive(report, wait=0):
                verbs.resume(ctx, staged_too=False)
        except lock.Busy as exc:
            busy = exc.holder
    fleet = status.collect(ctx, busy)
    if as_json:
        click.echo(json.dumps(fleet.as_dict(), indent=2))
    else:
        _print_status(ctx.settings, fleet)
    sys.exit(1 if fleet.mismatches else 0)


def _cluster_text(found: dict[str, Any]) -> str:
    lines = []
    for name, state in found["hosts"].items():
        lines.append(f"Host {name}:")
        for items in state["roles"].values():
            for item in items:
                lines.append(f"  {item['unit']:40} {item['active']}/{item['sub']:9} "
                             f"{item['status']}")
    lines += [f"Host {name}: DOWN ({why})" for name, why in found["down"].items()]
    lines.append("nginx upstream dograh_api: " + (" ".join(found["upstream"]) or "(none)"))
    lines += ["Mismatches:", *(f"  {line}" for line in found["mismatches"])] \
        if found["mismatches"] else ["No mismatches."]
    return "\n".join(lines)


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
    click.echo(f"Capacity: {fleet.capacity['text']}")
    if fleet.capacity["short_of_memory"]:
        click.echo(f"  warning: the fleet cannot use this host's memory; "
                   f"{fleet.capacity['short_of_memory']}")
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
