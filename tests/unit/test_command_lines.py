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
    assert argv[0] == command_lines.INSTALLED, argv
    return argv[1:]


# Each verb's line, and what the CLI must make of it.
DRAIN = command_lines.drain_as_asked
VERBS: list[tuple[Callable[..., list[str]], tuple[Any, ...], list[str], dict[str, Any]]] = [
    (command_lines.scale, (4, DRAIN(300, False)), ["scale"],
     {"workers": 4, "drain_timeout": 300, "no_drain": False}),
    (command_lines.scale, (0, DRAIN(None, True)), ["scale"],
     {"workers": 0, "no_drain": True, "drain_timeout": None}),
    (command_lines.scale, (2, DRAIN(None, False)), ["scale"],
     {"workers": 2, "no_drain": False, "drain_timeout": None}),
    (command_lines.restart, (DRAIN(1260, False),), ["restart"],
     {"drain_timeout": 1260, "force": False}),
    (command_lines.restart, (DRAIN(None, True), True), ["restart"],
     {"force": True, "no_drain": True, "drain_timeout": None}),
    (command_lines.deploy, ("20261206-101500", DRAIN(300, False)), ["deploy"],
     {"release_name": "20261206-101500", "in_place": False, "drain_timeout": 300}),
    (command_lines.deploy, (None, DRAIN(None, True)), ["deploy"],
     {"release_name": None, "in_place": True, "no_drain": True}),
    (command_lines.rollback, (True, DRAIN(None, False)), ["rollback"],
     {"force": True, "drain_timeout": None}),
    (command_lines.release_make, ("/srv/dograh", "v1.42.0", "r1", "dograh", None),
     ["release", "make"], {"source": "/srv/dograh", "ref": "v1.42.0", "release_id": "r1",
                           "layout": "dograh", "app": None}),
    (command_lines.release_make, ("https://example.org/app.git", "", "r2", "app", "m:app"),
     ["release", "make"], {"ref": "", "layout": "app", "app": "m:app"}),
    (command_lines.resume, (), ["resume"], {"switched": False}),
    (command_lines.resume, (True,), ["resume"], {"switched": True}),
    (command_lines.rebalance, (), ["rebalance"], {"lock_wait": 60}),
    (command_lines.rebalance, (0,), ["rebalance"], {"lock_wait": 0}),
    (command_lines.metrics, (paths.METRICS_FILE,), ["metrics"],
     {"output": paths.METRICS_FILE}),
    (command_lines.agent, (), ["agent"], {}),
]
LINES = [(runs, *verb) for verb in VERBS for runs in (command_lines.here, command_lines.installed)]


@pytest.mark.parametrize(("runs", "build", "args", "path", "expected"), LINES,
                         ids=[f"{runs.__name__}-{build.__name__}-{i}"
                              for i, (runs, build, *_) in enumerate(LINES)])
def test_each_line_is_one_the_cli_takes_as_meant(
        runs: Callable[..., list[str]], build: Callable[..., list[str]], args: tuple[Any, ...],
        path: list[str], expected: dict[str, Any]) -> None:
    names, values = parsed(program(runs(CONFIG, build(*args))))
    assert names == path
    assert {key: values[key] for key in expected} == expected
    assert values["config_file"] == str(CONFIG)


def test_every_line_the_module_builds_is_parsed_above() -> None:
    # A mutation run's trampolines add x_<name>__mutmut_<n> beside each function: not lines.
    built = {name for name, function in inspect.getmembers(command_lines, inspect.isfunction)
             if function.__module__ == command_lines.__name__ and not name.startswith("x_")}
    runners = {"here", "installed", "drain_as_asked"}
    assert built - runners == {build.__name__ for build, *_ in VERBS}


def test_the_units_run_lines_of_the_builder(tmp_path: Path) -> None:
    """The unit files' dograhctl lines are the builder's, quoted for systemd."""
    settings = parse(CONFIG, {"DOGRAH_HOSTS": "worker1=10.0.0.11",
                              "DOGRAH_ETCD_ENDPOINTS": "https://10.0.0.10:2379"}, cpus=2)
    rendered = templates.render_units(settings, standing=templates.Standing(
        host_units=(paths.AGENT_UNIT, paths.METRICS_UNIT)))
    for unit, args in ((paths.AGENT_UNIT, command_lines.agent()),
                       (paths.METRICS_UNIT, command_lines.metrics(paths.METRICS_FILE))):
        exec_start = next(line.removeprefix("ExecStart=")
                          for line in rendered[paths.UNIT_DIR / unit].splitlines()
                          if line.startswith("ExecStart="))
        assert exec_start.split() == command_lines.installed(CONFIG, args)
        parsed(program(exec_start.split()))
