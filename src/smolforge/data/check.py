"""The data as training would see it, without training: what `smolforge data check` prints and the web UI's data
preview shows. The same preparation `run` does before it trains (read, detect the format, normalise, de-duplicate,
split, the template-survival check and the token lengths with the model's tokenizer); a row the chat template
would lose content of stops it as it stops `run` (data.on_template_loss)."""

from __future__ import annotations

from typing import Any

from smolforge import processenv
from smolforge.config import SmolforgeConfig
from smolforge.data.lengths import precheck
from smolforge.data.prepare import drop_report, prepare
from smolforge.data.report import summary_lines
from smolforge.data.sources import check_source
from smolforge.modelio import check_model_name


def check_data(cfg: SmolforgeConfig, console) -> tuple[dict[str, Any], list[str]]:
    """(the data report, its lines for a person: rows kept and dropped by reason, tokens, modes, tool calls)."""
    check_model_name(cfg)
    check_source(cfg.data)
    processenv.prepare(cfg, console)
    data = prepare(cfg.data, cfg.training.method)
    precheck(cfg, data)
    report = data.stats["report"]
    drops = [line for line in drop_report(data.stats) if not line.startswith("removed ")]
    return report, [*summary_lines(report), *drops]
