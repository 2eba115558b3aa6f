"""`smolforge card RUN_DIR [flags]`: the card of a finished run, written offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smolforge.card.writer import write_card
from smolforge.commands.finished import open_finished
from smolforge.credentials import cached_username


def card_command(run_dir: Path, flags: dict[str, Any], console, *, output: Path | None = None,
                 force: bool = False) -> Path:
    """The card of a finished run; the flags given are remembered in the run's overrides (config.yaml stays the
    record of what was trained)."""
    done = open_finished(run_dir, "card", flags)
    path = write_card(done.run, done.cfg, username=cached_username(), output=output, force=force)
    if output is None and done.changes:
        done.run.write_overrides(done.changes)
    console.print(f"Model card written: {path}", markup=False)
    return path
