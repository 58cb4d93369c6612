from __future__ import annotations

from pathlib import Path

import pytest

from dograh_systemd import config
from dograh_systemd.config import ConfigError


def load(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "dograh.env"
    path.write_text(text)
    return config.load(path)


def test_defaults_follow_dograh(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.fastapi_workers == config.default_workers()
    assert 1 <= settings.fastapi_workers <= 8
    assert settings.arq_workers == 1
    assert settings.base_port == 8000
    assert settings.host == "127.0.0.1"
    assert settings.enable_ari_manager and settings.enable_campaign_orchestrator
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
    assert settings.fastapi_workers == 6
    assert settings.arq_workers == 3
    assert settings.api_ports(6) == frozenset(range(9000, 9006))
    assert not settings.enable_ari_manager
    assert not settings.enable_campaign_orchestrator
    assert settings.env_files == (Path("/srv/dograh/api/.env"), Path("/etc/dograh/extra.env"))
    assert settings.resolve_command(settings.arq_command) == (
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
])
def test_bad_value_names_key_file_and_allowed(tmp_path: Path, line: str, key: str,
                                              allowed: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, line + "\n")
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'dograh.env'}: {key}=")
    assert allowed in message
    assert "\n" not in message


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "absent.env")


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOGRAH_CONFIG", raising=False)
    assert config.config_path() == config.DEFAULT_CONFIG
    monkeypatch.setenv("DOGRAH_CONFIG", "/etc/other.env")
    assert config.config_path() == Path("/etc/other.env")
    assert config.config_path("/tmp/x.env") == Path("/tmp/x.env")


def test_settings_are_immutable(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    with pytest.raises(AttributeError):
        settings.fastapi_workers = 3  # type: ignore[misc]


def test_a_dograh_checkout_changes_the_defaults_not_explicit_keys(tmp_path: Path) -> None:
    settings = load(tmp_path, "DOGRAH_CHECKOUT=/srv/dograh/\nDOGRAH_PYTHON=/opt/py313/bin/python\n")
    assert settings.checkout == Path("/srv/dograh")
    assert settings.app == "api.app:app"
    assert settings.app_dir == Path("/srv/dograh")
    assert settings.python == Path("/opt/py313/bin/python")  # explicit wins
    assert settings.env_files == (Path("/srv/dograh/api/.env"),)
    assert settings.migrate_command == ("python", "-m", "alembic", "-c", "api/alembic.ini",
                                        "upgrade", "head")
    with pytest.raises(ConfigError, match="DOGRAH_CHECKOUT='srv/dograh' is invalid"):
        load(tmp_path, "DOGRAH_CHECKOUT=srv/dograh\n")
