"""Write the wizard's answers as a short, readable smolforge.yaml.

The file names its preset and lists only the values that differ from it, so the preset stays the
source of truth for everything the user did not touch. Before the file replaces anything, the
temporary copy is loaded back exactly as `smolforge run FILE` loads it, and must give the same
config that was confirmed; only then is it renamed into place (atomic: never half-written).
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.config.loading import load_config
from smolforge.errors import SmolforgeError
from smolforge.runfolder import umask_mode

_MISSING = object()


def diff(final: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The keys of `final` whose values differ from `base`, nested like the config."""
    out: dict[str, Any] = {}
    for key, value in final.items():
        old = base.get(key, _MISSING)
        if isinstance(value, dict) and isinstance(old, dict):
            sub = diff(value, old)
            if sub:
                out[key] = sub
        elif value != old:
            out[key] = value
    return out


def render(cfg: SmolforgeConfig, preset: str, file_name: str, base: dict[str, Any], minimal: bool = True) -> str:
    final = dump_dict(cfg)
    body = {k: v for k, v in (diff(final, base) if minimal else final).items() if k != "preset"}
    header = [
        f"# smolforge config, written by `smolforge init` on {datetime.now():%Y-%m-%d %H:%M}.",
        f"# Train it with:  smolforge run {file_name}",
        f"# Values not listed here come from the preset `{preset}` (see `smolforge presets`). Edit any value",
        "# here, or override it for one run with --set section.key=value. No token is stored in this file.",
    ]
    text = yaml.safe_dump({"preset": preset, **body}, sort_keys=False, allow_unicode=True, width=100,
                          default_flow_style=False)
    return "\n".join(header) + "\n" + text


def _try_write(path: Path, text: str, cfg: SmolforgeConfig) -> bool:
    """Write a temp file beside `path`, reload it like `smolforge run` does; rename only if identical."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        same = dump_dict(load_config(Path(tmp))) == dump_dict(cfg)
        if same:
            os.chmod(tmp, umask_mode())  # mkstemp makes owner-only files; a config is a file like any other
            os.replace(tmp, path)
        return same
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_config(path: Path, cfg: SmolforgeConfig, preset: str, base: dict[str, Any]) -> Path:
    """Write `cfg` as preset + differences (or every value, if a difference cannot be expressed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for minimal in (True, False):
        if _try_write(path, render(cfg, preset, path.name, base, minimal), cfg):
            return path
    raise SmolforgeError(f"{path}: the answers cannot be written on top of the preset {preset!r} (a mapping such "
                         "as data.fields would lose keys). Nothing was written; choose another preset or "
                         "edit the preset's values with --set.")
