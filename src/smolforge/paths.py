"""Where smolforge keeps files outside run folders: its cache (tiny model builds, the whoami cache)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`SMOLFORGE_CACHE`, else ~/.cache/smolforge."""
    return Path(os.environ.get("SMOLFORGE_CACHE") or Path.home() / ".cache" / "smolforge")
