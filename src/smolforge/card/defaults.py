"""What the card says when the user did not say it: one rule per default.

The card, the wizard (which shows these as the answers' defaults), the demo app and the checks
`smolforge run` makes before training all ask here, so a default is the same everywhere. A
default is a sentence or a name built from the run's facts, never a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smolforge.card.facts import adapter_name
from smolforge.card.frontmatter import read_metadata
from smolforge.card.licenses import base_model_license
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
    name = cfg.model.name_or_path
    return not cfg.model.is_tiny and is_repo_id(name) and not Path(name).expanduser().exists()


def upstream_base_model(local: Path) -> str | None:
    """The Hub base model a local model folder's card names (a smolforge run's model/), if any."""
    base = read_metadata(local / "README.md").get("base_model")
    if isinstance(base, list) and len(base) == 1:
        base = base[0]
    return base if isinstance(base, str) and is_repo_id(base) and not Path(base).exists() else None


def base_label(cfg: SmolforgeConfig) -> str:
    """How prose names the base model (a local folder by its name: a published card holds no local paths)."""
    if cfg.model.is_tiny:
        return TINY_BASE
    if not base_is_hub(cfg):
        local = Path(cfg.model.name_or_path).expanduser()
        name = f"{local.parent.name}/{local.name}" if local.name == "model" else local.name  # a run's model/
        upstream = upstream_base_model(local)
        if upstream:  # e.g. DPO on a local SFT run: the Hub ancestor is the local model's own base
            return f"the local model `{name}` (itself fine-tuned from {upstream})"
        return f"the local model `{name}`"
    return cfg.model.name_or_path


def base_hub_id(cfg: SmolforgeConfig) -> str | None:
    """The Hub id the card's `base_model` metadata points at (a local base's own Hub base), else None."""
    if cfg.model.is_tiny:
        return None
    if base_is_hub(cfg):
        return cfg.model.name_or_path
    return upstream_base_model(Path(cfg.model.name_or_path).expanduser())


METHODS = {"sft": "supervised fine-tuning (SFT)", "dpo": "direct preference optimisation (DPO)"}


def method_name(cfg: SmolforgeConfig) -> str:
    """The training method as the card names it: a model trained from random weights was not fine-tuned."""
    if cfg.training.method == "sft" and cfg.model.is_tiny and not cfg.training.adapters:
        return "supervised training (TRL's SFT trainer)"
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
    return f"{how} {base_label(cfg)}, trained with {method} on {data} using smolforge."


# What the card's Uses section says where the user wrote nothing, by how the model was made:
# (trained from random weights, fine-tuned from a pretrained base).
USES_DEFAULTS = {
    "intended_use": (
        "Checking that a training pipeline (data preparation, training, evaluation, quantization, model card, "
        "publishing) works end to end.",
        "Research and experimentation with a chat model for the kind of conversations in its training data. "
        "Evaluate it on your own task before relying on it."),
    "out_of_scope": (
        "Anything a person would rely on: it was trained from random weights, not pretrained on broad text, "
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
    return from_scratch if cfg.model.is_tiny else fine_tuned


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
