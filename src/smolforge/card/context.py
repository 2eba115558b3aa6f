"""Every variable the card can use, each from the most trusted source that has it.

Order of trust: the run (config.yaml as trained, results.json) -> detection (hardware and
versions recorded in results.json) -> the user (flags, the YAML `card:` section, the wizard)
-> defaults. A default is a sentence built from run facts or a clearly marked gap, never a
number: a metric that was not measured is None here and absent from the card.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from smolforge.card.licenses import base_model_license, validate_license
from smolforge.config import CardSection, SmolforgeConfig
from smolforge.data import is_hub_dataset_id
from smolforge.errors import SmolforgeError
from smolforge.runfolder import RunFolder

SEED_VARIABLES = [
    "model_name", "model_description", "repo_name", "base_model", "training_config_type", "trainer_type",
    "batch_size", "gradient_accumulation_steps", "learning_rate", "max_epochs", "max_seq_length",
    "dataset_name", "dataset_size", "dataset_format", "dataset_sample_size", "training_loss",
    "validation_loss", "perplexity", "hardware_info", "experiment_name", "trackio_url", "dataset_repo",
    "author_name", "model_name_slug", "quantized_models",
]
USER_VARIABLES = ["license", "tags", "usage_examples", "limitations", "citation"]
LOSS_PLOT = "loss_curve.png"
GENERIC_LIMITATIONS = [
    "The model can produce text that is factually wrong, biased or offensive; do not rely on it for "
    "decisions that matter without human review.",
    "It inherits the limitations and biases of its base model and of its training data.",
    "Validation loss and perplexity measure fit to held-out data from the training distribution, not "
    "helpfulness, safety or accuracy on other tasks.",
]


@dataclass
class CardInputs:
    """What the user typed (flags over the YAML `card:` section). None = not given."""

    model_name: str | None = None
    author_name: str | None = None
    model_description: str | None = None
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    language: list[str] | None = None
    tags: list[str] | None = None
    usage_examples: list[str] | None = None
    limitations: str | None = None
    citation: str | None = None
    template: str | None = None
    repo_id: str | None = None

    @classmethod
    def from_section(cls, card: CardSection, repo_id: str | None = None) -> CardInputs:
        return cls(**{f.name: getattr(card, f.name) for f in fields(cls) if hasattr(card, f.name)},
                   repo_id=repo_id)

    def merged(self, override: CardInputs) -> CardInputs:
        given = {f.name: getattr(override, f.name) for f in fields(self) if getattr(override, f.name) is not None}
        return replace(self, **given)


class LicenseUnknownError(SmolforgeError):
    """No license was given and the base model's is not known offline: ask, or fail with the fix."""


def slugify(text: str, sep: str = "-") -> str:
    s = re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)
    return s or "model"


def _hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", name)) and not Path(name).exists()


def resolve_license(cfg: SmolforgeConfig, inputs: CardInputs) -> tuple[str, str | None, str | None, str]:
    """(license, license_name, license_link, where it came from) or a message saying how to set it."""
    for source in (inputs, cfg.card):
        if source.license:
            lid = validate_license(source.license, source.license_name, source.license_link)
            name, link = (source.license_name or "").strip() or None, (source.license_link or "").strip() or None
            return lid, name, link, "user"
    if cfg.model.license:
        return validate_license(cfg.model.license, field="model.license"), None, None, "config"
    base = base_model_license(cfg.model.name_or_path)
    if base:
        return base, None, None, "base model"
    raise LicenseUnknownError(
        f"card.license: the license of the base model {cfg.model.name_or_path!r} is not known offline, and no "
        "license was given. Choose one: --license apache-2.0 (or any Hub id, or `other` with --set "
        "card.license_name=... --set card.license_link=...) or set card.license in the YAML."
    )


def upstream_base_model(local: Path) -> str | None:
    """The Hub base model recorded in a local model folder's card (a smolforge run's model/), if any."""
    import yaml

    readme = local / "README.md"
    if not readme.is_file():
        return None
    m = re.match(r"^---\s*\n(.*?)\n---\s*\n", readme.read_text(encoding="utf-8", errors="replace"), re.S)
    try:
        data = yaml.safe_load(m.group(1)) if m else None
    except yaml.YAMLError:
        return None
    base = data.get("base_model") if isinstance(data, dict) else None
    if isinstance(base, list) and len(base) == 1:
        base = base[0]
    return base if isinstance(base, str) and _hub_id(base) else None


def _fmt_lr(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-") if lr < 1e-3 else f"{lr:g}"


def _default_description(cfg: SmolforgeConfig, base_display: str, dataset: str) -> str:
    how = "A LoRA adapter for" if cfg.training.finetune == "lora" and not cfg.training.lora.merge else \
        "A fine-tuned version of"
    method = {"sft": "supervised fine-tuning (SFT)", "dpo": "direct preference optimisation (DPO)"}[
        cfg.training.method]
    return f"{how} {base_display}, trained with {method} on {dataset} using smolforge."


def _sizes(size_bytes: int | None) -> str | None:
    if size_bytes is None:
        return None
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size_bytes < 1000 or unit == "TB":
            return f"{size_bytes:.0f} {unit}" if unit == "B" else f"{size_bytes:.2f} {unit}"
        size_bytes /= 1000
    return None


def _quantized_rows(quantized: dict[str, dict], repo_name: str | None, quantized_as: str) -> list[dict[str, Any]]:
    """One row per variant that exists, with where it lives on the Hub (a subfolder or its own repo)."""
    rows = []
    for name, v in quantized.items():
        ref_size = (v.get("reference") or {}).get("size_bytes")
        row = {**v, "name": name, "size": _sizes(v.get("size_bytes")),
               "size_ratio": v["size_bytes"] / ref_size if v.get("size_bytes") and ref_size else None,
               "repo_id": f"{repo_name}-{name}" if repo_name and quantized_as == "repos" else None}
        rows.append(row)
    return rows


def _quantized_reference(quantized: dict[str, dict]) -> dict[str, Any] | None:
    """The full-precision model the variants were measured against (same eval, same size accounting)."""
    for v in quantized.values():
        ref = v.get("reference")
        if isinstance(ref, dict) and ref.get("size_bytes"):
            out = {**ref, "size": _sizes(ref["size_bytes"])}
            if ref.get("eval_loss") is not None and ref["eval_loss"] < 700:
                out["perplexity"] = math.exp(ref["eval_loss"])
            return out
    return None


def _dpo_eval(results: dict[str, Any]) -> dict[str, float]:
    """DPO's measured preference metrics from the final evaluation (absent when not measured)."""
    log = results.get("eval_log") or {}
    names = {"reward_accuracy": "eval_rewards/accuracies", "reward_margin": "eval_rewards/margins"}
    return {k: float(log[v]) for k, v in names.items() if isinstance(log.get(v), (int, float))}


def build_context(run: RunFolder, cfg: SmolforgeConfig, results: dict[str, Any], inputs: CardInputs,
                  username: str | None = None) -> dict[str, Any]:
    """All template variables for this run. Raises SmolforgeError when the license cannot be known."""
    t, d = cfg.training, results.get("dataset") or {}
    license_id, license_name, license_link, license_source = resolve_license(cfg, inputs)

    base_name = cfg.model.name_or_path
    base_is_hub = not cfg.model.is_tiny and _hub_id(base_name)
    base_display = ("a tiny SmolLM3-architecture model built locally by smolforge" if cfg.model.is_tiny
                    else base_name)
    base_hub_id = base_name if base_is_hub else None
    if not base_is_hub and not cfg.model.is_tiny:
        upstream = upstream_base_model(Path(base_name).expanduser())
        if upstream:  # e.g. DPO on a local SFT run: the Hub ancestor is the local model's own base
            base_hub_id = upstream
            base_display = f"{base_name} (itself fine-tuned from {upstream})"
    experiment = cfg.experiment_name or results.get("experiment_name") or run.root.name
    repo_name = inputs.repo_id or cfg.publish.repo_id
    if not repo_name and username:
        repo_name = f"{username}/{slugify(inputs.model_name or experiment)}"
    model_name = inputs.model_name or (repo_name.split("/")[-1] if repo_name else experiment)
    dataset_name = d.get("name") or cfg.data.name
    description = inputs.model_description or _default_description(cfg, base_display, dataset_name)
    author = inputs.author_name or username
    started = results.get("started_at")
    year = datetime.fromisoformat(started).year if started else datetime.now().year
    slug = slugify(experiment, "_")

    adapter = t.finetune == "lora" and not t.lora.merge
    quantized = {k: v for k, v in (results.get("quantized") or {}).items() if isinstance(v, dict) and v.get("path")
                 and (run.root / v["path"]).exists()}
    quantized_skipped = {k: v["skipped"] for k, v in (results.get("quantized") or {}).items()
                         if isinstance(v, dict) and v.get("skipped")}
    tracking = results.get("tracking") or {}
    tags = list(dict.fromkeys([*(t for t in inputs.tags or [] if t.strip()), "smolforge", t.method, "trl",
                               *(["lora"] if t.finetune == "lora" else []), "text-generation"]))
    eval_loss, perplexity = results.get("eval_loss"), results.get("perplexity")
    train_loss = results.get("final_train_loss", results.get("train_loss"))

    ctx: dict[str, Any] = {
        # ---- the seed's variables
        "model_name": model_name,
        "model_description": description,
        "repo_name": repo_name,
        "base_model": base_display,
        "training_config_type": cfg.preset or "custom",
        "trainer_type": t.method.upper(),
        "batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "max_epochs": t.epochs if t.max_steps <= 0 else None,
        "max_seq_length": t.max_length,
        "dataset_name": dataset_name,
        "dataset_size": (d.get("train_size", 0) + d.get("eval_size", 0)) if d else None,
        "dataset_format": d.get("format"),
        "dataset_sample_size": d.get("max_samples"),
        "training_loss": train_loss,
        "validation_loss": eval_loss,
        "perplexity": perplexity,
        "hardware_info": (results.get("hardware") or {}).get("summary"),
        "experiment_name": experiment,
        "trackio_url": tracking.get("url"),
        "dataset_repo": tracking.get("dataset_repo"),
        "author_name": author,
        "model_name_slug": slug,
        "quantized_models": bool(quantized),
        # ---- the seed's future enhancements
        "license": license_id,
        "tags": tags,
        "usage_examples": list(inputs.usage_examples or []),
        "limitations": inputs.limitations,
        "citation": inputs.citation,
        # ---- everything else the default template shows
        "license_name": license_name,
        "license_link": license_link,
        "license_source": license_source,
        "language": inputs.language or cfg.card.language,
        "base_model_id": base_hub_id,
        "base_model_is_local": not cfg.model.is_tiny and not base_is_hub,
        "is_tiny": cfg.model.is_tiny,
        "is_adapter": adapter,
        "finetune": t.finetune,
        "lora": t.lora.model_dump() if t.finetune == "lora" else None,
        "dpo": t.dpo.model_dump() if t.method == "dpo" else None,
        "training": t.model_dump(),
        "max_steps": t.max_steps if t.max_steps > 0 else None,
        "effective_batch_size": t.batch_size * t.gradient_accumulation_steps * t.nproc,
        "learning_rate_display": _fmt_lr(t.learning_rate),
        "runtime": results.get("runtime") or {},
        "dataset": d,
        "dataset_hub_id": dataset_name if d.get("source") == "hub" and is_hub_dataset_id(dataset_name) else None,
        "eval_split": results.get("eval_split"),
        "eval_history": results.get("eval_history") or [],
        "global_steps": results.get("global_steps"),
        "epochs_completed": results.get("epochs"),
        "train_runtime_s": results.get("train_runtime_s"),
        "tokens": results.get("tokens") or {},
        "tokens_per_second": results.get("tokens_per_second"),
        "peak_memory": results.get("peak_memory") or {},
        "parameters": results.get("parameters") or {},
        "loss_on": results.get("loss_on"),
        "tracking": tracking,
        "quantized": _quantized_rows(quantized, repo_name, cfg.publish.quantized_as),
        "quantized_reference": _quantized_reference(quantized),
        "quantized_skipped": quantized_skipped,
        "versions": results.get("versions") or {},
        "loss_plot": LOSS_PLOT if (run.model_dir / LOSS_PLOT).exists() else None,
        "generic_limitations": GENERIC_LIMITATIONS,
        "citation_year": year,
        "reproduce_command": "smolforge run config.yaml",
        "command": results.get("command"),
        "trained": bool(results.get("global_steps")),
        "dpo_eval": _dpo_eval(results) if t.method == "dpo" else {},
    }
    return ctx


TEX_ESCAPES = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$",
               "#": r"\#", "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex(text: str) -> str:
    """User text inside a BibTeX field: one line, (La)TeX specials escaped, braces balanced."""
    return "".join(TEX_ESCAPES.get(c, c) for c in " ".join(str(text).split()))


def bibtex(ctx: dict[str, Any]) -> str:
    """A BibTeX entry from run facts and the author (the key is the run's unique slug)."""
    lines = [f"@misc{{{ctx['model_name_slug']},", f"  title        = {{{tex(ctx['model_name'])}}},"]
    if ctx.get("author_name"):
        lines.append(f"  author       = {{{tex(ctx['author_name'])}}},")
    lines.append(f"  year         = {{{ctx['citation_year']}}},")
    if ctx.get("repo_name"):
        lines.append(f"  howpublished = {{\\url{{https://huggingface.co/{ctx['repo_name']}}}}},")
    lines.append("  note         = {Fine-tuned with smolforge}")
    lines.append("}")
    return "\n".join(lines)
