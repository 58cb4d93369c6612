"""``python -m dograh_systemd.worker``: the ExecStart of dograh-api@.service."""

from __future__ import annotations

import faulthandler
import sys
from pathlib import Path

import click

from .plain_output import install as plain_output

# Before anything imports the app: on the watchdog's SIGABRT, write every
# thread's Python stack to stderr, which is the journal; and keep the app's
# colour codes out of it.
faulthandler.enable(all_threads=True)
plain_output()

from .runtime import WorkerOptions, serve  # noqa: E402


@click.command()
@click.option("--app", required=True, help="ASGI app as module:attribute.")
@click.option("--app-dir", type=click.Path(path_type=Path), default=Path("."),
              help="Directory put first on the import path.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), required=True)
@click.option("--keep-alive", type=click.IntRange(1), default=75, show_default=True,
              help="Seconds an idle connection stays open; longer than nginx's.")
@click.option("--stop-timeout", type=click.IntRange(1), default=25, show_default=True,
              help="Seconds to let requests finish on stop (uvicorn >= 0.22).")
def main(app: str, app_dir: Path, host: str, port: int, keep_alive: int,
         stop_timeout: int) -> None:
    sys.exit(serve(WorkerOptions(app, app_dir, host, port, keep_alive, stop_timeout)))


if __name__ == "__main__":
    main()
