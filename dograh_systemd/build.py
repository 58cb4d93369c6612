"""Build a release where it lies: ``python3 -m dograh_systemd.build LAYOUT`` in the
release's directory, as the build user (releases.py runs it so, sandboxed).

    dograh  what Dograh's own Dockerfile does: a venv of its own (Dograh wants
            Python 3.13: DOGRAH_BUILD_PYTHON), api/requirements.txt, the pipecat
            submodule with the extras Dograh's image installs, OpenCV without a
            display, NLTK's punkt_tab inside the venv, the MCP validator's node
            modules
    app     a venv over Debian's own packages (FastAPI, uvicorn come from there),
            then the app's requirements.txt, or the app itself from its pyproject.toml

Every module is compiled last: the release is read-only once built, so Python
could not write its caches later. A step that fails ends the build with its
own last words.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PIPECAT_EXTRAS = ("cartesia,deepgram,openai,elevenlabs,groq,google,azure,sarvam,soundfile,"
                  "silero,webrtc,speechmatics,openrouter,camb,mcp,inworld,smallest")
VENV = Path("venv")
PIP = [str(VENV / "bin/python"), "-m", "pip", "install", "--disable-pip-version-check",
       "--no-input", "--progress-bar", "off"]


def step(argv: Sequence[str], cwd: Path | None = None) -> None:
    print("build: " + " ".join(argv), flush=True)
    result = subprocess.run(list(argv), cwd=cwd, stdout=sys.stdout, stderr=subprocess.PIPE,
                            text=True)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{argv[0]} failed ({result.returncode}): {last}")


def dograh(python: str) -> None:
    step([python, "-m", "venv", str(VENV)])
    step([*PIP, "-r", "api/requirements.txt"])
    if Path("pipecat/pyproject.toml").exists():
        step([*PIP, f"./pipecat[{PIPECAT_EXTRAS}]"])
    installed = subprocess.run([str(VENV / "bin/python"), "-m", "pip", "list",
                                "--format=freeze"], capture_output=True, text=True).stdout
    if "opencv-python==" in installed:
        step([str(VENV / "bin/python"), "-m", "pip", "uninstall", "-y", "opencv-python"])
        step([*PIP, "opencv-python-headless"])
    if "nltk==" in installed:
        step([str(VENV / "bin/python"), "-m", "nltk.downloader", "-d",
              str(VENV / "nltk_data"), "punkt_tab"])
    validator = Path("api/mcp_server/ts_validator")
    if (validator / "package-lock.json").exists():
        step(["npm", "ci", "--omit=dev"], cwd=validator)


def app(python: str) -> None:
    step([python, "-m", "venv", "--system-site-packages", str(VENV)])
    if Path("requirements.txt").exists():
        step([*PIP, "-r", "requirements.txt"])
    elif Path("pyproject.toml").exists():
        step([*PIP, "."])


def main(argv: Sequence[str]) -> None:
    layouts = {"dograh": dograh, "app": app}
    if len(argv) != 2 or argv[1] not in layouts:
        raise SystemExit(f"usage: python3 -m dograh_systemd.build {'|'.join(layouts)}")
    layouts[argv[1]](os.environ.get("DOGRAH_BUILD_PYTHON", sys.executable))
    step([str(VENV / "bin/python"), "-m", "compileall", "-q", "-x", r"/node_modules/", "."])


if __name__ == "__main__":
    main(sys.argv)
