"""The command line: its arguments, its one-line errors and exit codes, on a fake host."""

from __future__ import annotations

from pathlib import Path

import pytest

from dograh_systemd import paths

from .fake_host import CONFIG, FakeHost


def test_render_to_a_staging_root(host: FakeHost, tmp_path: Path) -> None:
    host.configure("FASTAPI_WORKERS=3\n")
    root = tmp_path / "stage"
    code, _, err = host.dograhctl("render", "--root", str(root))
    assert code == 0
    assert "11 file(s) changed" in err
    assert str(paths.NGINX_CAPACITY) in err  # nginx runs here: its limits are raised
    upstream = (root / "etc/nginx/dograh/upstream.conf").read_text()
    assert upstream.count("server 127.0.0.1:") == 3
    assert (root / "etc/systemd/system/dograh-api@.service").exists()
    assert host.log == []  # a staging root moves nothing on the host
    code, _, err = host.dograhctl("render", "--root", str(root))
    assert "0 file(s) changed" in err


def test_dry_run_shows_a_diff_and_writes_nothing(host: FakeHost, tmp_path: Path) -> None:
    host.configure("FASTAPI_WORKERS=3\n")
    root = tmp_path / "stage"
    host.dograhctl("render", "--root", str(root))
    host.configure("FASTAPI_WORKERS=4\n")
    code, _, err = host.dograhctl("render", "--root", str(root), "--dry-run")
    assert code == 0
    assert "+    server 127.0.0.1:8003 max_fails=3 fail_timeout=10s;" in err
    assert "1 file(s) would change" in err
    assert (root / "etc/nginx/dograh/upstream.conf").read_text().count("server 127.") == 3


@pytest.mark.parametrize("args", [["scale", "-1"], ["scale", "abc"], ["scale", "²"],
                                  ["scale", "10000"], ["scale", "2", "--arq", "99"],
                                  ["frobnicate"], ["scale", "--drain-timeout", "1e999"]])
def test_bad_arguments_are_one_line_errors(host: FakeHost, args: list[str]) -> None:
    code, out, err = host.dograhctl(*args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("dograhctl: ")
    assert host.log == []


@pytest.mark.parametrize("pair", ["worker1=²", "worker1=٣", "worker1=-1", "worker1=65",
                                  "worker1", "=3"])
def test_a_bad_host_count_is_one_line(host: FakeHost, pair: str) -> None:
    host.configure('DOGRAH_HOSTS="worker1=10.0.0.11"\n'
                   "DOGRAH_ETCD_ENDPOINTS=https://10.0.0.10:2379\n")
    code, _out, err = host.dograhctl("scale", "--host", pair)
    assert code == 1, err
    assert err.startswith("dograhctl: --host ") and len(err.strip().splitlines()) == 1
    assert host.log == []


def test_changing_commands_need_root(host: FakeHost) -> None:
    host.machine.root = False
    code, _, err = host.dograhctl("scale", "3")
    assert code == 1
    assert err == ("dograhctl: 'scale' changes systemd and nginx and must run as root "
                   "(try: sudo dograhctl scale)\n")
    code, _, err = host.dograhctl("render")
    assert code == 1 and "must run as root" in err
    assert host.log == []


def test_bad_config_is_reported_before_anything_runs(host: FakeHost) -> None:
    host.configure("UVICORN_HOST=everywhere\n")
    code, _, err = host.dograhctl("status")
    assert code == 1
    assert err.startswith(f"dograhctl: {CONFIG}: UVICORN_HOST='everywhere' is invalid")


def test_a_busy_lock_is_exit_code_75_naming_the_holder(host: FakeHost) -> None:
    with host.lock(lambda _: None, 0):
        host.clock.now += 0  # the holder is this test, another "dograhctl" for the CLI
        code, _, err = host.dograhctl("--lock-wait", "0", "scale", "2")
    assert code == 75
    assert err.startswith("dograhctl: another dograhctl (pid ") and "has held" in err


def test_status_never_writes(host: FakeHost) -> None:
    host.dograhctl("scale", "2")
    before = {path: host.files.read(path) for path in (paths.RECORD, paths.NGINX_UPSTREAM)}
    host.log.clear()
    code, _, _ = host.dograhctl("status")
    assert code == 0
    assert host.log == []
    assert before == {path: host.files.read(path) for path in before}
