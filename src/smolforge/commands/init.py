"""`smolforge init`: set up a run (the wizard, or --yes defaults) and write one YAML file; when the user chose
"write and start training now", start it as `smolforge run FILE --yes` would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smolforge.commands.run import RunRequest, run_command, token_for_this_run
from smolforge.wizard.main import init_config


def init_command(output: Path, *, preset: str | None, flags: dict[str, Any], sets: list[str], yes: bool,
                 force: bool, console) -> None:
    outcome = init_config(output, preset=preset, flags=flags, sets=sets, yes=yes, force=force, console=console)
    if outcome.start_run:
        token_for_this_run(outcome.token)
        run_command(RunRequest(config=outcome.path, yes=True, argv=["run", str(outcome.path), "--yes"]), console)
