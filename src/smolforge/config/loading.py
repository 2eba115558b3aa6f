"""Resolve a config: preset, then the YAML file, then flags, then `--set`, into one validated config.

Every problem is collected and reported at once (key, what is allowed, what was given), so a
user fixes a file in one pass instead of five runs. `set_value` is the one way a single setting
changes (flags, the wizard), with the rules that keep a config coherent when the base model or
the dataset changes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from smolforge import presets
from smolforge.config import fields
from smolforge.config.problems import format_errors
from smolforge.config.schema import SmolforgeConfig
from smolforge.errors import ConfigError, SmolforgeError, first_line

# data keys that describe one particular dataset: reset to the schema's defaults when another dataset is chosen
DATASET_SPECIFIC = ("config", "revision", "split", "eval_split", "format", "fields", "max_samples")
# settings a preset makes for its own base model: dropped when another base model is chosen
MODEL_SPECIFIC = ("model.license", "card.license", "card.license_name", "card.license_link", "card.model_description")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a config with a key twice is almost always a mistake."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice (lines {seen[key]} and {line}); keep one",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SmolforgeError(f"Config file {path} does not exist. Create one with `smolforge init`, "
                             "or run a preset with `smolforge run --preset tiny`.") from None
    except IsADirectoryError:
        raise SmolforgeError(f"{path} is a folder, not a config file. Give a YAML file (create one with "
                             "`smolforge init`), or a run folder with --resume.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SmolforgeError(f"Cannot read config file {path}: {e}. "
                             "Check the path and that it is UTF-8 text.") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
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


def get_path(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def nest(values: dict[str, Any]) -> dict[str, Any]:
    """{"card.author_name": "Ada"} -> {"card": {"author_name": "Ada"}}."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        _put(out, path, value)
    return out


def set_value(data: dict[str, Any], path: str, value: Any) -> None:
    """Change one setting in a config dict, with what changing it implies.

    Choosing another dataset resets the keys that described the preset's dataset (split, format,
    column mapping...); choosing another base model drops what the preset said about its own model
    (its license, a description naming it). Values the user set themselves are kept. A flag's
    `implies` (e.g. --epochs -> max_steps -1) follow.
    """
    reset: dict[str, Any] = {}
    if path == "data.name" and value != get_path(data, "data.name"):
        fresh = SmolforgeConfig().data.model_dump(mode="json")
        reset = {f"data.{key}": fresh[key] for key in DATASET_SPECIFIC}
        reset["card.model_description"] = None  # the preset's sentence named the preset's data
    if path == "model.name_or_path" and value != get_path(data, "model.name_or_path"):
        reset = dict.fromkeys(MODEL_SPECIFIC)
    if reset:
        base = preset_dump(data["preset"]) if data.get("preset") else SmolforgeConfig().model_dump(mode="json")
        for key, fresh_value in reset.items():
            if get_path(data, key) == get_path(base, key):
                _put(data, key, copy.deepcopy(fresh_value))
    _put(data, path, value)
    found = fields.find(path)
    if value is not None and found is not None and found.flag is not None:  # clearing a setting implies nothing
        for other, implied in found.flag.implies:
            _put(data, other, implied)


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`["training.learning_rate=1e-4", ...]` -> nested dict, each value parsed for its setting's type
    (text stays text; numbers, booleans and lists are read as YAML)."""
    problems, out = [], {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(f"--set {item!r}: expected section.key=value, e.g. --set training.learning_rate=1e-4")
            continue
        known = fields.find(key)
        try:
            if known is not None:
                value = known.parse(raw)
            elif isinstance(fields.find(key.rsplit(".", 1)[0]), fields.Setting):
                value = raw  # a key inside a mapping setting (data.fields.question=q): text
            else:
                value = yaml.safe_load(raw) if raw.strip() else ""
        except fields.SettingError as e:
            problems += e.lines
            continue
        except yaml.YAMLError:
            value = raw
        node = out
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"--set {item!r}: {part} is set both as a value and as a section")
                break
        else:
            node[key.split(".")[-1]] = value
    if problems:
        raise ConfigError("the --set options", problems, "Use --set section.key=value, one per option.")
    return out


def validate(data: dict[str, Any], source: str, hint: str | None = None) -> SmolforgeConfig:
    try:
        return SmolforgeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, format_errors(e), hint) from None


def preset_dump(name: str) -> dict[str, Any]:
    """A preset's fully resolved values (what `smolforge run --preset NAME` trains)."""
    return validate({**presets.load_preset_data(name), "preset": name}, f"preset {name!r}").model_dump(mode="json")


def load_config(path: Path | None = None, preset: str | None = None, sets: list[str] | None = None,
                flags: dict[str, Any] | None = None) -> SmolforgeConfig:
    """Preset (or the file's `preset:` key), then the file, then flag values, then `--set` overrides."""
    file_data = read_yaml(path) if path else {}
    preset_name = preset or file_data.get("preset")
    data: dict[str, Any] = {}
    if preset_name:
        data = presets.load_preset_data(str(preset_name))
        data["preset"] = str(preset_name)
    data = deep_merge(data, file_data)
    if preset:
        data["preset"] = preset
    for key, value in (flags or {}).items():
        set_value(data, key, value)
    if sets:
        data = deep_merge(data, parse_sets(sets))
    source = str(path) if path else f"preset {preset_name!r}" if preset_name else "the default config"
    given = [w for w, on in (("flags", flags), ("--set overrides", sets)) if on]
    if given:
        source += " with " + " and ".join(given)
    if given:
        hint = "Fix the flag or --set value (see `smolforge run --help`)."
    else:
        hint = f"Fix the value in {path}, or override it with --set section.key=value." if path else None
    return validate(data, source, hint)
