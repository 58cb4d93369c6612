"""Write generated files so that nothing half-written is ever seen."""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def changed(files: dict[Path, str], root: Path = Path("/")) -> dict[Path, str]:
    """The subset of ``files`` whose content under ``root`` differs."""
    return {path: text for path, text in files.items()
            if read(under(root, path)) != text}


def under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/")


def unified_diff(path: Path, old: str | None, new: str) -> str:
    return "".join(difflib.unified_diff(
        (old or "").splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=str(path) if old is not None else "/dev/null", tofile=str(path)))
