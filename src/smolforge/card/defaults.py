"""What the card says when the user did not say it: one rule per default.

The card, the wizard (which shows these as the answers' defaults), the demo app and the checks
`smolforge run` makes before training all ask here, so a default is the same everywhere. A
default is a sentence or a name built from the run's facts, never a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smolforge.card.facts import adapter_name, human_count
from smolforge.card.licenses import base_model_license
from smolforge.card.lineage import is_hub_base, lineage
from smolforge.config import SmolforgeConfig
from smolforge.data import display_name
from smolforge.errors import SmolforgeError
from smolforge.identifiers import is_repo_id, slugify

TINY_BASE = "a tiny SmolLM3-architecture model built locally by smolforge"
HUB_NAME_MAX = 96


class LicenseUnknownError(SmolforgeError):
    """No license was given and the base model's is not known offline: ask, or fail with the fix."""


@dataclass(frozen=True)
class License:
    id: str
    name: str | None  # for `other`
    link: str | None  # for `other`
    source: str  # user | config | base model


def base_is_hub(cfg: SmolforgeConfig) -> bool:
    """The base model is a Hub id (not `tiny`, not a local folder)."""
    return is_hub_base(cfg)


def base_label(cfg: SmolforgeConfig) -> str:
    """How prose names the base model (a local folder by its name: a published card holds no local paths), with
    what its own record says about it."""
    if cfg.model.is_tiny:
        return TINY_BASE
    base = lineage(cfg)
    if base.kind == "hub":
        return base.name
    label = f"the local model `{base.name}`"
    if base.from_scratch:
        return label  # what it is: base_facts
    if base.hub_id:
        return f"{label} (published as {base.hub_id})"
    if base.ancestor:  # e.g. DPO on a local SFT run: the Hub ancestor is the local model's own base
        return f"{label} (itself fine-tuned from {base.ancestor})"
    return label


def base_facts(cfg: SmolforgeConfig) -> str | None:
    """What a local base that descends from random weights is, from its run's record (None otherwise)."""
    base = lineage(cfg)
    if base.kind != "local" or not base.from_scratch:
        return None
    size = f"a {human_count(base.parameters)}-parameter model" if base.parameters else "a model"
    rows = f" on {base.rows:,} rows" if base.rows else ""
    return f"{size} that smolforge trained from random weights{rows}, not a pretrained model"


def base_hub_id(cfg: SmolforgeConfig) -> str | None:
    """The Hub id the card's `base_model` metadata points at. An adapter applies to its exact base, so only that
    base's own Hub id will do; a full fine-tune may name a local base's Hub ancestor."""
    if cfg.model.is_tiny:
        return None
    base = lineage(cfg)
    if base.hub_id or cfg.training.adapters:
        return base.hub_id
    return base.ancestor


METHODS = {"sft": "supervised fine-tuning (SFT)", "dpo": "direct preference optimisation (DPO)",
           "grpo": "reinforcement learning with reward functions (GRPO, group relative policy optimisation)"}
# DPO losses whose name is not "DPO": the card names the one a run used (TRL's DPOConfig.loss_type).
PREFERENCE_LOSSES = {
    "ipo": "identity preference optimisation (IPO, DPO's trainer with the IPO loss)",
    "apo_zero": "anchored preference optimisation (APO-zero, DPO's trainer with the apo_zero loss)",
    "apo_down": "anchored preference optimisation (APO-down, DPO's trainer with the apo_down loss)",
}


def method_name(cfg: SmolforgeConfig) -> str:
    """The training method as the card names it: a model trained from random weights was not fine-tuned."""
    if cfg.training.method == "sft" and cfg.model.is_tiny and not cfg.training.adapters:
        return "supervised training (TRL's SFT trainer)"
    if cfg.training.method == "dpo" and cfg.training.dpo.loss_type in PREFERENCE_LOSSES:
        return PREFERENCE_LOSSES[cfg.training.dpo.loss_type]
    return METHODS[cfg.training.method]


def description(cfg: SmolforgeConfig, dataset_name: str | None = None) -> str:
    """The user's description, else a sentence from how the model was made, the method and the dataset."""
    if cfg.card.model_description:
        return cfg.card.model_description

    t = cfg.training
    data = dataset_name or display_name(cfg.data)
    data = Path(data).name if Path(data).is_absolute() else data
    method = method_name(cfg)

    name = adapter_name(cfg)
    if cfg.model.is_tiny:
        if name is not None:
            return (f"A {name} adapter{' (merged into the weights)' if t.lora.merge else ''} for a tiny, randomly "
                    f"initialised SmolLM3-architecture model, trained with {method} on {data} using smolforge.")
        return (f"A tiny SmolLM3-architecture language model trained from random initial weights with {method} on "
                f"{data} using smolforge.")
    how = f"A {name} adapter for" if name is not None and not t.lora.merge else "A fine-tuned version of"
    what = f" ({base_facts(cfg)})" if base_facts(cfg) else ""
    return f"{how} {base_label(cfg)}{what}, trained with {method} on {data} using smolforge."


# What the card's Uses section says where the user wrote nothing, by how the model was made:
# (trained from random weights, fine-tuned from a pretrained base).
USES_DEFAULTS = {
    "intended_use": (
        "Checking that a training pipeline (data preparation, training, evaluation, quantization, model card, "
        "publishing) works end to end.",
        "Research and experimentation with a chat model for the kind of conversations in its training data. "
        "Evaluate it on your own task before relying on it."),
    "out_of_scope": (
        "Anything a person would rely on: {subject} trained from random weights, not pretrained on broad text, "
        "so it knows nothing beyond its training data.",
        "Decisions about people, and medical, legal or financial advice, without human review; languages and "
        "domains outside its training data, where it was not evaluated."),
}


def uses_text(cfg: SmolforgeConfig, field: str) -> str:
    """`card.<field>` (intended_use, out_of_scope) as the user wrote it, else what follows from how the model was
    made."""
    written = getattr(cfg.card, field)
    if written:
        return written
    from_scratch, fine_tuned = USES_DEFAULTS[field]
    if not lineage(cfg).from_scratch:
        return fine_tuned
    return from_scratch.format(subject="it was" if cfg.model.is_tiny else "its base was")


def license_for(cfg: SmolforgeConfig) -> License:
    """The card's license: the user's, else model.license, else the base model's when known offline."""
    c = cfg.card
    if c.license:  # the schema checked the id, and the name and link of `other`
        return License(c.license, c.license_name, c.license_link, "user")
    if cfg.model.license:
        return License(cfg.model.license, None, None, "config")
    base = base_model_license(cfg.model.name_or_path)
    if base:
        return License(base, None, None, "base model")
    raise LicenseUnknownError(
        f"card.license: the license of the base model {cfg.model.name_or_path!r} is not known offline, and no "
        "license was given. Choose one: --license apache-2.0 (or any Hub id, or `other` with --license-name and "
        "--license-link) or set card.license in the YAML.")


def known_license(cfg: SmolforgeConfig) -> str | None:
    """The license id the card would show, or None when it must be asked for."""
    try:
        return license_for(cfg).id
    except LicenseUnknownError:
        return None


def repo_id(cfg: SmolforgeConfig, username: str | None, experiment: str) -> str | None:
    """publish.repo_id, else `<username>/<slug of the model name or experiment>` when the username is known."""
    if cfg.publish.repo_id:
        return cfg.publish.repo_id
    if not username:
        return None
    name = slugify(cfg.card.model_name or experiment)[:HUB_NAME_MAX].strip("-.") or "model"
    candidate = f"{username}/{name}"
    return candidate if is_repo_id(candidate) else None


def model_name(cfg: SmolforgeConfig, repo: str | None, experiment: str) -> str:
    return cfg.card.model_name or (repo.split("/")[-1] if repo else experiment)


def names(cfg: SmolforgeConfig, recorded_experiment: str | None, folder_name: str,
          username: str | None) -> tuple[str, str | None, str]:
    """(experiment, repo id or None, display name) of a run: the card's title, the plot's, the repo's."""
    experiment = cfg.experiment_name or recorded_experiment or folder_name
    repo = repo_id(cfg, username, experiment)
    return experiment, repo, model_name(cfg, repo, experiment)


def author(cfg: SmolforgeConfig, username: str | None) -> str | None:
    return cfg.card.author_name or username
