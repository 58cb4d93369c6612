"""A layout's own build behind the fake host, for real: the venv of a release is a layer
that every release with the same requirements shares, built once, sealed, pruned when
no release is on it; Dograh's layout on the wrong Python is refused before any build;
a release whose description is damaged spoils no other."""

from __future__ import annotations

import json
import os
import shutil
import site
import stat
import sys
from pathlib import Path

import pytest

from bench.testbed.wheels import wheel
from dograh_systemd import paths

from . import test_releases as releases
from .fake_host import FakeHost
from .test_releases import APP, commit, dograhctl, git

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("hardlink") is None,
                                reason="needs git and hardlink")

LAYERS = paths.LAYERS_DIR


def outer_wheel(directory: Path) -> Path:
    """A wheel whose .pth puts these tests' own packages (FastAPI, uvicorn: what Debian
    gives a real host) on the new venv's path; pip installs it with no network."""
    return wheel(directory, "outer", "1.0", {"outer.pth": "\n".join(site.getsitepackages()) + "\n"})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An app whose requirements are one local wheel."""
    app = tmp_path / "app"
    (app / "lib").mkdir(parents=True)
    git(app, "init", "-q", "-b", "main")
    (app / "lib/greeting.py").write_text('WORD = "hello"\n')
    (app / "app.py").write_text(APP.format(answer="A"))
    wheel = outer_wheel(app)
    (app / "requirements.txt").write_text(f"./{wheel.name}\n")
    git(app, "add", ".")
    git(app, "commit", "-qm", "A")
    return app


def configure(host: FakeHost, repo: Path, extra: str = "") -> None:
    host.configure(f"FASTAPI_WORKERS=2\nDOGRAH_SOURCE={repo}\nDOGRAH_SOURCE_LAYOUT=app\n"
                   f"DOGRAH_BUILD_PYTHON={sys.executable}\n{extra}")


def make(host: FakeHost, release: str) -> str:
    code, _, err = host.dograhctl("release", "make", "--app", "app:app", "--id", release)
    assert code == 0, err
    return err


def layers(host: FakeHost) -> list[str]:
    return [p.name for p in host.files.listing(LAYERS)]


def test_releases_with_the_same_requirements_share_one_sealed_layer(host: FakeHost,
                                                                     repo: Path) -> None:
    configure(host, repo)
    said = make(host, "r1")
    [key] = layers(host)
    assert f"building the venv layer {key}" in said
    host.clock.now += 1
    commit(repo, "B")
    assert f"the venv is layer {key}, made for an earlier release" in make(host, "r2")
    assert layers(host) == [key]
    for release in ("r1", "r2"):
        assert host.files.link_target(paths.RELEASES_DIR / release / "venv") == \
            LAYERS / key / "venv"
    layer = host.files.path(LAYERS / key)
    assert (layer / ".ready").read_text() == "r1\n"
    for folder, subfolders, names in os.walk(layer):
        for entry in [folder, *(os.path.join(folder, n) for n in subfolders + names)]:
            if not os.path.islink(entry):
                assert not os.stat(entry).st_mode & (stat.S_IWGRP | stat.S_IWOTH), entry
    # Compiled by content: the same module compiled anywhere else is the same file.
    pyc = next(layer.glob("venv/lib/python3*/site-packages/pip/__pycache__/__init__.*.pyc"))
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") & 0b11 == 0b11  # checked hash
    # Both serve: each release's check imported its app through the shared venv.
    for release in ("r1", "r2"):
        described = json.loads(host.files.read(paths.RELEASES_DIR / f"{release}.json") or "")
        assert described["state"] == "ready"


def test_new_requirements_make_a_new_layer_and_an_unused_one_goes(host: FakeHost,
                                                                  repo: Path) -> None:
    configure(host, repo, "DOGRAH_KEEP_RELEASES=1\n")
    dograhctl(host, "scale")
    make(host, "r1")
    dograhctl(host, "deploy", "r1")
    [first] = layers(host)
    host.clock.now += 1
    requirements = repo / "requirements.txt"
    requirements.write_text(requirements.read_text() + "# one more line\n")
    commit(repo, "B")
    make(host, "r2")
    assert len(layers(host)) == 2
    dograhctl(host, "deploy", "r2")
    host.clock.now += 1
    commit(repo, "C")
    make(host, "r3")
    dograhctl(host, "deploy", "r3")  # r2 stays, for a rollback; r1 goes, and its layer
    assert not host.files.exists(paths.RELEASES_DIR / "r1")
    assert first not in layers(host) and len(layers(host)) == 1


def test_a_layer_an_interrupted_build_left_is_built_again(host: FakeHost, repo: Path) -> None:
    configure(host, repo)
    make(host, "r1")
    [key] = layers(host)
    # As a SIGKILL during the layer's build leaves it: no .ready, half a venv.
    layer = host.files.path(LAYERS / key)
    shutil.rmtree(layer)
    (layer / "venv/bin").mkdir(parents=True)
    (layer / "venv/bin/half").write_text("")
    host.clock.now += 1
    commit(repo, "B")
    assert f"building the venv layer {key}" in make(host, "r2")
    assert not (layer / "venv/bin/half").exists() and (layer / ".ready").exists()


def test_dograh_on_a_python_it_does_not_ask_for_is_refused_before_any_build(
        host: FakeHost, tmp_path: Path) -> None:
    source = tmp_path / "dograh"
    (source / "api").mkdir(parents=True)
    git(source, "init", "-q", "-b", "main")
    (source / "api/pyproject.toml").write_text(
        '[project]\nname = "dograh"\nversion = "1.42.0"\nrequires-python = ">=3.13,<3.14"\n')
    (source / "api/requirements.txt").write_text("fastapi\n")
    git(source, "add", ".")
    git(source, "commit", "-qm", "dograh")
    host.configure(f"DOGRAH_SOURCE={source}\nDOGRAH_BUILD_PYTHON={sys.executable}\n")
    code, _, err = host.dograhctl("release", "make", "--id", "d1")
    found = ".".join(map(str, sys.version_info[:3]))
    assert code == 1
    assert err.splitlines()[-1] == (
        f"dograhctl: release d1 failed, nothing running changed: Dograh 1.42.0 needs Python "
        f">=3.13,<3.14, and DOGRAH_BUILD_PYTHON={sys.executable} is {found}: set "
        "DOGRAH_BUILD_PYTHON to a Python that fits (Debian 13's python3 is 3.13)")
    assert not layers(host)
    assert not [argv for argv in host.stdin if argv]  # nothing asked, nothing built
    listing = dograhctl(host, "releases")
    assert "d1" in listing and "failed" in listing


def test_a_damaged_description_is_named_and_spoils_no_other(host: FakeHost, repo: Path
                                                            ) -> None:
    releases.configure(host, repo)  # the admin's build command: no layer
    dograhctl(host, "scale")
    make(host, "r1")
    host.files.path(paths.RELEASES_DIR / "r0.json").write_text('{"id": "r0", "state": 7}')
    listing = dograhctl(host, "releases")
    assert "r1" in listing and "ready" in listing
    assert "r0" in listing and "damaged" in listing
    dograhctl(host, "deploy")  # the newest ready: r1
    assert {p.name for p in host.files.listing(paths.RELEASES_DIR)} >= {"r1", "r0.json"}


def test_a_failed_builds_why_is_bounded_and_the_listing_reads_on(host: FakeHost, repo: Path
                                                                 ) -> None:
    loud = "python3 -c 'import sys; sys.stderr.write(\"x\" * 5000); sys.exit(3)'"
    host.configure(f"DOGRAH_SOURCE={repo}\nDOGRAH_SOURCE_LAYOUT=app\n"
                   f"DOGRAH_BUILD_COMMAND=/bin/sh -c {json.dumps(loud)}\n")
    code, _, err = host.dograhctl("release", "make", "--app", "app:app", "--id", "loud")
    assert code == 1 and err.splitlines()[-1].startswith("dograhctl: release loud failed")
    described = json.loads(host.files.read(paths.RELEASES_DIR / "loud.json") or "")
    assert described["state"] == "failed" and len(described["why"]) <= 2000
    listing = dograhctl(host, "releases")
    assert "loud" in listing and "failed" in listing and "damaged" not in listing
    assert len(host.files.read(paths.RELEASES_DIR / "loud.log") or "") > 5000  # kept whole


def test_a_submodule_pinned_to_a_commit_its_source_lacks_is_named(host: FakeHost, repo: Path,
                                                                  tmp_path: Path) -> None:
    lib = tmp_path / "greeting"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    (lib / "greeting.py").write_text('WORD = "hello"\n')
    git(lib, "add", ".")
    git(lib, "commit", "-qm", "greeting")
    git(repo, "submodule", "add", "-q", str(lib), "pipecat")
    git(repo, "commit", "-qm", "with pipecat")
    # The submodule's history rewritten: the commit the app pins is gone from it.
    (lib / "greeting.py").write_text('WORD = "rewritten"\n')
    git(lib, "commit", "-q", "--amend", "-am", "rewritten")
    git(lib, "reflog", "expire", "--expire=now", "--all")
    git(lib, "gc", "-q", "--prune=now")
    releases.configure(host, repo)
    code, _, err = host.dograhctl("release", "make", "--app", "app:app", "--id", "pinned")
    assert code == 1, err
    assert err.splitlines()[-1].startswith("dograhctl: release pinned failed, nothing running "
                                           "changed: fetching failed: submodule pipecat is "
                                           "pinned to "), err
