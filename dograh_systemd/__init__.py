"""dograh-systemd: run Dograh's FastAPI backend as systemd instances behind nginx."""

__version__ = "0.2.0"
