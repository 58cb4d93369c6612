from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_launcher_strips_colours_and_runs_the_module(tmp_path: Path) -> None:
    (tmp_path / "colourful.py").write_text(
        "import sys\n"
        "print('\\x1b[32mINFO\\x1b[0m | started', sys.argv[1:], sys.stdout.isatty())\n"
        "print('\\x1b[1;31merror\\x1b[0m', file=sys.stderr)\n")
    result = subprocess.run(
        [sys.executable, "-m", "dograh_systemd.worker.plain_output", "-m", "colourful", "a", "b"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
        env={"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[2]}"})
    assert result.stdout == "INFO | started ['a', 'b'] False\n"
    assert result.stderr == "error\n"


def test_launcher_needs_a_module() -> None:
    result = subprocess.run([sys.executable, "-m", "dograh_systemd.worker.plain_output",
                             "script.py"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "usage:" in result.stderr
