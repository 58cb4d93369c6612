"""``python -m dograh_systemd.worker``: the ExecStart of dograh-api@.service."""

from __future__ import annotations

import faulthandler
import sys
from pathlib import Path

import click

from .plain_output import install as plain_output

# Before anything imports the app: a native crash writes every thread's stack
# to the journal (the watchdog's SIGABRT gets its own handler, see loop_watch);
# and the app's colour codes stay out of the journal.
faulthandler.enable(all_threads=True)
plain_output()

from .runtime import WorkerOptions, serve  # noqa: E402


@click.command()
@click.option("--app", required=True, help="ASGI app as module:attribute.")
@click.option("--app-dir", type=click.Path(path_type=Path), default=Path("."),
              help="Directory put first on the import path.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), required=True)
@click.option("--trusted-proxy", default="127.0.0.1", show_default=True,
              help="The address nginx connects from: X-Forwarded-* is honoured from it only.")
@click.option("--calls-path", help="The app's call registry: the path that answers "
                                   '{"active_calls": N}.')
@click.option("--calls-header", default="X-Dograh-Devops-Secret", show_default=True,
              help="The header that carries $DOGRAH_DEVOPS_SECRET to the registry.")
def main(app: str, app_dir: Path, host: str, port: int, trusted_proxy: str,
         calls_path: str | None, calls_header: str) -> None:
    sys.exit(serve(WorkerOptions(app, app_dir, host, port, trusted_proxy, calls_path,
                                 calls_header)))


if __name__ == "__main__":
    main()
