"""How many deliberate bugs in the core the unit tests catch: a mutation run with mutmut.

mutmut changes the core modules one small edit at a time (a comparison turned
around, a constant moved by one, a call left out) and runs the unit tests that
cover each change; a mutant the tests let through is a gap. The modules and
the tests come from ``[tool.mutmut]`` in pyproject.toml.

    make mutate                          # bench/results/mutation.md: the score per
                                         # module, and every survivor
    python -m bench.mutation --again     # after new tests: only the last run's survivors
    python -m bench.mutation --again --only dograh_systemd.etcd   # those of some modules
    python -m bench.mutation --report    # the report of what mutmut holds, nothing run
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench/results/mutation.md"
MUTMUT = [sys.executable, "-m", "mutmut"]
_NAME = re.compile(r"^\s*(?P<name>[\w.]+)__mutmut_\d+: (?P<state>[\w ]+)$")


def mutmut(*args: str) -> str:
    return subprocess.run([*MUTMUT, *args], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout


def module_of(mutant: str) -> str:
    """dograh_systemd.modes.edge.xǁEdgeǁscale__mutmut_3 -> dograh_systemd/modes/edge.py"""
    parts = mutant.split(".")
    path = next(REPO.joinpath(*parts[:end]).with_suffix(".py")
                for end in range(len(parts), 0, -1)
                if REPO.joinpath(*parts[:end]).with_suffix(".py").exists())
    return str(path.relative_to(REPO))


def bring_up_to_date() -> None:
    """The mutants made afresh for the code as it is (a module new to the list gets its
    mutants, not checked yet), and which tests cover what measured, testing none."""
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    for path in listed:
        # An earlier run copied a module it did not mutate; mutmut takes a copy newer than
        # its source for mutants already made, and would never make them.
        if not (REPO / "mutants" / f"{path}.meta").exists():
            (REPO / "mutants" / path).unlink(missing_ok=True)
    # mutmut has no command that only makes mutants: a filter that matches none makes them,
    # measures the tests, then stops saying that nothing matches.
    done = subprocess.run([*MUTMUT, "run", "none-of-them*"], cwd=REPO, capture_output=True,
                          text=True)
    if done.returncode and "nothing matches" not in done.stdout + done.stderr:
        raise SystemExit(f"mutmut could not make the mutants:\n{done.stdout}{done.stderr}")


def alive() -> list[str]:
    """The mutants the last run left alive (survived, or covered by no test), and those
    of functions changed since (mutmut forgets their results)."""
    return [line.split(":")[0].strip() for line in mutmut("results", "--all", "true").splitlines()
            if line.rstrip().endswith((": survived", ": no tests", ": not checked"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--again", action="store_true",
                     help="rerun only the last run's survivors (after new tests), keeping its "
                          "other results")
    how.add_argument("--report", action="store_true",
                     help="only write the report of the results mutmut holds")
    parser.add_argument("--only", nargs="+", default=[], metavar="MODULE",
                        help="with --again: only the survivors of these modules (dotted)")
    args = parser.parse_args()
    began = time.monotonic()
    stopped = False
    try:
        if args.again:
            # Which tests cover which function is measured afresh: the new tests count.
            (REPO / "mutants/mutmut-stats.json").unlink(missing_ok=True)
            bring_up_to_date()
            again = [name for name in alive()
                     if not args.only or name.startswith(tuple(f"{m}." for m in args.only))]
            if again:  # none named would be every mutant
                subprocess.run([*MUTMUT, "run", *again], cwd=REPO, stdout=subprocess.DEVNULL,
                               check=True)
        elif not args.report:
            shutil.rmtree(REPO / "mutants", ignore_errors=True)
            subprocess.run([*MUTMUT, "run"], cwd=REPO, stdout=subprocess.DEVNULL, check=True)
    except KeyboardInterrupt:
        stopped = True  # what ran so far is kept by mutmut: reported below
    took = time.monotonic() - began
    how_run = ("`make mutate` then `--again`" + (f" over {', '.join(args.only)}"
                                                  if args.only else "") if args.again else
               "`make mutate`" if not args.report else "the last `make mutate`")
    if not args.report:
        how_run += f", {took / 60:.0f} min"
    if stopped:
        how_run += " (stopped before its end: a mutant not run again keeps its earlier result)"
    write_report(how_run)


def write_report(how_run: str) -> None:
    """The score per module, and every survivor by name (``mutmut show NAME`` shows it)."""
    states: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    survivors: dict[str, list[str]] = collections.defaultdict(list)
    for line in mutmut("results", "--all", "true").splitlines():
        found = _NAME.match(line)
        if not found:
            continue
        mutant = line.split(":")[0].strip()
        states[module_of(mutant)][found.group("state")] += 1
        if found.group("state") in ("survived", "no tests"):
            function, number = mutant.rsplit("__mutmut_", 1)
            survivors[function].append(number)
    killed = sum(c["killed"] + c["timeout"] for c in states.values())
    total = sum(sum(c.values()) for c in states.values())
    cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    lines = ["# Mutation run", "",
             f"{how_run} ({mutmut('--version').strip()}, {cpus} CPUs): **{killed} of {total} "
             f"mutants killed ({100 * killed / total:.1f} %)** by tests/unit.", "",
             "| module | mutants | killed | survived | covered by no test | score |",
             "|---|---|---|---|---|---|"]
    for module, counts in sorted(states.items()):
        dead = counts["killed"] + counts["timeout"]
        lines.append(f"| `{module}` | {sum(counts.values())} | {dead} | {counts['survived']} "
                     f"| {counts['no tests']} | {100 * dead / sum(counts.values()):.0f} % |")
    lines += ["", "## Survivors", "",
              "By function, the numbers of the mutants that survived or that no test covers; "
              "`mutmut show <function>__mutmut_<number>` shows one.", ""]
    if not survivors:
        lines.append("None.")
    lines += [f"- `{function}`: {', '.join(sorted(numbers, key=int))}"
              for function, numbers in sorted(survivors.items())]
    RESULTS.write_text("\n".join(lines).rstrip() + "\n")
    print(f"{killed}/{total} killed; {RESULTS}")


if __name__ == "__main__":
    main()
