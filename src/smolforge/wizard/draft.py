"""The config being built: a preset's values, then the flags, then the answers.

It is kept as the plain dict the schema validates (the preset's resolved dump, edited in place
through `config.loading.set_value`, the rule every front end uses), so every default a prompt
shows is the value that would be trained if the user pressed Enter. Defaults that depend on
other answers (experiment name, repo id, license, description, author) come from the card's and
the run's own default rules, for the wizard and for `smolforge init --yes` alike.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smolforge import presets
from smolforge.card import defaults
from smolforge.config import SmolforgeConfig
from smolforge.config.loading import deep_merge, get_path, parse_sets, preset_dump, set_value, validate
from smolforge.resume import default_experiment_name
from smolforge.wizard.hub import HubAccess

DEFAULT_MODEL = "HuggingFaceTB/SmolLM3-3B"

# The settings each step asks, in order (special prompts for some are in the step functions).
TRAINER_STEP = ["training.method", "training.finetune"]
DATASET_STEP = ["data.name", "data.config", "data.max_samples"]
TRAINING_STEP = ["training.epochs", "training.max_steps", "training.batch_size", "training.gradient_accumulation_steps",
                 "training.learning_rate", "training.max_length"]
NAMING_STEP = ["experiment_name", "publish.repo_id", "publish.private"]
TRACKING_STEP = ["tracking.backend", "tracking.space_id"]
CARD_STEP = ["card.author_name", "card.model_description", "card.license", "card.tags", "card.intended_use",
             "card.out_of_scope", "card.training_data", "card.usage_examples", "card.limitations"]
OUTPUTS_STEP = ["evaluation.tasks", "quantize.methods", "publish.demo_space"]
STEPS = [TRAINER_STEP, DATASET_STEP, TRAINING_STEP, NAMING_STEP, TRACKING_STEP, CARD_STEP, OUTPUTS_STEP]


@dataclass
class Outcome:
    path: Path
    start_run: bool
    token: str | None = None  # a typed, unstored token for a run started right away (passed by env only)


def preset_for_model(model: str) -> str:
    """The plain SFT preset for a model (`tiny` -> tiny); the SmolLM3 SFT recipe for any other model."""
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
    source: str = "the answers"  # how problems name where a value came from
    hint: str | None = None  # how to fix them

    @classmethod
    def build(cls, preset: str, flags: dict[str, Any] | None = None, sets: list[str] | None = None,
              model: str | None = None) -> Draft:
        """The preset, then another base model if chosen, then the flags and --set (model and dataset first, so
        their resets never undo another flag)."""
        base = preset_dump(preset)
        draft = cls(preset=preset, data=copy.deepcopy(base), preset_data=base)
        values = dict(flags or {})
        if model:
            values.setdefault("model.name_or_path", model)
        first = [p for p in ("model.name_or_path", "data.name") if p in values]
        for path in [*first, *(p for p in values if p not in first)]:
            draft.set(path, values[path])
        if sets:
            draft.data = deep_merge(draft.data, parse_sets(sets))
        draft.data["preset"] = preset
        return draft

    def get(self, path: str) -> Any:
        return get_path(self.data, path)

    def set(self, path: str, value: Any) -> None:
        set_value(self.data, path, value)

    def config(self) -> SmolforgeConfig:
        return validate(self.data, self.source, self.hint)

    # ---------------------------------------------------------------- derived defaults

    def default_experiment_name(self) -> str:
        return self.get("experiment_name") or default_experiment_name(self.config())

    def default_repo_id(self) -> str | None:
        return defaults.repo_id(self.config(), self.hub.username, self.default_experiment_name())

    def default_license(self) -> str | None:
        return defaults.known_license(self.config())

    def default_description(self) -> str:
        return defaults.description(self.config())

    def default_author(self) -> str | None:
        return defaults.author(self.config(), self.hub.username)
