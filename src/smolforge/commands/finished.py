"""The opening the commands that work on a finished run share (card, evaluate, quantize, publish, demo): the run
folder must hold a trained model, the command's flags are validated on top of the run's config, and the
command's own log file is attached while it works."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smolforge import logs
from smolforge.config import SmolforgeConfig
from smolforge.config.loading import deep_merge, nest, validate
from smolforge.runfolder import RunFolder


@dataclass
class Finished:
    """A finished run and the config a command works with: the run's own, with the command's flags on top."""

    run: RunFolder
    cfg: SmolforgeConfig
    changes: dict[str, Any] = field(default_factory=dict)  # the flags as config sections, to remember in overrides


def open_finished(run_dir: Path, command: str, flags: dict[str, Any] | None = None) -> Finished:
    """The finished run at `run_dir`; `flags` (setting path -> value) are checked as `smolforge <command>`'s."""
    run = RunFolder.existing(run_dir).require_finished()
    changes = nest(flags or {})
    if not changes:
        return Finished(run, run.read_config())
    cfg = validate(deep_merge(run.read_config_data(), changes), f"the {command} options",
                   f"Fix the flag's value (see `smolforge {command} --help`).")
    return Finished(run, cfg, changes)


@contextmanager
def logged(run: RunFolder, command: str) -> Iterator[None]:
    """logs/<command>.log holds what the command logs while it runs."""
    handler = logs.attach_file(run.logs_dir, f"{command}.log")
    try:
        yield
    finally:
        logs.detach(handler)
