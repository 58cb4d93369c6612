"""Every command line one dograhctl builds for another is one the CLI accepts: each is
parsed here by the CLI's own parser, to the values its caller meant."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

from dograh_systemd import cli, command_lines, paths, templates
from dograh_systemd.config import parse

CONFIG = Path("/etc/dograh/dograh.env")


def parsed(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The command path and every parameter's value, as dograhctl would take ``args``."""
    command: click.Command = cli.main
    ctx = command.make_context("dograhctl", list(args))
    names, values = [], dict(ctx.params)
    while isinstance(command, click.Group):
        # click < 8.2 keeps the subcommand's words in protected_args, later ones privately.
        rest = [*ctx.__dict__.get("_protected_args", ctx.__dict__.get("protected_args", [])),
                *ctx.args]
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        names.append(name)
        ctx = sub.make_context(name, rest, parent=ctx)
        values.update(ctx.params)
        command = sub
    assert not ctx.args, f"{args}: left over {ctx.args}"
    return names, values


def program(argv: list[str]) -> list[str]:
    """The arguments after the program, whichever way the line runs dograhctl."""
    if argv[:3] == [sys.executable, "-m", "dograh_systemd"]:
        return argv[3:]
    assert argv[0] in ("dograhctl", command_lines.INSTALLED), argv
    return argv[1:]


# Each verb's line, and what the CLI must make of it.
VERBS: list[tuple[Callable[..., list[str]], tuple[Any, ...], list[str], dict[str, Any]]] = [
    (command_lines.scale, (4, {"campaign-orchestrator", "ari-manager"}, 300), ["scale"],
     {"workers": 4, "singletons": "ari-manager,campaign-orchestrator", "drain_timeout": 300,
      "no_drain": False}),
    (command_lines.scale, (0, set(), None), ["scale"],
     {"workers": 0, "singletons": "", "no_drain": True, "drain_timeout": None}),
    (command_lines.restart, (1260,), ["restart"], {"drain_timeout": 1260, "force": False}),
    (command_lines.restart_as_asked, (True, None, True), ["restart"],
     {"force": True, "no_drain": True, "drain_timeout": None}),
    (command_lines.restart_as_asked, (False, 30, False), ["restart"],
     {"force": False, "no_drain": False, "drain_timeout": 30}),
    (command_lines.deploy, ("20261206-101500", 300), ["deploy"],
     {"release_name": "20261206-101500", "in_place": False, "drain_timeout": 300}),
    (command_lines.deploy, (None, None), ["deploy"],
     {"release_name": None, "in_place": True, "no_drain": True}),
    (command_lines.rollback, (True, 300), ["rollback"], {"force": True, "drain_timeout": 300}),
    (command_lines.release_make, ("/srv/dograh", "v1.42.0", "r1", "dograh", None),
     ["release", "make"], {"source": "/srv/dograh", "ref": "v1.42.0", "release_id": "r1",
                           "layout": "dograh", "app": None}),
    (command_lines.release_make, ("https://example.org/app.git", "", "r2", "app", "m:app"),
     ["release", "make"], {"ref": "", "layout": "app", "app": "m:app"}),
    (command_lines.resume, (), ["resume"], {"switched": False, "background": False}),
    (command_lines.resume, (True, True), ["resume"], {"switched": True, "background": True}),
    (command_lines.status, (), ["status"], {}),
    (command_lines.rebalance, (), ["rebalance"], {"lock_wait": 60}),
    (command_lines.rebalance, (0,), ["rebalance"], {"lock_wait": 0}),
    (command_lines.metrics, (paths.METRICS_FILE,), ["metrics"],
     {"output": paths.METRICS_FILE}),
]


# What this host runs by itself; the edge asks a worker host for the rest too.
LOCAL_ONLY = {command_lines.rebalance, command_lines.metrics}
LINES = [(runs, *verb) for verb in VERBS
         for runs in (command_lines.here, command_lines.installed, command_lines.on_worker_host)
         if runs is not command_lines.on_worker_host or verb[0] not in LOCAL_ONLY]


@pytest.mark.parametrize(("runs", "build", "args", "path", "expected"), LINES,
                         ids=[f"{runs.__name__}-{build.__name__}-{i}"
                              for i, (runs, build, *_) in enumerate(LINES)])
def test_each_line_is_one_the_cli_takes_as_meant(
        runs: Callable[..., list[str]], build: Callable[..., list[str]], args: tuple[Any, ...],
        path: list[str], expected: dict[str, Any]) -> None:
    line = runs(CONFIG, build(*args)) if runs is not command_lines.on_worker_host \
        else runs(build(*args))
    names, values = parsed(program(line))
    assert names == path
    assert {key: values[key] for key in expected} == expected
    if runs is command_lines.on_worker_host:
        assert values["as_json"] is True  # the edge reads what it prints
    else:
        assert values["config_file"] == str(CONFIG)


def test_every_line_the_module_builds_is_parsed_above() -> None:
    built = {name for name, function in inspect.getmembers(command_lines, inspect.isfunction)
             if function.__module__ == command_lines.__name__}
    runners = {"here", "installed", "on_worker_host", "drain"}
    assert built - runners == {build.__name__ for build, *_ in VERBS}


def test_the_timers_run_lines_of_the_builder(tmp_path: Path) -> None:
    """The unit files' dograhctl lines are the builder's, quoted for systemd."""
    settings = parse(CONFIG, {"DOGRAH_HOSTS": "worker1=10.0.0.11"}, cpus=2)
    rendered = templates.render_units(settings, standing=templates.Standing(
        host_units=(paths.CLUSTER_UNIT, paths.METRICS_UNIT)))
    for unit, args in ((paths.CLUSTER_UNIT, command_lines.rebalance(0)),
                       (paths.METRICS_UNIT, command_lines.metrics(paths.METRICS_FILE))):
        exec_start = next(line.removeprefix("ExecStart=")
                          for line in rendered[paths.UNIT_DIR / unit].splitlines()
                          if line.startswith("ExecStart="))
        assert exec_start.split() == command_lines.installed(CONFIG, args)
        parsed(program(exec_start.split()))
