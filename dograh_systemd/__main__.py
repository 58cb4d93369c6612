"""``python -m dograh_systemd``: the same as ``dograhctl``."""

from .cli import run

run()
