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

# The fleet record: what should run, and any operation in progress. Root's
# alone to write; anyone may read it (it holds no secret).
STATE_DIR = Path("/var/lib/dograh-systemd")
RECORD = STATE_DIR / "fleet.json"
# The key of the record's digests of what the processes run on (their unit
# files and the app's environment, secrets included): root's alone.
DIGEST_KEY = STATE_DIR / "digest.key"

# The lock lives in a directory only root can enter: no other user can hold,
# replace or pre-create it (unlike a file in the world-writable /run/lock).
# Release builds take one of their own: a build takes minutes and moves no
# process, so the fleet's commands go on meanwhile.
RUN_DIR = Path("/run/dograh-systemd")
LOCK = RUN_DIR / "lock"
RELEASES_LOCK = RUN_DIR / "releases.lock"

# Releases of the app: one directory each, and a description beside it; git's
# config for the user that fetches them.
RELEASES_DIR = STATE_DIR / "releases"
# The venvs releases share: one for each set of requirements, built once.
LAYERS_DIR = STATE_DIR / "layers"
BUILD_GITCONFIG = STATE_DIR / "build.gitconfig"

# A Dograh checkout's DOGRAH_DEVOPS_SECRET, when dograhctl made it: not a
# conffile (a maintainer script must not edit those), read after every other
# env file, and removed once another file sets a real one.
SECRETS = Path("/etc/dograh/secrets.env")
# The services dograhctl set up on this host for the app (its database, Redis): read
# before every other env file, so the config's own keys win; and what it made, which
# the package's purge drops.
SERVICES = Path("/etc/dograh/services.env")
SERVICES_STATE = STATE_DIR / "services.state"

UNIT_DIR = Path("/etc/systemd/system")
TARGET = "dograh.target"
# Transient timers that re-weigh the upstream while it is uneven.
REBALANCE_UNIT = "dograh-rebalance"
# A worker host's firewall: its API worker ports accept the edge only. The
# table is a file of its own; a drop-in loads it again whenever
# nftables.service loads its ruleset (which flushes every table).
FIREWALL_UNIT = "dograh-firewall.service"
FIREWALL_RULES = Path("/etc/dograh/firewall.nft")
NFTABLES_DROP_IN = Path("/etc/systemd/system/nftables.service.d/dograh-firewall.conf")
# Several hosts: every host of a cluster runs its agent, which keeps its lease in
# etcd; a worker host's agent carries out what the edges ask through dograhctl
# commands it runs as a transient unit, remembers what it carried out, and gives
# each singleton it holds its fencing token in an env file the unit reads.
AGENT_UNIT = "dograh-agent.service"
CONVERGE_UNIT = "dograh-converge.service"
AGENT_STATE = STATE_DIR / "agent.json"
LEADER_DIR = RUN_DIR / "leaders"
# etcd: its CA, this host's password (root's alone), and for the members the package
# sets up, their certificates and the files each joining host is given.
ETCD_DIR = Path("/etc/dograh/etcd")
ETCD_DEFAULTS = Path("/etc/default/etcd")
# Every host writes its metrics for Prometheus' node exporter, whose textfile
# collector reads *.prom files from this directory (when it is installed).
METRICS_UNIT = "dograh-metrics.service"
METRICS_TIMER = "dograh-metrics.timer"
TEXTFILE_DIR = Path("/var/lib/prometheus/node-exporter")
METRICS_FILE = TEXTFILE_DIR / "dograh.prom"
# Units of a host rather than of a role; each mode runs its own of them. The
# services a timer runs are not started themselves.
HOST_UNITS = (FIREWALL_UNIT, AGENT_UNIT, METRICS_UNIT, METRICS_TIMER)
TIMED = (METRICS_UNIT,)
# The transient service a deploy runs in when it must not hold its caller
# (the package's upgrade: dpkg must not wait for a drain).
DEPLOY_UNIT = "dograh-deploy.service"

# Two or more edges: keepalived moves the front door's floating address to the
# edge whose nginx answers; Debian's unit gets a drop-in that restarts it.
KEEPALIVED_CONF = Path("/etc/keepalived/keepalived.conf")
KEEPALIVED_DROP_IN = Path("/etc/systemd/system/keepalived.service.d/dograh.conf")
KEEPALIVED_UNIT = "keepalived.service"
KEEPALIVED = Path("/usr/sbin/keepalived")
# Written before keepalived's files change, removed once it has read them: the next
# command reloads it even when the files are in place already.
KEEPALIVED_RELOAD_PENDING = STATE_DIR / "keepalived-reload-pending"
# When this edge last took or gave up the floating address, as its agent saw it.
FRONT_STATE = STATE_DIR / "front.json"

NGINX_SITE = Path("/etc/nginx/sites-available/dograh")
NGINX_SITE_LINK = Path("/etc/nginx/sites-enabled/dograh")
NGINX_UPSTREAM = Path("/etc/nginx/dograh/upstream.conf")
# Written before a change to nginx's files, removed once nginx has reloaded
# them: the next change reloads even when the files are already in place.
NGINX_RELOAD_PENDING = STATE_DIR / "nginx-reload-pending"
# nginx.conf is the admin's: dograhctl raises its worker_connections only (no
# other file can), noting the value it found so that removal puts it back. The
# rest of nginx's limits go in a file nginx includes in its main context.
NGINX_CONF = Path("/etc/nginx/nginx.conf")
NGINX_CONNECTIONS_RAISED = STATE_DIR / "nginx-worker-connections"
NGINX_CAPACITY = Path("/etc/nginx/modules-enabled/90-dograh-capacity.conf")
# Admin-owned nginx snippets the Dograh site includes (the UI, object
# storage, ...): the package creates the directory and never writes into it.
NGINX_SNIPPETS = Path("/etc/dograh/nginx")
# Debian's stock default site: the package takes its place while it is
# enabled and unmodified, and gives it back on removal.
NGINX_STOCK_DEFAULT = Path("/etc/nginx/sites-available/default")
NGINX_STOCK_DEFAULT_LINK = Path("/etc/nginx/sites-enabled/default")
TOOK_STOCK_DEFAULT = STATE_DIR / "took-stock-default-site"
# Where an admin's enabled nginx configs live (one may hold a default server).
NGINX_ENABLED = (Path("/etc/nginx/sites-enabled"), Path("/etc/nginx/conf.d"))

# HTTPS: a self-signed certificate dograhctl makes, the webroot certbot's
# HTTP-01 challenges are served from, certbot's certificate for the site, and
# the hook certbot runs after each renewal (it reloads nginx, never restarts it).
TLS_DIR = Path("/etc/dograh/tls")
# The self-signed key and certificate in one file, replaced as a pair; its
# public half alone, for clients to trust.
SELF_SIGNED = TLS_DIR / "self-signed.pem"
SELF_SIGNED_CERTIFICATE = TLS_DIR / "self-signed.crt"
ACME_WEBROOT = STATE_DIR / "acme"
ACME_CERT_NAME = "dograh"
ACME_LIVE = Path("/etc/letsencrypt/live") / ACME_CERT_NAME
ACME_RENEWAL = Path("/etc/letsencrypt/renewal") / f"{ACME_CERT_NAME}.conf"
CERTBOT_DEPLOY_HOOK = Path("/usr/lib/dograh-systemd/certbot-deploy-hook")
