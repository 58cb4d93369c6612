"""The unit tests need no root: run as nobody, they pass too (checked when run as root)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None
                    or shutil.which("unshare") is None or not Path(DEBIAN_PYTHON).exists(),
                    reason="switching to nobody needs root, runuser, unshare and Debian's "
                           "python3")
def test_the_unit_tests_pass_as_nobody() -> None:
    # A directory of nobody's own (the root's pytest directories are closed to it).
    tmp_path = Path(tempfile.mkdtemp(prefix="dograh-nobody-"))
    tmp_path.chmod(0o777)
    # The checkout and this interpreter's packages may live where nobody may not go (a
    # root-only directory, root's home): the code is copied, the packages are mounted in
    # nobody's reach in a mount namespace of the test's own. Debian's python3, of the
    # same version, runs the same packages.
    repo, site = tmp_path / "repo", tmp_path / "site-packages"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(
        ".*", "__pycache__", "mutants", "dist", "bench"))
    repo.chmod(0o755)
    packages = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))
    site.mkdir()
    nobody = ["runuser", "-u", "nobody", "--", DEBIAN_PYTHON, "-m", "pytest", "-q", "-x",
              "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "pytest"),
              "tests/unit/test_operations.py", "tests/unit/test_cluster.py",
              "tests/unit/test_cli.py", "-k", "not killed_at_any_step"]
    script = (f"mount --bind {shlex.quote(str(packages))} {site} && "
              f"cd {repo} && exec {shlex.join(nobody)}")
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(tmp_path),
             "PYTHONPATH": f"{site}:{repo}", "PYTHONDONTWRITEBYTECODE": "1"})
    site.rmdir()  # empty: the mount went with the namespace
    subprocess.run(["rm", "-rf", str(tmp_path)], check=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
