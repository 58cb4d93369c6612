"""dograhctl: scale, deploy, render and inspect the Dograh fleet (the click CLI).

Arguments become one ``Change`` (or a plain call); this host's mode (chosen
once from the config, see modes/) answers, handed the context; the answer is
printed, as text or ``--json``, with its exit code.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click

from . import (
    __version__,
    command_lines,
    config,
    modes,
    paths,
    releases,
    services,
    uninstall,
    values,
)
from .cluster import setup
from .config import ConfigError, Settings
from .context import Context
from .errors import DograhError
from .facts import Facts, gather
from .host import Host
from .host.lock import WAIT, Busy
from .modes.mode import Answer, Change, Mode, ReleaseRequest
from .roles import API, Kind, of_kind

POOLS = {role.name: role for role in of_kind(Kind.POOL)}


def report(message: str) -> None:
    click.echo(message, err=True)


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


class Waited(click.ClickException):
    """Another dograhctl holds the lock: try again later (EX_TEMPFAIL)."""

    exit_code = 75


@dataclass(frozen=True)
class Options:
    config: Path
    lock_wait: int
    host: Host


@click.group()
@click.version_option(__version__, prog_name="dograhctl")
@click.option("--config", "config_file", metavar="FILE", envvar="DOGRAH_CONFIG",
              help=f"Env file to read, an absolute path [default: {config.DEFAULT_CONFIG}; "
                   "env: DOGRAH_CONFIG].")
@click.option("--lock-wait", type=click.IntRange(0, 86400), default=int(WAIT),
              show_default=True, metavar="SECONDS",
              help="How long a changing command waits for another one to finish.")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, lock_wait: int) -> None:
    """Run Dograh's API workers, ARQ workers and singletons as systemd units behind nginx.

    A changing command first finishes an operation that an interrupted dograhctl
    left, so there is always one band of workers in nginx.
    """
    try:
        ctx.obj = Options(config.config_path(config_file), lock_wait,
                          ctx.obj if isinstance(ctx.obj, Host) else Host.here())
    except ConfigError as exc:
        fail(str(exc))


def options() -> Options:
    return click.get_current_context().find_object(Options)  # type: ignore[return-value]


def needs_root(command: Callable[..., Any]) -> Callable[..., Any]:
    """Changing commands write to /etc and drive systemd: refuse early, clearly."""
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not options().host.machine.is_root():
            name = click.get_current_context().info_name
            fail(f"'{name}' changes systemd and nginx and must run as root "
                 f"(try: sudo dograhctl {name})")
        return command(*args, **kwargs)
    return wrapper


def pass_context(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command its Context and this host's mode; a bad config file, or any
    DograhError, is one line."""
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        chosen = options()
        try:
            ctx = handed(chosen)
        except ConfigError as exc:
            fail(str(exc))
        except DograhError as exc:
            fail(str(exc))
        try:
            return command(ctx, modes.choose(ctx.settings), *args, **kwargs)
        except Busy as exc:
            raise Waited(str(exc)) from None
        except DograhError as exc:
            fail(str(exc))
    return wrapper


def handed(chosen: Options, facts: Facts | None = None) -> Context:
    """The settings of the config file, for the release the fleet runs if it runs one;
    the host's ``facts`` as gathered before, if given (an agent's cycle gathers none)."""
    settings = config.load(chosen.config, files=chosen.host.files, machine=chosen.host.machine)
    ctx = Context(settings, report, chosen.host, facts or gather(chosen.host))
    running = releases.deployed(ctx)
    if not running:
        return ctx
    try:
        release = releases.described(ctx, running)
    except DograhError as exc:  # it went: the config's app, until the next deploy
        report(f"warning: {exc}; move the fleet onto a release with dograhctl deploy, or "
               "back in place with: dograhctl deploy --in-place")
        return ctx
    return replace(ctx, settings=releases.settings_for(ctx, release))


def exclusive(ctx: Context, mode: Mode) -> contextlib.AbstractContextManager[None]:
    """The host's lock for a changing verb, where the mode holds it throughout."""
    return ctx.host.lock(report, options().lock_wait) if mode.holds_lock \
        else contextlib.nullcontext()


def locked(command: Callable[..., Any]) -> Callable[..., Any]:
    """One changing command at a time."""
    @wraps(command)
    def wrapper(ctx: Context, mode: Mode, *args: Any, **kwargs: Any) -> Any:
        with exclusive(ctx, mode):
            return command(ctx, mode, *args, **kwargs)
    return wrapper


def emit(answer: Answer, as_json: bool) -> None:
    click.echo(json.dumps(answer.data, indent=2) if as_json else answer.text)
    if answer.code:
        sys.exit(answer.code)


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON, for scripts.")(command)


def drain_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--drain-timeout and --no-drain, shared by the commands that stop workers."""
    command = click.option("--no-drain", is_flag=True,
                           help="Stop leaving workers at once, cutting their calls.")(command)
    return click.option("--drain-timeout", type=click.IntRange(0, 86400), metavar="SECONDS",
                        help="Longest wait for a leaving worker's calls to end "
                             "[default: DRAIN_TIMEOUT, 300].")(command)


def drain_limit(settings: Settings, drain_timeout: int | None, no_drain: bool) -> float | None:
    if no_drain:
        return None
    return settings.drain_timeout if drain_timeout is None else drain_timeout


def drain_change(settings: Settings, drain_timeout: int | None, no_drain: bool
                 ) -> dict[str, Any]:
    """A Change's drain: the limit here, and whether the admin gave it."""
    return {"drain_timeout": drain_limit(settings, drain_timeout, no_drain),
            "drain_given": no_drain or drain_timeout is not None}


def stage_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--stage", is_flag=True,
                        help="Stop once the new workers are READY; resume (or the next "
                             "changing command) finishes.")(command)


def in_background(ctx: Context, mode: Mode, args: Sequence[str], as_json: bool) -> None:
    """Run this dograhctl command as the transient dograh-deploy.service and return at once
    (the package's upgrade does: dpkg never waits for a drain)."""
    ctx.systemd.run_detached(paths.DEPLOY_UNIT, "Dograh: finish a deploy, dropping no call "
                             f"(dograhctl {args[0]})",
                             command_lines.here(ctx.settings.config_path, args))
    ctx.report(f"it runs as {paths.DEPLOY_UNIT}; follow it with: "
               f"journalctl -f -u {paths.DEPLOY_UNIT}")
    if as_json:
        # What the host looks like now, for its edge: data, whatever it says.
        click.echo(json.dumps(mode.status(ctx).data, indent=2))


@main.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Write under this directory instead (a staging root).")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@pass_context
def render(ctx: Context, mode: Mode, root: Path, dry_run: bool) -> None:
    """Write the generated files from the templates.

    On the live root this applies what moves no process (the nginx site,
    dograh.target); changed unit definitions are applied by scale and restart,
    which move the running processes onto them.
    """
    live = root.resolve() == Path("/")
    if live and not dry_run:
        if not ctx.host.machine.is_root():
            fail("'render' to / changes systemd and nginx and must run as root "
                 "(try: sudo dograhctl render, or --root DIR)")
        with ctx.host.lock(report, options().lock_wait):
            changes = mode.render(ctx, Path("/"), dry_run)
    else:
        changes = mode.render(ctx, root.resolve(), dry_run)
    verb = "would change" if dry_run else "changed"
    report(f"{len(changes)} file(s) {verb}" + "".join(f"\n  {p}" for p in changes))


def host_counts(pairs: tuple[str, ...]) -> dict[str, int]:
    counts = {}
    for pair in pairs:
        name, _, count = pair.partition("=")
        try:
            counts[values.host_name(name)] = values.int_in(0, API.count_max)(count)
        except ValueError:
            fail(f"--host {pair!r}: give NAME=N with N a plain number 0..{API.count_max}, "
                 "e.g. --host worker1=4")
    return counts


# Negative numbers must reach the range check, not be taken for options.
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("workers", required=False, type=click.IntRange(0, API.count_max))
@click.option("--arq", type=click.IntRange(POOLS["arq"].count_min, POOLS["arq"].count_max),
              metavar="M", help="Number of ARQ workers [default: as now, or ARQ_WORKERS].")
@click.option("--force", is_flag=True, help="Start workers even when memory looks short.")
@click.option("--host", "per_host", multiple=True, metavar="NAME=N",
              help="On an edge: this host's API workers; the others share the rest by "
                   "their CPUs.")
@stage_option
@json_option
@drain_options
@needs_root
@pass_context
@locked
def scale(ctx: Context, mode: Mode, workers: int | None, arq: int | None, force: bool,
          per_host: tuple[str, ...], stage: bool, as_json: bool, drain_timeout: int | None,
          no_drain: bool) -> None:
    """Run WORKERS API workers (default: FASTAPI_WORKERS) behind nginx.

    New workers join nginx once READY; leaving ones leave nginx first, drain,
    then stop. When the unit definitions or the app's environment changed
    since the fleet started (an edited env file, a new DOGRAH_APP), every
    process moves onto them the way restart does, dropping no call, so the
    fleet never serves two definitions at once. On an edge, the workers are
    spread over the worker hosts (DOGRAH_HOSTS) by their CPUs, or as --host
    says; on a worker host, the change waits for its edges to switch.
    """
    change = Change(api_workers=workers, pools={} if arq is None else {"arq": arq}, force=force,
                    stage=stage, per_host=host_counts(per_host),
                    **drain_change(ctx.settings, drain_timeout, no_drain))
    emit(mode.scale(ctx, change), as_json)


@main.command()
@click.option("--force", is_flag=True, help="Start the new band even when memory looks short.")
@click.option("--background", is_flag=True,
              help=f"Run as the transient unit {paths.DEPLOY_UNIT} and return at once "
                   "(the package's upgrade does: dpkg never waits for a drain).")
@stage_option
@json_option
@drain_options
@needs_root
@pass_context
def restart(ctx: Context, mode: Mode, force: bool, background: bool, stage: bool,
            as_json: bool, drain_timeout: int | None, no_drain: bool) -> None:
    """Replace every worker with a fresh one on the current code, dropping no call.

    Migrations run first. A new band of API workers (base port + 100, or back)
    starts and becomes READY, nginx switches to it, and the old band drains,
    then stops. ARQ workers then restart one at a time; each singleton stops
    before it starts again. A fleet stopped with systemctl stop dograh.target
    stays stopped: only its units are updated.
    """
    if background:
        in_background(ctx, mode, command_lines.restart(
            command_lines.drain_as_asked(drain_timeout, no_drain), force), as_json)
        return
    change = Change(force=force, stage=stage,
                    **drain_change(ctx.settings, drain_timeout, no_drain))
    with exclusive(ctx, mode):
        answer = mode.restart(ctx, change)
    emit(answer, as_json)


@main.group()
def release() -> None:
    """Make releases: immutable versions of the app, each with its own venv."""


@release.command("make")
@click.argument("source", required=False)
@click.option("--ref", metavar="REF", help="A branch, tag or commit [default: "
              "DOGRAH_SOURCE_REF, else the default branch].")
@click.option("--layout", type=click.Choice(config.LAYOUTS),
              help="How to build and run it [default: DOGRAH_SOURCE_LAYOUT, dograh].")
@click.option("--app", metavar="MODULE:ATTR", help="The ASGI app it serves [default: "
              "Dograh's api.app:app, or DOGRAH_APP].")
@click.option("--id", "release_id", metavar="ID", help="Its name [default: when it is made, "
              "e.g. 20261203-081500]; an edge names it for all its hosts.")
@json_option
@needs_root
@pass_context
def release_make(ctx: Context, mode: Mode, source: str | None, ref: str | None, layout: str | None,
                 app: str | None, release_id: str | None, as_json: bool) -> None:
    """Make a release from SOURCE (default: DOGRAH_SOURCE): a git repository (URL or
    path, with its submodules) or a directory, fetched and built by the build user
    into a directory of its own, checked as the service user, then ready to deploy.
    Nothing that runs changes."""
    try:
        request = ReleaseRequest(
            source=values.optional_source(source or "") if source else None,
            ref=values.git_ref(ref) if ref is not None else None, layout=layout,
            app=values.app_ref(app) if app else None,
            id=values.release_id(release_id) if release_id else None)
    except ValueError as exc:
        fail(f"release make: {exc or 'a bad argument'}")
    emit(mode.make_release(ctx, request), as_json)


@main.command("releases")
@json_option
@pass_context
def releases_command(ctx: Context, mode: Mode, as_json: bool) -> None:
    """The releases on this host: name, version, state, when built, size, source, and
    which one runs, ran before, or is still in use."""
    emit(mode.releases(ctx), as_json)


@main.command()
@click.argument("release_name", metavar="[RELEASE]", required=False)
@click.option("--in-place", is_flag=True, help="Back to the config's app (DOGRAH_CHECKOUT, "
              "DOGRAH_APP_DIR), out of releases.")
@click.option("--force", is_flag=True, help="Start the new band even when memory looks short.")
@json_option
@drain_options
@needs_root
@pass_context
@locked
def deploy(ctx: Context, mode: Mode, release_name: str | None, in_place: bool, force: bool,
           as_json: bool, drain_timeout: int | None, no_drain: bool) -> None:
    """Move every process onto RELEASE (default: the newest ready), dropping no call:
    its migrations first, then a new band of API workers, nginx switches, the old band
    drains and stops, then the ARQ workers and singletons."""
    if in_place and release_name:
        fail("deploy: give a RELEASE or --in-place, not both")
    try:
        release_id = None if in_place else values.release_id(release_name) if release_name \
            else ""
    except ValueError:
        fail(f"deploy: {release_name!r} is not a release name")
    change = Change(force=force, **drain_change(ctx.settings, drain_timeout, no_drain))
    emit(mode.deploy(ctx, change, release_id), as_json)


@main.command()
@click.option("--force", is_flag=True, help="Even when the newer release ran migrations the "
              "older one does not know.")
@json_option
@drain_options
@needs_root
@pass_context
@locked
def rollback(ctx: Context, mode: Mode, force: bool, as_json: bool, drain_timeout: int | None,
             no_drain: bool) -> None:
    """Move every process back onto the release that ran before, dropping no call."""
    change = Change(unknown_migrations=force,
                    **drain_change(ctx.settings, drain_timeout, no_drain))
    emit(mode.rollback(ctx, change), as_json)


@main.command()
@click.option("--switched", is_flag=True,
              help="On a worker host: every edge sends to the new workers now (what its "
                   "agent runs), so the old ones may drain and stop.")
@json_option
@needs_root
@pass_context
def resume(ctx: Context, mode: Mode, switched: bool, as_json: bool) -> None:
    """Finish an operation an interrupted (or staged) command left; nothing else."""
    with exclusive(ctx, mode):
        answer = mode.resume(ctx, switched)
    emit(answer, as_json)


@main.command()
@needs_root
@pass_context
@locked
def rebalance(ctx: Context, mode: Mode) -> None:
    """Re-weigh the nginx upstream from the workers' live calls (runs by itself after a scale).

    On an edge: the upstream from the worker hosts' registrations (the agent renders it
    whenever one changes), weighed again."""
    emit(mode.rebalance(ctx), False)


@main.command()
@needs_root
@pass_context
def agent(ctx: Context, mode: Mode) -> None:
    """Run this host's agent in its cluster until SIGTERM (what dograh-agent.service runs):
    its lease, its registration, its singletons, and what the edges ask of it."""
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    chosen = options()

    def refresh() -> Context:
        """The config as it is now (an edit reaches the agent without a restart)."""
        try:
            return handed(chosen, ctx.facts)
        except (ConfigError, DograhError) as exc:
            report(f"warning: {exc}; going on with the config as it was")
            return ctx
    mode.agent(ctx, stop, refresh)


@main.group("services")
def services_group() -> None:
    """Dograh's own services on this host, from Debian: PostgreSQL with pgvector, Redis."""


@services_group.command("setup")
@needs_root
@pass_context
def services_setup(ctx: Context, mode: Mode) -> None:
    """Install and set up PostgreSQL 17 with pgvector and Redis here, a role and database of
    the app's own, DATABASE_URL and REDIS_URL for the units, and Dograh's secrets."""
    with ctx.host.lock(report, options().lock_wait):
        click.echo(services.setup(ctx))


@main.group("etcd")
def etcd_group() -> None:
    """Set up the cluster's etcd: members from Debian's etcd-server, or an existing one."""


def host_addresses(pairs: tuple[str, ...], option: str) -> tuple[tuple[str, str], ...]:
    try:
        return values.host_list(" ".join(pairs))
    except ValueError as exc:
        fail(f"{option}: {exc}")


@etcd_group.command("create")
@click.option("--member", "members", multiple=True, metavar="NAME=ADDRESS",
              help="A host that runs a member of etcd (three or five), this one among them.")
@click.option("--edge", "edges", multiple=True, metavar="NAME",
              help="An edge of the cluster [default: this host, if it is one].")
@click.option("--worker", "workers", multiple=True, metavar="NAME",
              help="A worker host of the cluster [default: those of DOGRAH_HOSTS].")
@click.option("--existing", "existing", multiple=True, metavar="URL",
              help="An etcd the site runs already, by its client URLs: only users are made.")
@click.option("--ca", type=click.Path(dir_okay=False, path_type=Path),
              help="With --existing: the CA certificate its members present.")
@click.option("--root-password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="With --existing: a file with the password of its root user.")
@needs_root
@pass_context
def etcd_create(ctx: Context, mode: Mode, members: tuple[str, ...], edges: tuple[str, ...],
                workers: tuple[str, ...], existing: tuple[str, ...], ca: Path | None,
                root_password_file: Path | None) -> None:
    """Create the cluster's etcd (or its users in an existing one), and a file each other
    host joins with (dograhctl etcd join FILE)."""
    settings = ctx.settings
    named_edges = edges or ((settings.host_name,) if settings.hosts else ())
    named_workers = workers or tuple(name for name, _ in settings.hosts)
    try:
        names = [values.host_name(name) for name in (*named_edges, *named_workers)]
    except ValueError as exc:
        fail(f"--edge, --worker: {exc}")
    if not names:
        fail("name the cluster's hosts: --edge NAME, --worker NAME (or set DOGRAH_HOSTS)")
    if existing:
        if members or ca is None or root_password_file is None:
            fail("--existing takes --ca and --root-password-file, and no --member")
        try:
            endpoints = values.endpoint_list(" ".join(existing))
        except ValueError as exc:
            fail(f"--existing: {exc}")
        cluster = setup.Cluster(settings.cluster, (), named_edges, named_workers)
        password = (ctx.files.read(root_password_file.absolute()) or "").strip()
        click.echo(setup.create_users(ctx, cluster, endpoints, ca.absolute(), password))
        return
    found = host_addresses(members, "--member")
    if len(found) not in (1, 3, 5, 7):
        fail(f"--member: {len(found)} members; etcd wants an odd number: 3 or 5 (1 to try)")
    with ctx.host.lock(report, options().lock_wait):
        click.echo(setup.create(ctx, setup.Cluster(settings.cluster, found, named_edges,
                                                   named_workers)))


@etcd_group.command("join")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@needs_root
@pass_context
def etcd_join(ctx: Context, mode: Mode, file: Path) -> None:
    """Join this host to the cluster FILE describes (made by dograhctl etcd create)."""
    with ctx.host.lock(report, options().lock_wait):
        click.echo(setup.join(ctx, file.read_bytes()))


@main.command()
@needs_root
@pass_context
def doctor(ctx: Context, mode: Mode) -> None:
    """Check everything a start needs (interpreter, imports, env files, ports, nginx,
    Redis and the database) and say what to fix; exit 1 if anything fails."""
    checks = mode.checks(ctx)
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
    host = options().host
    try:
        with host.lock(report, options().lock_wait):
            uninstall.uninstall(host, report)
    except DograhError as exc:
        fail(str(exc))


@main.command("status")
@json_option
@pass_context
def status_command(ctx: Context, mode: Mode, as_json: bool) -> None:
    """The fleet record against what systemd runs and nginx has; exit 1 when they disagree.

    It never changes anything: an operation an interrupted command left is named,
    with the command that finishes it.
    """
    emit(mode.status(ctx), as_json)


@main.command("metrics")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write them to FILE atomically (node-exporter's textfile collector reads "
                   f"{paths.TEXTFILE_DIR}/*.prom) instead of printing them.")
@pass_context
def metrics_command(ctx: Context, mode: Mode, output: Path | None) -> None:
    """This host's fleet in Prometheus' text format: calls, requests, loop lag, restarts,
    the call ceiling, the last deploy, certificates, hosts (dograh-metrics.timer writes
    them every 15 s)."""
    text = mode.metrics(ctx)
    if output is None:
        click.echo(text, nl=False)
    else:
        ctx.files.write_atomic(output.absolute(), text)


def run(argv: Sequence[str] | None = None, host: Host | None = None) -> None:
    """The ``dograhctl`` entry point: every error is one line on stderr."""
    try:
        code = main.main(args=argv, prog_name="dograhctl", standalone_mode=False, obj=host)
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

