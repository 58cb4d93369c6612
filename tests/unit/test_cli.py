from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dograh_systemd import cli


def dograhctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
              *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["dograhctl", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.run()
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "dograh.env"
    path.write_text("FASTAPI_WORKERS=3\n")
    monkeypatch.setenv("DOGRAH_CONFIG", str(path))
    return path


def test_render_to_a_staging_root(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  env_file: Path) -> None:
    root = tmp_path / "stage"
    code, _, err = dograhctl(monkeypatch, capsys, "render", "--root", str(root))
    assert code == 0
    assert "8 file(s) changed" in err
    upstream = (root / "etc/nginx/dograh/upstream.conf").read_text()
    assert upstream.count("server 127.0.0.1:") == 3
    assert (root / "etc/systemd/system/dograh-api@.service").exists()
    code, _, err = dograhctl(monkeypatch, capsys, "render", "--root", str(root))
    assert "0 file(s) changed" in err


def test_dry_run_shows_a_diff_and_writes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, env_file: Path) -> None:
    root = tmp_path / "stage"
    dograhctl(monkeypatch, capsys, "render", "--root", str(root))
    env_file.write_text("FASTAPI_WORKERS=4\n")
    code, _, err = dograhctl(monkeypatch, capsys, "render", "--root", str(root), "--dry-run")
    assert code == 0
    assert "+    server 127.0.0.1:8003 max_fails=3 fail_timeout=10s;" in err
    assert "1 file(s) would change" in err
    assert (root / "etc/nginx/dograh/upstream.conf").read_text().count("server 127.") == 3


@pytest.mark.parametrize("args", [["scale", "-1"], ["scale", "abc"],
                                  ["scale", "10000"], ["scale", "2", "--arq", "99"],
                                  ["frobnicate"]])
def test_bad_arguments_are_one_line_errors(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           env_file: Path, args: list[str]) -> None:
    code, out, err = dograhctl(monkeypatch, capsys, *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("dograhctl: ")


def test_changing_commands_need_root(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str],
                                     env_file: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, _, err = dograhctl(monkeypatch, capsys, "scale", "3")
    assert code == 1
    assert err == ("dograhctl: 'scale' changes systemd and nginx and must run as root "
                   "(try: sudo dograhctl scale)\n")
    code, _, err = dograhctl(monkeypatch, capsys, "render")
    assert code == 1 and "must run as root" in err


def test_bad_config_is_reported_before_anything_runs(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str],
                                                     env_file: Path) -> None:
    env_file.write_text("UVICORN_HOST=everywhere\n")
    code, _, err = dograhctl(monkeypatch, capsys, "status")
    assert code == 1
    assert err.startswith(f"dograhctl: {env_file}: UVICORN_HOST='everywhere' is invalid")
