"""Running a program: the one way dograhctl starts a process, and what it gets back."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        """What a failed command said last: its reason, in one line."""
        return (self.stderr.strip().splitlines() or ["no output"])[-1].strip()


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout: float | None = None,
                 input: str | None = None) -> Completed: ...


def run_here(argv: Sequence[str], timeout: float | None = None, input: str | None = None
             ) -> Completed:
    """Run ``argv`` on this machine, with ``input`` on its stdin (else none: a program
    that asks is told no more is coming); a program that does not finish in time is
    killed and reported as exit code 124, as timeout(1) does."""
    try:
        result = subprocess.run(list(argv), stdin=subprocess.DEVNULL if input is None else None,
                                input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return Completed(127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"{argv[0]}: no answer within {timeout:.0f}s")
    return Completed(result.returncode, result.stdout, result.stderr)
