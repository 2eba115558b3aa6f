"""The config being built: a preset's values, then the flags, then the answers.

It is kept as the plain dict the schema validates (the preset's resolved dump, edited in place),
so every default a prompt shows is the value that would be trained if the user pressed Enter.
The defaults that depend on other answers (experiment name, repo id, license, description,
author) are derived here, in one place, for the wizard and for `smolforge init --yes` alike.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

from smolforge.config import SmolforgeConfig
from smolforge.configfile import deep_merge, parse_sets, validate
from smolforge.errors import SmolforgeError
from smolforge.wizard import checks
from smolforge.wizard.hub import HubAccess

DEFAULT_MODEL = "HuggingFaceTB/SmolLM3-3B"
# data keys that describe one particular dataset: reset when another dataset is chosen
DATASET_SPECIFIC = ("config", "split", "eval_split", "format", "fields", "max_samples")
# card keys a preset may set for its own model: dropped when another base model is chosen
MODEL_SPECIFIC_CARD = ("license", "license_name", "license_link", "model_description")


@dataclass
class InitFlags:
    """`smolforge init` options; None = not given (the preset or the wizard decides)."""

    preset: str | None = None
    base_model: str | None = None
    method: str | None = None
    finetune: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    max_samples: int | None = None
    epochs: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    learning_rate: float | None = None
    max_length: int | None = None
    experiment_name: str | None = None
    repo_id: str | None = None
    private: bool | None = None
    tracking: str | None = None
    trackio_space: str | None = None
    author_name: str | None = None
    model_description: str | None = None
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    tags: list[str] | None = None
    usage_examples: list[str] | None = None
    limitations: str | None = None
    quantize: list[str] | None = None
    demo_space: str | None = None
    sets: list[str] = field(default_factory=list)

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) not in (None, [])}

    def overrides(self) -> dict[str, Any]:
        """The flags as a partial config (model and dataset are applied separately, see Draft.build)."""
        paths = {
            "method": "training.method", "finetune": "training.finetune", "dataset_config": "data.config",
            "max_samples": "data.max_samples", "batch_size": "training.batch_size",
            "gradient_accumulation_steps": "training.gradient_accumulation_steps",
            "learning_rate": "training.learning_rate", "max_length": "training.max_length",
            "experiment_name": "experiment_name", "repo_id": "publish.repo_id", "private": "publish.private",
            "author_name": "card.author_name", "model_description": "card.model_description",
            "license": "card.license", "license_name": "card.license_name", "license_link": "card.license_link",
            "demo_space": "publish.demo_space", "quantize": "quantize",
        }
        out: dict[str, Any] = {}
        for name, path in paths.items():
            value = getattr(self, name)
            if value is not None:
                set_path(out, path, list(value) if isinstance(value, list | tuple) else value)
        if self.epochs is not None:
            set_path(out, "training.epochs", self.epochs)
            set_path(out, "training.max_steps", -1)
        if self.max_steps is not None:
            set_path(out, "training.max_steps", self.max_steps)
        if self.tracking is not None:
            set_path(out, "tracking.backend", "trackio" if self.tracking == "space" else self.tracking)
        if self.trackio_space is not None:
            set_path(out, "tracking.backend", "trackio")
            set_path(out, "tracking.space_id", self.trackio_space)
        if self.tags:
            try:
                set_path(out, "card.tags", checks.parse_tags(",".join(self.tags)))
            except ValueError as e:
                raise SmolforgeError(f"--tag: {e}.") from None
        for name, flag in (("usage_examples", "--usage-example"), ("limitations", "--limitations")):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                parsed = [checks.parse_text_or_file(v, flag) for v in value] if isinstance(value, list) else \
                    checks.parse_text_or_file(value, flag)
            except ValueError as e:
                raise SmolforgeError(f"{e}. Use @FILE for a UTF-8 text file, or pass the text itself.") from None
            set_path(out, f"card.{name}", [p for p in parsed if p] if isinstance(parsed, list) else parsed)
        return out


def get_path(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def preset_dump(name: str) -> dict[str, Any]:
    """A preset's fully resolved values (what `smolforge run --preset NAME` trains)."""
    from smolforge import presets

    return validate({**presets.load_preset_data(name), "preset": name}, f"preset {name!r}").model_dump(mode="json")


def preset_for_model(model: str) -> str:
    """The plain SFT preset for a model (`tiny` -> tiny); the SmolLM3 SFT recipe for any other model."""
    from smolforge import presets

    fits = []
    for name in presets.names():
        p = preset_dump(name)
        if p["model"]["name_or_path"] == model:
            t = p["training"]
            fits.append((t["method"] != "sft", t["finetune"] != "full", len(name), name))
    return min(fits)[-1] if fits else "smollm3-sft"


@dataclass
class Draft:
    preset: str
    data: dict[str, Any]
    preset_data: dict[str, Any]
    hub: HubAccess = field(default_factory=HubAccess)
    dataset_note: str | None = None  # what the wizard learnt about the dataset (format, or why not checked)

    @classmethod
    def build(cls, preset: str, flags: InitFlags, model: str | None = None) -> Draft:
        """Preset, then another base model / dataset if chosen, then every other flag and --set."""
        base = preset_dump(preset)
        draft = cls(preset=preset, data=copy.deepcopy(base), preset_data=base)
        model = model or flags.base_model
        if model:
            draft.set_model(model)
        if flags.dataset:
            draft.set_dataset(flags.dataset)
        draft.data = deep_merge(draft.data, flags.overrides())
        if flags.sets:
            draft.data = deep_merge(draft.data, parse_sets(flags.sets))
        draft.data["preset"] = preset
        return draft

    def get(self, path: str) -> Any:
        return get_path(self.data, path)

    def set(self, path: str, value: Any) -> None:
        set_path(self.data, path, value)

    def set_model(self, name: str) -> None:
        if name == self.get("model.name_or_path"):
            return
        self.set("model.name_or_path", name)
        self.set("model.license", None)
        for key in MODEL_SPECIFIC_CARD:  # the preset described its own model, not this one
            self.set(f"card.{key}", None)

    def set_dataset(self, name: str) -> None:
        if name == self.get("data.name"):
            return
        fresh = SmolforgeConfig().data.model_dump(mode="json")
        self.set("data.name", name)
        for key in DATASET_SPECIFIC:
            self.set(f"data.{key}", fresh[key])
        preset_text = get_path(self.preset_data, "card.model_description")
        if preset_text and self.get("card.model_description") == preset_text:  # it described the preset's data
            self.set("card.model_description", None)

    def config(self, source: str = "the answers") -> SmolforgeConfig:
        return validate(self.data, source)

    # ---------------------------------------------------------------- derived defaults

    def default_experiment_name(self) -> str:
        from smolforge.pipeline import default_experiment_name

        return self.get("experiment_name") or default_experiment_name(self.config())

    def default_repo_id(self) -> str | None:
        from smolforge.card.context import slugify

        if self.get("publish.repo_id"):
            return self.get("publish.repo_id")
        if not self.hub.username:
            return None
        return f"{self.hub.username}/{slugify(self.default_experiment_name())[:96].rstrip('-.')}"

    def default_license(self) -> str | None:
        from smolforge.card.licenses import base_model_license

        return self.get("card.license") or self.get("model.license") or \
            base_model_license(self.get("model.name_or_path"))

    def default_description(self) -> str:
        """The user's or preset's description, else a sentence from the base model, method and dataset."""
        from smolforge.card.context import _default_description  # the card's own default sentence
        from smolforge.data import display_name

        if self.get("card.model_description"):
            return self.get("card.model_description")
        cfg = self.config()
        base = "a tiny SmolLM3-architecture model built locally by smolforge" if cfg.model.is_tiny else \
            cfg.model.name_or_path
        return _default_description(cfg, base, display_name(cfg.data))

    def default_author(self) -> str | None:
        return self.get("card.author_name") or self.hub.username
