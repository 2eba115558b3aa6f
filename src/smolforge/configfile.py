"""Load smolforge.yaml: preset + file + `--set` overrides -> one validated config.

Every problem is collected and reported at once (key, what is allowed, what was given), the way
torchtune reports config errors, so a user fixes a file in one pass instead of five runs.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from smolforge import presets
from smolforge.config import SmolforgeConfig
from smolforge.errors import ConfigError, SmolforgeError, first_line


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SmolforgeError(f"Config file {path} does not exist. Create one with `smolforge init`, "
                             "or run a preset with `smolforge run --preset tiny`.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SmolforgeError(f"Cannot read config file {path}: {e}. "
                             "Check the path and that it is UTF-8 text.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or first_line(e)
        raise SmolforgeError(f"{path} is not valid YAML{where}: {problem}. "
                             "Fix the syntax (indentation, quotes around values with ':' or '#').") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SmolforgeError(f"{path} must be a YAML mapping of sections (model:, data:, training: ...), "
                             f"not a {type(data).__name__}.")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`["training.learning_rate=1e-4", ...]` -> nested dict; values are parsed as YAML scalars/lists."""
    problems, out = [], {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(f"--set {item!r}: expected section.key=value, e.g. --set training.learning_rate=1e-4")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"--set {item!r}: {part} is set both as a value and as a section")
                break
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError("The --set options", problems, "Use --set section.key=value, one per option.")
    return out


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names of the section at `loc[:-1]`, to suggest a fix for an unknown key."""
    model: Any = SmolforgeConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def format_validation_error(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        kind, msg = e["type"], e["msg"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            where = ".".join(str(p) for p in loc[:-1]) or "the top level"
            problems.append(f"{key}: unknown key{hint} (keys allowed in {where}: {', '.join(allowed)})")
            continue
        msg = msg.replace("Value error, ", "")
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        problems.append(f"{key}: {msg}{shown}")
    return problems


def validate(data: dict[str, Any], source: str) -> SmolforgeConfig:
    try:
        return SmolforgeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, format_validation_error(e)) from None


def load_config(path: Path | None = None, preset: str | None = None, sets: list[str] | None = None) -> SmolforgeConfig:
    """Resolve preset (or the file's `preset:` key) + file + overrides into a validated config."""
    file_data = read_yaml(path) if path else {}
    preset_name = preset or file_data.get("preset")
    data: dict[str, Any] = {}
    if preset_name:
        data = presets.load_preset_data(str(preset_name))
        data["preset"] = str(preset_name)
    data = deep_merge(data, file_data)
    if preset:
        data["preset"] = preset
    if sets:
        data = deep_merge(data, parse_sets(sets))
    source = str(path) if path else f"preset {preset_name!r}" if preset_name else "the default config"
    if sets:
        source += " with --set overrides"
    return validate(data, source)
