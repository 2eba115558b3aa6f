"""Write model/README.md for a run, refusing to overwrite a card edited by hand.

smolforge records the SHA-256 of every card it writes in results.json (`card.sha256`); if the file
on disk no longer matches, someone edited it, and only `--force` replaces it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from smolforge.card.context import LOSS_PLOT
from smolforge.card.defaults import names
from smolforge.card.plot import write_loss_plot
from smolforge.card.render import render_card, sha256
from smolforge.config import SmolforgeConfig
from smolforge.errors import SmolforgeError
from smolforge.runfolder import RunFolder, atomic_write_text


def hand_edited(run: RunFolder, target: Path) -> bool:
    if not target.exists():
        return False
    written = (run.read_results().get("card") or {}).get("sha256")
    current = sha256(target.read_text(encoding="utf-8"))
    return written is None or current != written


def write_card(run: RunFolder, cfg: SmolforgeConfig, *, username: str | None = None, output: Path | None = None,
               force: bool = False) -> Path:
    results = run.read_results()
    target = output or run.card_path
    is_run_card = target.resolve() == run.card_path.resolve()
    if is_run_card and not force and hand_edited(run, target):
        raise SmolforgeError(
            f"{target} was edited by hand since smolforge wrote it, so it was not overwritten. "
            "Keep your edits (publish as is with `smolforge publish`), write the new card elsewhere with "
            "--output PATH, or replace it with --force."
        )
    plot = run.model_dir / LOSS_PLOT
    if results.get("log_history") and not plot.exists() and run.model_dir.exists():
        write_loss_plot(results, plot, title=names(cfg, results.get("experiment_name"), run.root.name, username)[2])
    card = render_card(run, cfg, results, username=username)
    text = str(card)
    atomic_write_text(target, text)
    if is_run_card:
        run.update_results(card={"sha256": sha256(text), "path": "model/README.md"})
    return target


def refresh_card(run: RunFolder, cfg: SmolforgeConfig, console, username: str | None) -> None:
    """Rewrite the card after a stage added facts to results.json, unless it was edited by hand."""
    if hand_edited(run, run.card_path):
        console.print(f"{run.card_path} was edited by hand, so it was not rewritten; include the new results with "
                      f"`smolforge card {shlex.quote(str(run.root))} --force` (this replaces your edits).",
                      markup=False)
        return
    card = write_card(run, cfg, username=username, force=True)
    console.print(f"Model card updated: {card}", markup=False)
