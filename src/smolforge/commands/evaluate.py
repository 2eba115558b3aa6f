"""`smolforge evaluate RUN_DIR [--tasks ...]`: the fine-tune against its base on benchmarks, then the card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smolforge import processenv
from smolforge.card.writer import refresh_card
from smolforge.commands.finished import logged, open_finished
from smolforge.credentials import cached_username
from smolforge.evaluation.stage import check_tasks, evaluate_run


def evaluate_command(run_dir: Path, flags: dict[str, Any], console) -> None:
    """The run's evaluation settings with the flags on top, recorded in the run's overrides; then the card is
    rewritten with the results."""
    done = open_finished(run_dir, "evaluate", flags)
    processenv.prepare(done.cfg, console)
    resolver = check_tasks(done.cfg)  # bad input fails before the log file exists
    with logged(done.run, "evaluate"):
        evaluate_run(done.run, done.cfg, console, resolver)
        if done.changes:
            done.run.write_overrides(done.changes)
        refresh_card(done.run, done.cfg, console, cached_username())
