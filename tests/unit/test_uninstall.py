"""Removal takes everything dograhctl made off the host, and gives back only what is safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from dograh_systemd import config, paths, preflight, uninstall, verbs
from dograh_systemd.record import Store

from .fake_system import FakeNginx, FakeSystem, context, point_paths_at

FIREWALL = "dograh-firewall.service"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    point_paths_at(monkeypatch, tmp_path / "root")
    return tmp_path / "root"


def remove(system: FakeSystem) -> list[str]:
    messages: list[str] = []
    systemd = context(system, config.parse(Path("/x.env"), {}), messages.append).systemd
    uninstall.uninstall(systemd, FakeNginx(systemd, system), Store(), messages.append)
    return messages


def test_a_worker_hosts_firewall_goes_with_the_fleet(root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker host's address is not this machine's: its ports are free by definition.
    monkeypatch.setattr(preflight, "check_ports_free", lambda host, ports: None)
    env = tmp_path / "dograh.env"
    env.write_text("DOGRAH_EDGE=10.0.0.10\nUVICORN_HOST=10.0.0.11\nFASTAPI_WORKERS=2\n")
    system = FakeSystem()
    verbs.scale(context(system, config.load(env), lambda _: None), None, {}, None, False)
    assert FIREWALL in system.active() and FIREWALL in system.enabled()
    assert (paths.UNIT_DIR / FIREWALL).exists()

    remove(system)
    assert system.active() == [] and system.enabled() == []
    assert not (paths.UNIT_DIR / FIREWALL).exists()
    assert not list(paths.UNIT_DIR.glob("dograh*"))


def took_the_stock_default(root: Path) -> None:
    paths.NGINX_STOCK_DEFAULT.parent.mkdir(parents=True)
    paths.NGINX_STOCK_DEFAULT.write_text("server { listen 80 default_server; }\n")
    paths.NGINX_STOCK_DEFAULT_LINK.parent.mkdir(parents=True)
    paths.STATE_DIR.mkdir(parents=True)
    paths.TOOK_STOCK_DEFAULT.write_text(f"{paths.NGINX_STOCK_DEFAULT}\n")


def test_the_stock_default_site_comes_back(root: Path) -> None:
    took_the_stock_default(root)
    remove(FakeSystem())
    assert paths.NGINX_STOCK_DEFAULT_LINK.resolve() == paths.NGINX_STOCK_DEFAULT
    assert not paths.TOOK_STOCK_DEFAULT.exists()


def test_not_beside_a_default_server_the_admin_added_since(root: Path) -> None:
    took_the_stock_default(root)
    mine = paths.NGINX_STOCK_DEFAULT_LINK.parent / "mine"
    mine.write_text("server {\n    listen 80 default_server;\n    return 204;\n}\n")
    remove(FakeSystem())
    assert not paths.NGINX_STOCK_DEFAULT_LINK.is_symlink()  # two default servers fail nginx -t
    assert mine.exists() and not paths.TOOK_STOCK_DEFAULT.exists()
