"""A config as the UI holds it: YAML text (what the YAML view shows and `start` takes), the form's values, and
the problems `smolforge run` would stop on, each tied to its setting.

Validation is `load_config` on the YAML as a file, then the first checks `smolforge run` makes before it
creates anything (the base model, the data source, a run folder that already holds a run): the same
functions, so the UI cannot accept what the CLI refuses or refuse what it accepts.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smolforge.config import SmolforgeConfig
from smolforge.config.fields import find
from smolforge.config.loading import load_config, preset_dump, validate
from smolforge.data.sources import check_source
from smolforge.errors import ConfigError, SmolforgeError
from smolforge.modelio import check_model_name
from smolforge.resume import check_new_folder, default_run_folder
from smolforge.runfolder import RunFolder
from smolforge.webui.form import Field, form_fields

_TEMP_FILE = re.compile(r"\S*smolforge-ui-[^/\s]+/config\.yaml")


@dataclass(frozen=True)
class Problem:
    setting: str | None  # the setting it is about (a form field's path), None for the config as a whole
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "message": self.message}


def _lookup(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def baseline(preset: str | None) -> dict[str, Any]:
    """What a config starts from: the preset's resolved values, or the schema's defaults."""
    if preset:
        return preset_dump(preset)
    return validate({}, "the defaults").model_dump(mode="json")


def form_values(data: dict[str, Any]) -> dict[str, Any]:
    """A resolved config's values as the form's widgets hold them."""
    return {f.path: f.shown(_lookup(data, f.path)) for f in form_fields()}


def resolved_data(text: str) -> dict[str, Any]:
    """A config's YAML resolved over its preset (the values the form shows), or a ConfigError/SmolforgeError."""
    return with_file(text, lambda path: load_config(path)).model_dump(mode="json")


def yaml_from_form(preset: str | None, values: dict[str, Any]) -> str:
    """The YAML the form stands for: the preset, and each setting whose value differs from it."""
    base = baseline(preset)
    out: dict[str, Any] = {"preset": preset} if preset else {}
    fields: dict[str, Field] = {f.path: f for f in form_fields()}
    for path, shown in values.items():
        field = fields.get(path)
        if field is None:
            continue
        value = field.read(shown)
        if value != _lookup(base, path):
            _put(out, path, value)
    return yaml.safe_dump(out, sort_keys=False, allow_unicode=True) if out else "{}\n"


def with_file(text: str, use):
    """Call `use` with the YAML text as a file (what `smolforge run FILE` reads)."""
    with tempfile.TemporaryDirectory(prefix="smolforge-ui-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        return use(path)


def _setting_of(line: str) -> tuple[str | None, str]:
    """`training.lora.r: must be ...` -> ("training.lora.r", "must be ..."): the longest setting path the line
    starts with (a key inside a mapping setting names that setting)."""
    head, sep, rest = line.partition(": ")
    if not sep:
        return None, line
    parts = head.split(".")
    for n in range(len(parts), 0, -1):
        if find(".".join(parts[:n])) is not None:
            return ".".join(parts[:n]), rest
    return None, line


def problems(text: str, runs_dir: Path) -> tuple[SmolforgeConfig | None, list[Problem]]:
    """The config the YAML makes and every problem `smolforge run` would stop on before it starts, at once."""
    try:
        cfg = with_file(text, lambda path: load_config(path))
    except ConfigError as e:
        return None, [Problem(*_setting_of(line)) for line in e.problems]
    except SmolforgeError as e:  # not YAML, not a mapping
        return None, [Problem(None, _TEMP_FILE.sub("The YAML", str(e)))]
    found = []
    for check in (lambda: check_model_name(cfg), lambda: check_source(cfg.data)):
        try:
            check()
        except SmolforgeError as e:
            found.append(Problem(*_setting_of(str(e))))
    if cfg.experiment_name or cfg.output_dir:
        try:
            check_new_folder(run_folder(cfg, runs_dir))
        except SmolforgeError as e:
            found.append(Problem("experiment_name", str(e)))
    return cfg, found


def run_folder(cfg: SmolforgeConfig, runs_dir: Path) -> RunFolder:
    """Where the UI starts a run: output_dir when the config gives one, else runs_dir/<experiment_name>."""
    if cfg.output_dir:
        return default_run_folder(cfg)
    return RunFolder(runs_dir / str(cfg.experiment_name))
