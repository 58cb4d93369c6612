"""Pure-Python wheels made by hand for the tests: no build backend, no network."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Mapping
from pathlib import Path


def wheel(directory: Path, name: str, version: str, files: Mapping[str, str]) -> Path:
    """A wheel of ``files`` (path in the wheel -> text), with its metadata and RECORD."""
    dist = f"{name}-{version}"
    contents = {**files,
                f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
                                              f"Version: {version}\n",
                f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
                                           "Root-Is-Purelib: true\nTag: py3-none-any\n"}

    def digest(text: str) -> str:
        raw = hashlib.sha256(text.encode()).digest()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    record = "".join(f"{path},sha256={digest(text)},{len(text.encode())}\n"
                     for path, text in contents.items())
    contents[f"{dist}.dist-info/RECORD"] = record + f"{dist}.dist-info/RECORD,,\n"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name_in, text in contents.items():
            archive.writestr(name_in, text)
    return path
