"""The unit tests need no root: run as nobody, they pass too (checked when run as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None
                    or not Path(DEBIAN_PYTHON).exists(),
                    reason="switching to nobody needs root, runuser and Debian's python3")
def test_the_unit_tests_pass_as_nobody() -> None:
    # A directory of nobody's own (the root's pytest directories are closed to it).
    tmp_path = Path(tempfile.mkdtemp(prefix="dograh-nobody-"))
    tmp_path.chmod(0o777)
    # This interpreter may live where nobody may not go (root's home); Debian's, of
    # the same version, runs the same packages.
    packages = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", DEBIAN_PYTHON, "-m", "pytest", "-q", "-x",
         "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "pytest"),
         "tests/unit/test_operations.py", "tests/unit/test_cluster.py",
         "tests/unit/test_cli.py", "-k", "not killed_at_any_step"],
        cwd=REPO, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(tmp_path),
             "PYTHONPATH": f"{packages}:{REPO}"})
    subprocess.run(["rm", "-rf", str(tmp_path)], check=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
