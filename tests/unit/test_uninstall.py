"""Removal takes everything dograhctl made off the host, and gives back only what is safe."""

from __future__ import annotations

from pathlib import Path

from dograh_systemd import paths

from .fake_host import FakeHost


def test_a_worker_hosts_firewall_goes_with_the_fleet(tmp_path: Path) -> None:
    host = FakeHost(tmp_path / "root", "10.0.0.11")
    host.configure("DOGRAH_ETCD_ENDPOINTS=https://10.0.0.10:2379\nDOGRAH_EDGE=10.0.0.10\n"
                   "UVICORN_HOST=10.0.0.11\nFASTAPI_WORKERS=2\n")
    code, _, err = host.dograhctl("scale")
    assert code == 0, err
    assert paths.FIREWALL_UNIT in host.active() and paths.FIREWALL_UNIT in host.enabled()
    for path in (paths.UNIT_DIR / paths.FIREWALL_UNIT, paths.FIREWALL_RULES,
                 paths.NFTABLES_DROP_IN):
        assert host.files.exists(path), path

    code, _, err = host.dograhctl("uninstall")
    assert code == 0, err
    assert host.active() == [] and host.enabled() == []
    for path in (paths.UNIT_DIR / paths.FIREWALL_UNIT, paths.FIREWALL_RULES,
                 paths.NFTABLES_DROP_IN, paths.RECORD):
        assert not host.files.exists(path), path
    assert not host.files.exists(paths.NFTABLES_DROP_IN.parent)
    assert not [p for p in host.files.listing(paths.UNIT_DIR) if p.name.startswith("dograh")]


def test_the_site_and_its_limits_go(host: FakeHost) -> None:
    conf = host.files.path(paths.NGINX_CONF)
    conf.parent.mkdir(parents=True)
    conf.write_text("events {\n\tworker_connections 768;\n}\n")
    host.dograhctl("scale")
    assert "worker_connections 18976;" in conf.read_text()
    host.dograhctl("uninstall")
    assert conf.read_text() == "events {\n\tworker_connections 768;\n}\n"
    for path in (paths.NGINX_SITE, paths.NGINX_SITE_LINK, paths.NGINX_UPSTREAM,
                 paths.NGINX_CAPACITY, paths.NGINX_CONNECTIONS_RAISED):
        assert not host.files.exists(path) and not host.files.is_link(path), path


def took_the_stock_default(host: FakeHost) -> None:
    files = host.files
    files.write_atomic(paths.NGINX_STOCK_DEFAULT, "server { listen 80 default_server; }\n")
    files.make_directory(paths.NGINX_STOCK_DEFAULT_LINK.parent)
    files.write_atomic(paths.TOOK_STOCK_DEFAULT, f"{paths.NGINX_STOCK_DEFAULT}\n")


def test_the_stock_default_site_comes_back(host: FakeHost) -> None:
    took_the_stock_default(host)
    host.dograhctl("uninstall")
    assert host.files.link_target(paths.NGINX_STOCK_DEFAULT_LINK) == paths.NGINX_STOCK_DEFAULT
    assert not host.files.exists(paths.TOOK_STOCK_DEFAULT)


def test_not_beside_a_default_server_the_admin_added_since(host: FakeHost) -> None:
    took_the_stock_default(host)
    mine = paths.NGINX_STOCK_DEFAULT_LINK.parent / "mine"
    host.files.write_atomic(mine, "server {\n    listen 80 default_server;\n    return 204;\n}\n")
    host.dograhctl("uninstall")
    assert not host.files.is_link(paths.NGINX_STOCK_DEFAULT_LINK)  # two would fail nginx -t
    assert host.files.exists(mine) and not host.files.exists(paths.TOOK_STOCK_DEFAULT)
