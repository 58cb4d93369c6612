"""Keep ANSI colour codes out of the journal, whatever the app's logger forces.

``install()`` wraps stdout and stderr so escape sequences are dropped before
they reach journald (the API worker runtime calls it before importing the
app). Run as a module it is a launcher for the other processes:

    python -m dograh_systemd.worker.plain_output -m api.services.telephony.ari_manager

installs the wrappers, then runs the module as ``python -m`` would.
Standard library only: it runs in the app's own venv.
"""

from __future__ import annotations

import re
import runpy
import sys
from typing import Any, TextIO

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class PlainText:
    """A text stream that drops ANSI escape sequences and says it is no terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_ANSI.sub("", text))
        return len(text)

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install() -> None:
    if not isinstance(sys.stdout, PlainText):
        sys.stdout = PlainText(sys.stdout)  # type: ignore[assignment]
        sys.stderr = PlainText(sys.stderr)  # type: ignore[assignment]


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "-m":
        sys.exit("usage: python -m dograh_systemd.worker.plain_output -m MODULE [ARG ...]")
    install()
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
