"""The summary shown before anything is written: every setting the wizard asks, one row each (rich table).

The rows follow the steps' lists of settings (`draft.STEPS`), titled by each setting's declaration,
so a setting the wizard asks is also a setting the summary shows.
"""

from __future__ import annotations

from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.config.fields import setting
from smolforge.config.loading import get_path
from smolforge.wizard.ask import shown
from smolforge.wizard.draft import STEPS, Draft

HIDDEN_WHEN_UNUSED = {  # rows that say nothing for this config
    "training.epochs": lambda c: c.training.max_steps > 0,
    "training.max_steps": lambda c: c.training.max_steps <= 0,
    "publish.private": lambda c: not c.publish.repo_id,
    "tracking.space_id": lambda c: not c.tracking.space_id,
}
LONG_TEXT = 400


def rows(cfg: SmolforgeConfig, draft: Draft, output: str) -> list[tuple[str, str]]:
    data = dump_dict(cfg)
    out = [("Hugging Face", draft.hub.describe()), ("Base model", cfg.model.name_or_path),
           ("Preset", cfg.preset or "custom")]
    for paths in STEPS:
        for path in paths:
            hide = HIDDEN_WHEN_UNUSED.get(path)
            if hide and hide(cfg):
                continue
            value = get_path(data, path)
            text = shown(value, LONG_TEXT if path == "card.model_description" else 90)
            if path == "data.name" and draft.dataset_note:
                text += f" ({draft.dataset_note})"
            if path == "card.license" and value == "other":
                text = f"other: {cfg.card.license_name} ({cfg.card.license_link})"
            out.append((setting(path).title, text))
    out.append(("Config file", output))
    return out


def table(cfg: SmolforgeConfig, draft: Draft, output: str):
    from rich.table import Table
    from rich.text import Text

    tbl = Table(title="smolforge init: summary", show_header=False, title_justify="left")
    tbl.add_column("setting", style="bold", no_wrap=True)
    tbl.add_column("value", overflow="fold")
    for key, value in rows(cfg, draft, output):
        tbl.add_row(key, Text(value))  # user text is shown as typed, never read as markup
    return tbl
