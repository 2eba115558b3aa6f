"""Where smolforge keeps files outside run folders (its cache: tiny model builds, the whoami cache), and where its
own command is (for the child processes and scripts that run it)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def cache_root() -> Path:
    """`SMOLFORGE_CACHE`, else ~/.cache/smolforge."""
    return Path(os.environ.get("SMOLFORGE_CACHE") or Path.home() / ".cache" / "smolforge")


def smolforge_executable() -> str:
    """The `smolforge` this process runs from (beside its Python, in a virtualenv), else the one on PATH."""
    beside = Path(sys.executable).with_name("smolforge")
    if beside.is_file():
        return str(beside)
    return shutil.which("smolforge") or "smolforge"
