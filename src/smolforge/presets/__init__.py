"""Presets: YAML files in this package, each a partial smolforge.yaml validated by the schema.

The values a preset advertises (`smolforge presets`) are read from the same validated config
that trains, so there is one source of truth.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from smolforge.errors import SmolforgeError

# Presets that start from another preset's trained model: the model/ folder of that preset's run under runs/.
# When the config still names that folder and it does not exist yet, `smolforge run` trains the base preset
# into it first, as its own run.
BASE_PRESETS = {"tiny-grpo": "tiny-sft-answers"}


def base_run(name: str | None) -> tuple[str, str] | None:
    """(base preset, the model folder its run leaves) for a preset that starts from another preset's model."""
    base = BASE_PRESETS.get(name or "")
    return (base, f"runs/{base}/model") if base else None


def names() -> list[str]:
    files = resources.files(__name__).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def read_text(name: str) -> str:
    if name not in names():
        raise SmolforgeError(f"Unknown preset {name!r}. Available presets: {', '.join(names())}. "
                             "See them with `smolforge presets`.")
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def load_preset_data(name: str) -> dict[str, Any]:
    return yaml.safe_load(read_text(name)) or {}


def description(name: str) -> str:
    """The preset's first comment line: what it is for."""
    for line in read_text(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""
