"""The summary shown before anything is written: every answer, one row each (rich table)."""

from __future__ import annotations

from smolforge.config import SmolforgeConfig
from smolforge.wizard.hub import HubAccess


def _short(text: str | None, limit: int = 90) -> str:
    if not text:
        return "(none)"
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def rows(cfg: SmolforgeConfig, hub: HubAccess, dataset_note: str | None, output: str) -> list[tuple[str, str]]:
    t, d, c, p = cfg.training, cfg.data, cfg.card, cfg.publish
    length = f"{t.epochs:g} epoch{'' if t.epochs == 1 else 's'}" if t.max_steps <= 0 else f"{t.max_steps:,} steps"
    data = d.name + (f" [{d.config}]" if d.config else "") + (f" ({dataset_note})" if dataset_note else "")
    if d.max_samples:
        data += f", at most {d.max_samples:,} samples"
    tracking = {"trackio": "trackio, local", "none": "none"}.get(cfg.tracking.backend, cfg.tracking.backend)
    if cfg.tracking.space_id:
        tracking = f"trackio Space {cfg.tracking.space_id} (private)"
    license_text = c.license or "(base model's)"
    if c.license == "other":
        license_text = f"other: {c.license_name} ({c.license_link})"
    out = [
        ("Hugging Face", hub.describe()),
        ("Base model", cfg.model.name_or_path),
        ("Preset", cfg.preset or "custom"),
        ("Method", f"{t.method.upper()}, " + ("LoRA" if t.finetune == "lora" else "full fine-tune")),
        ("Dataset", data),
        ("Training", f"{length}, batch {t.batch_size} x {t.gradient_accumulation_steps} accumulation, "
                     f"learning rate {t.learning_rate:g}, max length {t.max_length:,} tokens"),
        ("Experiment", str(cfg.experiment_name)),
        ("Publish to", f"{p.repo_id} ({'private' if p.private else 'public'})" if p.repo_id
         else "nothing (stays local)"),
        ("Monitoring", tracking),
        ("Author", c.author_name or "(none)"),
        ("Description", _short(c.model_description, 400)),
        ("License", license_text),
        ("Tags", ", ".join(c.tags) if c.tags else "(none)"),
        ("Usage example", _short(c.usage_examples[0]) if c.usage_examples else "(none)"),
        ("Limitations", _short(c.limitations)),
        ("Quantized variants", ", ".join(cfg.quantize) if cfg.quantize else "none"),
        ("Demo app", p.demo_space or "no"),
        ("Config file", output),
    ]
    return out


def table(cfg: SmolforgeConfig, hub: HubAccess, dataset_note: str | None, output: str):
    from rich.table import Table
    from rich.text import Text

    tbl = Table(title="smolforge init: summary", show_header=False, title_justify="left")
    tbl.add_column("setting", style="bold", no_wrap=True)
    tbl.add_column("value", overflow="fold")
    for key, value in rows(cfg, hub, dataset_note, output):
        tbl.add_row(key, Text(value))  # user text is shown as typed, never read as markup
    return tbl
