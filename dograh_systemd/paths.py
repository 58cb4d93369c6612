"""Where the package finds its templates and where it keeps what it generates."""

from __future__ import annotations

from pathlib import Path

# A source checkout keeps units/ and nginx/ beside the package; the Debian
# package installs them under /usr/share.
_CHECKOUT = Path(__file__).resolve().parent.parent
_INSTALLED = Path("/usr/share/dograh-systemd")
TEMPLATE_ROOT = _CHECKOUT if (_CHECKOUT / "units").is_dir() else _INSTALLED
UNIT_TEMPLATES = TEMPLATE_ROOT / "units"
NGINX_TEMPLATES = TEMPLATE_ROOT / "nginx"

# The worker runtime and sdnotify, linked here by the package so any Python
# (an app's own venv too) can import them through PYTHONPATH.
RUNTIME_PATH = Path("/usr/lib/dograh-systemd/python")

UNIT_DIR = Path("/etc/systemd/system")
TARGET = "dograh.target"

# Transient timers that re-weigh the upstream while it is uneven.
REBALANCE_UNIT = "dograh-rebalance"
# The transient service a deploy runs in when it must not hold its caller
# (the package's upgrade: dpkg must not wait for a drain).
DEPLOY_UNIT = "dograh-deploy.service"

NGINX_SITE = Path("/etc/nginx/sites-available/dograh")
NGINX_SITE_LINK = Path("/etc/nginx/sites-enabled/dograh")
NGINX_UPSTREAM = Path("/etc/nginx/dograh/upstream.conf")

# The fleet record: what should run, and any operation in progress. Root's
# alone to write; anyone may read it (it holds no secret).
STATE_DIR = Path("/var/lib/dograh-systemd")
RECORD = STATE_DIR / "fleet.json"

# The lock lives in a directory only root can enter: no other user can hold,
# replace or pre-create it (unlike a file in the world-writable /run/lock).
RUN_DIR = Path("/run/dograh-systemd")
LOCK = RUN_DIR / "lock"
