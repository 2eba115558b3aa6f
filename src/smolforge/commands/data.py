"""`smolforge data check CONFIG|--preset P [--set ...] [--json]`: the data as training would see it, without training.

The same preparation `run` does before it trains (read, detect the format, normalise, de-duplicate, split, the
template-survival check and the token lengths with the model's tokenizer), then the data report: rows kept and
dropped by reason, tokens with and without loss, reasoning modes, tool-calling rows, the longest rows. A row the
chat template would lose content of stops it as it stops `run` (data.on_template_loss), exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from smolforge.config.loading import load_config
from smolforge.console import make_console
from smolforge.data.check import check_data
from smolforge.errors import SmolforgeError


def data_check_command(config: Path | None, preset: str | None, sets: list[str], as_json: bool, console) -> None:
    if config is None and preset is None:
        raise SmolforgeError("smolforge data check needs a config: give a YAML file or --preset, e.g. "
                             "`smolforge data check --preset tiny` or `smolforge data check smolforge.yaml`.")
    cfg = load_config(config, preset, sets)
    say = make_console(stderr=True) if as_json else console  # with --json, stdout holds only the JSON
    report, lines = check_data(cfg, say)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)
