"""Releases: immutable versions of the app, each a directory with its own venv.

A release is made from a source (a git repository, by URL or path, at a ref,
with its submodules; or a plain directory) into
/var/lib/dograh-systemd/releases/<id>/, outside the running fleet: fetched
and built by the build user (``dograh-build``) in a sandbox that may write
nothing but that directory, then sealed (root's, read-only to everyone
else), then checked the way the units would run it (the service user, the
units' environment: the runtime and the app import). Only then is it ready;
a failed build or check changes nothing that runs and says why in one line.

What each release is lies beside it (<id>.json): its source, ref, commit,
version, layout, when it was built, its state, its size, and its
migrations (the files of its migrations directory, which a rollback
compares). Processes run from the directory of the release their units
name, so a deploy never changes the code under a running worker; the
newest DOGRAH_KEEP_RELEASES are kept, and so is any release a process still
runs from.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shlex
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from . import config, paths, probe, schema, templates, values
from .config import Deployed, Settings
from .context import Context
from .errors import DograhError
from .facts import gather
from .host.commands import Completed
from .record import ReleaseName, Store

BUILD_USER = "dograh-build"
# How long a build may take (Dograh's requirements take minutes) and a check.
BUILD_TIMEOUT = 3600
CHECK_TIMEOUT = 300
# Where a layout keeps its migrations, for a rollback to compare.
MIGRATIONS = {"dograh": "api/alembic/versions", "app": ""}
LIMIT = 1 << 20
STATES = ("building", "ready", "failed")
# The layout's own build, and what a warning of it starts with.
BUILD = ["/usr/bin/python3", "-m", "dograh_systemd.build"]
WARNING = "build: warning: "
# A change to how a layout builds its venv makes new layers.
LAYER_RECIPE = "1"
READY = ".ready"
# The longest why a description keeps.
WHY_LIMIT = 2000


@dataclass(frozen=True)
class Release:
    id: str
    source: str
    ref: str
    commit: str       # git's, or "" for a plain directory
    version: str      # git describe, or the directory's name
    layout: str
    app: str          # the ASGI app, module:attribute
    built: float      # wall clock, seconds
    state: str
    why: str = ""     # what failed
    migrations: tuple[str, ...] = ()
    size: int = 0
    # What its build said it did without (offline: NLTK's data, Node, ...).
    notes: tuple[str, ...] = ()

    @property
    def directory(self) -> Path:
        return paths.RELEASES_DIR / self.id

    def deployed(self) -> Deployed:
        return Deployed(self.id, self.directory, self.layout, self.app)


class _Shape(schema.Strict):
    id: ReleaseName  # type: ignore[valid-type]
    source: schema.constr(strict=True, max_length=1000)  # type: ignore[valid-type]
    ref: schema.constr(strict=True, max_length=200)  # type: ignore[valid-type]
    commit: schema.constr(strict=True, regex=r"^[0-9a-f]{0,64}\Z")  # type: ignore[valid-type]
    version: schema.constr(strict=True, max_length=200)  # type: ignore[valid-type]
    layout: schema.constr(strict=True, regex=r"^(dograh|app)\Z")  # type: ignore[valid-type]
    app: schema.constr(strict=True, regex=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")  # type: ignore[valid-type]
    built: schema.confloat(allow_inf_nan=False, ge=0)  # type: ignore[valid-type]
    state: schema.constr(strict=True, regex=r"^(building|ready|failed)\Z")  # type: ignore[valid-type]
    why: schema.constr(strict=True, max_length=WHY_LIMIT)  # type: ignore[valid-type]
    migrations: schema.conlist(schema.constr(strict=True, max_length=300),  # type: ignore[valid-type]
                               max_items=10_000)
    size: schema.conint(strict=True, ge=0)  # type: ignore[valid-type]
    notes: schema.conlist(schema.constr(strict=True, max_length=500),  # type: ignore[valid-type]
                          max_items=10) = []  # noqa: RUF012


def described(ctx: Context, release_id: str) -> Release:
    """What ``release_id`` is; one line when there is no such release."""
    text = ctx.files.read(_metadata(release_id))
    if text is None:
        raise DograhError(f"no release {release_id} on this host (see: dograhctl releases)")
    try:
        data = schema.load(_Shape, text, LIMIT)
    except schema.OutOfShape as exc:
        raise DograhError(f"{_metadata(release_id)} is damaged ({exc})") from None
    return Release(**{**data.dict(), "migrations": tuple(data.migrations),
                      "notes": tuple(data.notes)})


def listing(ctx: Context) -> list[Release]:
    """Every release on this host whose description reads, oldest first (a damaged one
    is named by ``damaged``, and spoils no other)."""
    found = []
    for name in _names(ctx):
        try:
            found.append(described(ctx, name))
        except DograhError:
            continue
    return sorted(found, key=lambda r: (r.built, r.id))


def damaged(ctx: Context) -> dict[str, str]:
    """The releases whose description does not read, and why."""
    found = {}
    for name in _names(ctx):
        try:
            described(ctx, name)
        except DograhError as exc:
            found[name] = str(exc)
    return found


def _names(ctx: Context) -> list[str]:
    return [p.name.removesuffix(".json") for p in ctx.files.listing(paths.RELEASES_DIR)
            if p.name.endswith(".json")]


def resolve(ctx: Context, source: str, ref: str) -> str:
    """The commit ``ref`` names in ``source`` now, so that every host builds the same one
    (a branch moves between fetches); "" for a plain directory, which has none."""
    if source.startswith("/") and not ctx.files.exists(Path(source) / ".git") \
            and not ctx.files.exists(Path(source) / "HEAD") and ctx.files.is_dir(Path(source)):
        return ""
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return ref
    result = ctx.host.run(["git", "-c", "protocol.file.allow=always", "-c", "safe.directory=*",
                           "ls-remote", "--", source, ref or "HEAD"], timeout=120)
    if result.returncode != 0:
        raise DograhError(f"git ls-remote {source} failed: {result.last_line}")
    refs = dict(reversed(line.split("\t", 1)) for line in result.stdout.splitlines()
                if "\t" in line)
    for name in ("HEAD",) if not ref else (f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}",
                                            f"refs/tags/{ref}", ref):
        if name in refs:
            return refs[name]
    raise DograhError(f"{ref} is neither a branch nor a tag of {source} (a commit takes all "
                      "40 of its hex digits)")


def newest_ready(ctx: Context) -> Release:
    ready = [release for release in listing(ctx) if release.state == "ready"]
    if not ready:
        raise DograhError("no release is ready; make one with: dograhctl release make")
    return ready[-1]


def new_id(ctx: Context) -> str:
    """A release's name: when it was made, to the second."""
    stamp = datetime.datetime.fromtimestamp(ctx.clock.time(), datetime.UTC)
    return stamp.strftime("%Y%m%d-%H%M%S")


def make(ctx: Context, source: str, ref: str, layout: str, app: str, release_id: str
         ) -> Release:
    """Fetch, build, seal and check a release of ``app``; its description, ready or failed."""
    files = ctx.files
    if files.exists(_metadata(release_id)) or files.exists(paths.RELEASES_DIR / release_id):
        raise DograhError(f"release {release_id} exists already")
    release = Release(release_id, source, ref, "", "", layout, app, ctx.clock.time(),
                      "building")
    _save(ctx, release)
    for path, text in files.changed(templates.render_build_gitconfig(ctx.settings)).items():
        files.write_generated(path, text)
    files.make_directory(paths.RELEASES_DIR)
    files.hand_over(release.directory, BUILD_USER)
    try:
        ctx.report(f"fetching {source}" + (f" at {ref}" if ref else ""))
        fetched = _as_builder(ctx, release, _fetch(source, ref), "fetching")
        commit, _, version = (fetched.strip().splitlines() or [""])[-1].partition(" ")
        release = replace(release, commit=commit, version=version)
        ctx.report(f"building {release_id} ({version}, {layout} layout)")
        release = replace(release, notes=_build(ctx, release))
        files.seal(release.directory)
        ctx.report(f"checking {release_id} as the service user")
        _check(ctx, release)
    except DograhError as failure:
        files.seal(release.directory)
        release = replace(release, state="failed", why=_bounded(str(failure)))
        _save(ctx, replace(release, size=files.size(release.directory)))
        raise DograhError(f"release {release_id} failed, nothing running changed: "
                          f"{failure}") from None
    migrations = ctx.settings.migrations_dir or MIGRATIONS[layout]
    release = replace(release, state="ready", size=files.size(release.directory),
                      migrations=tuple(sorted(
                          p.name for p in files.listing(release.directory / migrations)
                          if p.suffix == ".py")) if migrations else ())
    _save(ctx, release)
    return release


def _build(ctx: Context, release: Release) -> tuple[str, ...]:
    """The build: the admin's command, or the layout's own (its venv a shared layer when
    one with the same requirements is there, else made and shared from now on); the
    warnings it gave."""
    settings = ctx.settings
    if settings.build_command:
        _as_builder(ctx, release, ["/bin/sh", "-c", shlex.join(settings.build_command)],
                    "the build")
        return ()
    if release.layout == "dograh":
        _python_is_dograhs(ctx, release)
    said = _venv(ctx, release)
    said += _as_builder(ctx, release, [*BUILD, "tree", release.layout], "the build")
    return tuple(line.removeprefix(WARNING)[:500] for line in said.splitlines()
                 if line.startswith(WARNING))[:10]


def _venv(ctx: Context, release: Release) -> str:
    """The release's venv: a link to the layer its requirements share, built first when
    there is none; what the venv's build said."""
    key = _layer_key(ctx, release)
    if key is None:  # nothing to share it by: a venv of its own
        return _as_builder(ctx, release, [*BUILD, "venv", release.layout, "venv"],
                           "building the venv")
    layer = paths.LAYERS_DIR / key
    said = ""
    if not ctx.files.exists(layer / READY):
        ctx.files.remove_tree(layer)  # one an interrupted build left
        ctx.files.make_directory(paths.LAYERS_DIR)
        ctx.files.hand_over(layer, BUILD_USER)
        ctx.report(f"building the venv layer {key} (the next release with these "
                   "requirements shares it)")
        said = _as_builder(ctx, release, [*BUILD, "venv", release.layout, str(layer / "venv")],
                           "building the venv", writable=(layer,))
        # What another layer holds already is one file on disk for both.
        ctx.host.run(["hardlink", "--content", "--keep-oldest", "--quiet",
                      str(ctx.files.path(paths.LAYERS_DIR))], timeout=BUILD_TIMEOUT)
        ctx.files.seal(layer)
        ctx.files.write_atomic(layer / READY, f"{release.id}\n")
    else:
        ctx.report(f"the venv is layer {key}, made for an earlier release")
    # Relative, so that it holds wherever the state directory is seen from.
    ctx.files.link(release.directory / "venv",
                   Path(os.path.relpath(layer / "venv", release.directory)))
    return said


def _layer_key(ctx: Context, release: Release) -> str | None:
    """What a venv is made of, as a name: the layout's build, the Python, the requirements
    (and Dograh's pipecat commit). None where the venv holds the app itself."""
    files, directory = ctx.files, release.directory
    requirements = {"dograh": "api/requirements.txt", "app": "requirements.txt"}[release.layout]
    text = files.read(directory / requirements)
    if text is None:
        return None
    python = ctx.host.run([str(ctx.settings.build_python), "--version"]).stdout.strip()
    parts = [LAYER_RECIPE, release.layout, python, text]
    if release.layout == "dograh":
        parts.append(ctx.host.run(["git", "-c", "safe.directory=*", "-C",
                                   str(files.path(directory / "pipecat")), "rev-parse", "HEAD"]
                                  ).stdout.strip())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _python_is_dograhs(ctx: Context, release: Release) -> None:
    """Dograh's layout on a Python older (or newer) than it asks for is refused before
    anything is built."""
    text = ctx.files.read(release.directory / "api/pyproject.toml") or ""
    try:
        project = tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError:
        return
    wanted = project.get("requires-python", "")
    python = ctx.settings.build_python
    found = ctx.host.run([str(python), "-c", "import sys; print('%d.%d.%d' % "
                          "sys.version_info[:3])"]).stdout.strip()
    if not found:
        raise DograhError(f"DOGRAH_BUILD_PYTHON={python} does not run")
    if wanted and not values.version_in(found, wanted):
        raise DograhError(f"Dograh {project.get('version', '')} needs Python {wanted}, and "
                          f"DOGRAH_BUILD_PYTHON={python} is {found}: set DOGRAH_BUILD_PYTHON "
                          "to a Python that fits (Debian 13's python3 is 3.13)")


def _bounded(why: str) -> str:
    """What failed, within what a description keeps (its log keeps it whole)."""
    return why if len(why) <= WHY_LIMIT else why[:WHY_LIMIT - 1] + "…"


def app_of(settings: Settings, layout: str, asked: str | None) -> str:
    """The app a release serves: as asked, else Dograh's for its layout, else DOGRAH_APP."""
    if asked:
        return asked
    if layout == "dograh":
        return config.dograh_layout("")["DOGRAH_APP"]
    if settings.app == config.EXAMPLE_APP:
        raise DograhError("a release of the app layout needs its app: --app module:attribute, "
                          "or DOGRAH_APP")
    return settings.app


def settings_for(ctx: Context, release: Release | None) -> Settings:
    """This host's settings for a fleet on ``release`` (None: the config's app, in place)."""
    return config.load(ctx.settings.config_path, files=ctx.files,
                       release=release.deployed() if release else None)


def deployed(ctx: Context) -> str:
    """The release the fleet runs (or moves onto, while an operation is at work); "" for
    the config's own app."""
    record = Store(ctx.files).load()
    if record is None:
        return ""
    return (record.operation.target if record.operation else record.fleet).release


def in_use(ctx: Context) -> set[str]:
    """Releases a process of the fleet runs from now."""
    found = set()
    units = ctx.systemd.listed("dograh-*")
    for state in ctx.systemd.show(units).values():
        cwd = ctx.host.machine.cwd(state.pid) if state.pid else None
        if cwd is not None and cwd.is_relative_to(paths.RELEASES_DIR):
            found.add(cwd.relative_to(paths.RELEASES_DIR).parts[0])
    return found


def prune(ctx: Context, keep: int, protect: set[str]) -> list[str]:
    """Remove releases past the newest ``keep``, except those in ``protect`` or that a
    process runs from; the ones removed."""
    protected = protect | in_use(ctx)
    releases = listing(ctx)
    newest = {release.id for release in releases[-keep:]}
    removed = []
    for release in releases:
        if release.id in newest or release.id in protected or release.state == "building":
            continue
        ctx.files.remove_tree(release.directory)
        ctx.files.unlink(_metadata(release.id))
        ctx.files.unlink(_log(release.id))
        removed.append(release.id)
    _prune_layers(ctx)
    return removed


def _prune_layers(ctx: Context) -> None:
    """Layers no release's venv is any more, and those an interrupted build left."""
    used = {target.parent.name for name in _names(ctx)
            if (target := ctx.files.link_target(paths.RELEASES_DIR / name / "venv"))}
    building = {release.id for release in listing(ctx) if release.state == "building"}
    for layer in ctx.files.listing(paths.LAYERS_DIR):
        if layer.name not in used and not building:
            ctx.files.remove_tree(layer)


def unknown_migrations(newer: Release, older: Release) -> list[str]:
    """The migrations ``newer`` brought that ``older`` does not know."""
    return sorted(set(newer.migrations) - set(older.migrations))


# -- steps ---------------------------------------------------------------------------

def _fetch(source: str, ref: str) -> list[str]:
    """A script that fetches ``source`` into the working directory and prints its last
    line: the commit and the version (git describe; a plain directory: its name)."""
    # A repository on this host may have its submodules on this host too: git refuses
    # the file protocol for submodules unless told.
    local = ["-c", "protocol.file.allow=always"] if source.startswith("/") else []
    git = shlex.join(["git", *local])
    quoted = shlex.quote(source)
    clone = (f"{git} clone --quiet --no-checkout -- {quoted} .\n"
             f"{git} checkout --quiet --detach {shlex.quote(ref or 'HEAD')}\n"
             # A submodule whose pinned commit its source lacks is named, not git's words.
             f"if ! {git} submodule --quiet update --init --recursive; then\n"
             f"  {git} ls-files --stage | while read -r mode sha stage path; do\n"
             f'    [ "$mode" = 160000 ] || continue\n'
             f'    {git} -C "$path" cat-file -e "$sha^{{commit}}" 2>/dev/null || echo '
             f'"submodule $path is pinned to $sha, which its source does not have" >&2\n'
             f"  done\n  exit 1\nfi\n"
             f'echo "$({git} rev-parse HEAD) $({git} describe --tags --always)"\n')
    if not source.startswith("/"):
        return ["/bin/sh", "-ec", clone]
    copy = f'cp -a --no-preserve=ownership {quoted}/. .\necho " $(basename {quoted})"\n'
    # A repository (its .git, or a bare one), or a git bundle file, is cloned.
    return ["/bin/sh", "-ec", f"if [ -e {quoted}/.git ] || [ -e {quoted}/HEAD ] || "
            f"[ -f {quoted} ]; then\n{clone}else\n{copy}fi"]


def _as_builder(ctx: Context, release: Release, argv: Sequence[str], what: str,
                writable: Sequence[Path] = ()) -> str:
    """``argv`` as the build user in ``release``'s directory, which (with ``writable``) is
    all it may write; its output."""
    directory = release.directory
    result = ctx.host.run([
        "systemd-run", "--quiet", "--pipe", "--wait", "--collect", "--service-type=exec",
        f"--property=User={BUILD_USER}", f"--property=Group={BUILD_USER}",
        f"--property=WorkingDirectory={directory}", "--property=ProtectSystem=strict",
        f"--property=ReadWritePaths={' '.join(map(str, (directory, *writable)))}",
        "--property=ProtectHome=yes",
        "--property=PrivateTmp=yes", "--property=NoNewPrivileges=yes",
        f"--property=CacheDirectory={BUILD_USER}",
        f"--property=Environment=HOME=/var/cache/{BUILD_USER} "
        f"GIT_CONFIG_GLOBAL={paths.BUILD_GITCONFIG} "
        f"DOGRAH_BUILD_PYTHON={ctx.settings.build_python}",
        f"--property=RuntimeMaxSec={BUILD_TIMEOUT}", "--", *argv], timeout=BUILD_TIMEOUT + 60)
    _keep_output(ctx, release, argv, result)
    if result.returncode != 0:
        raise DograhError(f"{what} failed: {result.last_line}")
    return result.stdout


def _check(ctx: Context, release: Release) -> None:
    """The runtime and the app import, as the service user with the units' environment."""
    settings = settings_for(ctx, release)
    checking = replace(ctx, settings=settings, facts=gather(ctx.host))
    module, attribute = settings.app.split(":")
    code = (f"import sys; sys.path.insert(0, {str(settings.app_dir)!r}); "
            "import dograh_systemd.worker.runtime, importlib, functools; "
            f"functools.reduce(getattr, {attribute!r}.split('.'), "
            f"importlib.import_module({module!r}))")
    result = probe.run(checking, [str(settings.python), "-c", code], timeout=CHECK_TIMEOUT)
    _keep_output(ctx, release, ["check"], result)
    if result.returncode != 0:
        raise DograhError(f"the check failed: {settings.app} does not import: "
                          f"{result.last_line}")


def _keep_output(ctx: Context, release: Release, argv: Sequence[str], result: Completed
                 ) -> None:
    """What a step printed, kept beside the release (root's) for the admin."""
    log = _log(release.id)
    before = ctx.files.read(log) or ""
    ctx.files.write_atomic(log, before + f"$ {shlex.join(argv)}\n{result.stdout}"
                           f"{result.stderr}(exit {result.returncode})\n", mode=0o600)


def _save(ctx: Context, release: Release) -> None:
    data = {**release.__dict__, "migrations": list(release.migrations),
            "notes": list(release.notes)}
    ctx.files.write_atomic(_metadata(release.id), schema.dumps(data))


def _metadata(release_id: str) -> Path:
    return paths.RELEASES_DIR / f"{release_id}.json"


def _log(release_id: str) -> Path:
    return paths.RELEASES_DIR / f"{release_id}.log"
