from __future__ import annotations

import re
from pathlib import Path

import pytest

from dograh_systemd import config, roles
from dograh_systemd.config import ConfigError
from dograh_systemd.host.machine import Machine

CLUSTER = "DOGRAH_ETCD_ENDPOINTS=https://10.0.0.10:2379\n"


def load(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "dograh.env"
    path.write_text(text)
    return config.load(path)


def test_defaults_follow_dograh(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.api_workers == roles.default_api_workers(Machine().cpus())
    assert 1 <= settings.api_workers <= 8
    assert settings.role("arq").count == 1
    assert settings.base_port == 8000
    assert settings.host == "127.0.0.1"
    assert settings.role("ari-manager").count == settings.role("campaign-orchestrator").count == 1
    assert settings.role("migrate").count == 0
    assert settings.app == config.EXAMPLE_APP


def test_dograh_env_file_is_read_as_is(tmp_path: Path) -> None:
    settings = load(tmp_path, """
# Dograh's own .env, with keys this package does not know
DATABASE_URL=postgresql+asyncpg://u:p@localhost/dograh
FASTAPI_WORKERS=6
ARQ_WORKERS="3"
UVICORN_BASE_PORT=9000
ENABLE_ARI_MANAGER=false
export ENABLE_CAMPAIGN_ORCHESTRATOR=0
DOGRAH_PYTHON=/srv/dograh/venv/bin/python
DOGRAH_APP=api.app:app
DOGRAH_ARQ_COMMAND='python -m arq api.tasks.arq.WorkerSettings --custom-log-dict api.tasks.arq.LOG_CONFIG'
DOGRAH_ENV_FILES=/srv/dograh/api/.env /etc/dograh/extra.env
""")
    assert settings.api_workers == 6
    assert settings.role("arq").count == 3
    assert list(settings.band_ports(0))[:2] == [9000, 9001]
    assert list(settings.band_ports(1))[:1] == [9100]
    assert settings.role("ari-manager").count == 0
    assert settings.role("campaign-orchestrator").count == 0
    assert settings.env_files == (Path("/srv/dograh/api/.env"), Path("/etc/dograh/extra.env"))
    assert settings.resolve_command(settings.role("arq").command) == (
        "/srv/dograh/venv/bin/python", "-m", "arq", "api.tasks.arq.WorkerSettings",
        "--custom-log-dict", "api.tasks.arq.LOG_CONFIG")


@pytest.mark.parametrize(("line", "key", "allowed"), [
    ("FASTAPI_WORKERS=0", "FASTAPI_WORKERS", "1..64"),
    ("FASTAPI_WORKERS=many", "FASTAPI_WORKERS", "1..64"),
    ("ARQ_WORKERS=-1", "ARQ_WORKERS", "0..32"),
    ("DRAIN_TIMEOUT=soon", "DRAIN_TIMEOUT", "seconds"),
    ("UVICORN_BASE_PORT=80", "UVICORN_BASE_PORT", "1024..65372"),
    ("UVICORN_BASE_PORT=65400", "UVICORN_BASE_PORT", "1024..65372"),
    ("UVICORN_HOST=localhost", "UVICORN_HOST", "IP address"),
    ("ENABLE_ARI_MANAGER=maybe", "ENABLE_ARI_MANAGER", "true or false"),
    ("DOGRAH_APP=api/app.py", "DOGRAH_APP", "module:attribute"),
    ("DOGRAH_PYTHON=venv/bin/python", "DOGRAH_PYTHON", "absolute path"),
    ("DOGRAH_APP_DIR=/srv/my app", "DOGRAH_APP_DIR", "absolute path"),
    ("DOGRAH_ARQ_COMMAND=arq worker", "DOGRAH_ARQ_COMMAND", "command line"),
    ("DOGRAH_ARQ_COMMAND=", "DOGRAH_ARQ_COMMAND", "command line"),
    ("DOGRAH_NGINX_LISTEN=eighty", "DOGRAH_NGINX_LISTEN", "port"),
    ("DOGRAH_NGINX_SERVER_NAME=a;b", "DOGRAH_NGINX_SERVER_NAME", "host names"),
    ("DOGRAH_NGINX_LOCATION=/api", "DOGRAH_NGINX_LOCATION", "starts and ends with /"),
    # Hostile or sloppy values that once went through.
    ('DOGRAH_ARI_MANAGER_COMMAND="/usr/bin/touch /x \'\n[X-Dograh]\n\'"',
     "DOGRAH_ARI_MANAGER_COMMAND", "command line"),
    ("UVICORN_HOST=fe80::1%eth0", "UVICORN_HOST", "without a scope id"),
    ("DOGRAH_NGINX_LISTEN=8_0", "DOGRAH_NGINX_LISTEN", "port"),
    ("DOGRAH_NGINX_LISTEN=+80", "DOGRAH_NGINX_LISTEN", "port"),
    ("DOGRAH_NGINX_LISTEN=\u0668\u0660", "DOGRAH_NGINX_LISTEN", "port"),
    ("FASTAPI_WORKERS=\u0664", "FASTAPI_WORKERS", "1..64"),
    ("DOGRAH_NGINX_LISTEN=8005", "DOGRAH_NGINX_LISTEN", "outside them"),
    ("DOGRAH_NGINX_LISTEN=127.0.0.1:8120", "DOGRAH_NGINX_LISTEN", "8000-8063 and 8100-8163"),
    ('DOGRAH_NGINX_SERVER_NAME="a\tb"', "DOGRAH_NGINX_SERVER_NAME", "host names"),
])
def test_bad_value_names_key_file_and_allowed(tmp_path: Path, line: str, key: str,
                                              allowed: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, line + "\n")
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'dograh.env'}: {key}=")
    assert allowed in message
    assert "\n" not in message


def test_control_characters_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="control character"):
        load(tmp_path, 'DOGRAH_ARI_MANAGER_COMMAND="/usr/bin/touch /x \'\n[X-Dograh]\n\'"\n')


def test_listen_forms(tmp_path: Path) -> None:
    assert load(tmp_path, "DOGRAH_NGINX_LISTEN=8080\n").nginx_listen == (None, 8080)
    assert load(tmp_path, "DOGRAH_NGINX_LISTEN=10.0.0.5:80\n").nginx_listen == ("10.0.0.5", 80)
    assert load(tmp_path, "DOGRAH_NGINX_LISTEN=[::1]:80\n").nginx_listen == ("::1", 80)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "absent.env")


def test_config_path_precedence() -> None:
    assert config.config_path() == config.DEFAULT_CONFIG
    assert config.config_path("/tmp/x.env") == Path("/tmp/x.env")
    with pytest.raises(ConfigError, match="must be given as an absolute path"):
        config.config_path("dograh.env")


def test_every_key_dograhctl_reads_is_known(tmp_path: Path) -> None:
    """package_keys() names exactly the keys parsing reads: the rest is the app's."""
    read: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
            read.add(key)
            return super().get(key, default)

    config.parse(tmp_path / "dograh.env", Recording(), cpus=2)
    assert read == config.package_keys()


def test_a_dograh_checkout_changes_the_defaults_not_explicit_keys(tmp_path: Path) -> None:
    settings = load(tmp_path, "DOGRAH_CHECKOUT=/srv/dograh/\nDOGRAH_PYTHON=/opt/py313/bin/python\n")
    assert settings.checkout == Path("/srv/dograh")
    assert settings.app == "api.app:app"
    assert settings.app_dir == Path("/srv/dograh")
    assert settings.python == Path("/opt/py313/bin/python")  # explicit wins
    assert settings.env_files == (Path("/srv/dograh/api/.env"),)
    assert settings.role("migrate").command == ("python", "-m", "alembic", "-c",
                                                "api/alembic.ini", "upgrade", "head")
    with pytest.raises(ConfigError, match="DOGRAH_CHECKOUT='srv/dograh' is invalid"):
        load(tmp_path, "DOGRAH_CHECKOUT=srv/dograh\n")


def test_a_python_under_home_keeps_home_readable(tmp_path: Path) -> None:
    assert not load(tmp_path, "").paths_in_home
    assert load(tmp_path, "DOGRAH_PYTHON=/home/app/.pyenv/versions/3.13/bin/python\n").paths_in_home
    assert load(tmp_path, "DOGRAH_ENV_FILES=/root/dograh.env\n").paths_in_home


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "::", "::1"])
def test_a_worker_host_listens_where_its_edge_dials(tmp_path: Path, address: str) -> None:
    """The edge dials the address DOGRAH_HOSTS gives it: a worker host bound to loopback
    or to every address would have its edge proxy to the edge's own loopback."""
    with pytest.raises(ConfigError, match=rf"UVICORN_HOST='{re.escape(address)}' is invalid"):
        load(tmp_path, f"{CLUSTER}DOGRAH_EDGE=10.0.0.10\nUVICORN_HOST={address}\n")
    assert load(tmp_path, f"{CLUSTER}DOGRAH_EDGE=10.0.0.10\nUVICORN_HOST=10.0.0.11\n"
                ).host == "10.0.0.11"


def test_several_hosts_need_their_etcd(tmp_path: Path) -> None:
    for key, value in (("DOGRAH_EDGE", "10.0.0.10"), ("DOGRAH_HOSTS", '"w1=10.0.0.11"')):
        with pytest.raises(ConfigError, match=rf"{key}=.* is invalid \(several hosts keep "
                           r"their state in etcd, and DOGRAH_ETCD_ENDPOINTS is not set\)"):
            load(tmp_path, f"{key}={value}\nUVICORN_HOST=10.0.0.11\n")
    settings = load(tmp_path, f'{CLUSTER}DOGRAH_EDGE="10.0.0.10 fd00::10"\n'
                              "UVICORN_HOST=10.0.0.11\nDOGRAH_HOST_NAME=w1\n")
    assert settings.edges == ("10.0.0.10", "fd00::10")
    assert settings.etcd_user == "dograh-w1"
    with pytest.raises(ConfigError, match="DOGRAH_ETCD_ENDPOINTS"):
        load(tmp_path, "DOGRAH_ETCD_ENDPOINTS=10.0.0.10:2379\n")
    placed = load(tmp_path, f'{CLUSTER}DOGRAH_HOSTS="w1=10.0.0.11 w2=10.0.0.12"\n'
                            "DOGRAH_SINGLETON_HOSTS=ari-manager=w2,w1\n")
    assert placed.singleton_hosts_for("ari-manager") == ("w2", "w1")
    assert placed.singleton_hosts_for("campaign-orchestrator") == ("w1", "w2")
    with pytest.raises(ConfigError, match="w3 is not in DOGRAH_HOSTS"):
        load(tmp_path, f'{CLUSTER}DOGRAH_HOSTS="w1=10.0.0.11"\n'
                       "DOGRAH_SINGLETON_HOSTS=ari-manager=w1,w3\n")
