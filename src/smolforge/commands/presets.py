"""`smolforge presets`: each preset's key values, read from the same validated config that trains.

Names are never cut; a column whose value is the same for every preset is left out of the table
and said once below it, so the table fits a normal terminal.
"""

from __future__ import annotations

from smolforge import presets
from smolforge.config.loading import load_config


def _row(name: str) -> dict[str, str]:
    c = load_config(preset=name)
    t = c.training
    data = c.data.name + (f" [{c.data.config}]" if c.data.config else "") + \
        (f" ({c.data.max_samples:,} samples)" if c.data.max_samples else "")
    return {
        "preset": name, "model": c.model.name_or_path,
        "method": f"{t.method.upper()} {t.finetune}" + (f" r={t.lora.r}" if t.adapters else ""),
        "data": data, "batch x accum": f"{t.batch_size} x {t.gradient_accumulation_steps}",
        "lr": f"{t.learning_rate:g}", "max length": str(t.max_length),
        "precision": "auto (bf16 GPU / fp32 CPU)" if t.precision == "auto" else t.precision,
    }


def presets_command(console) -> None:
    from rich.table import Table

    rows = [_row(n) for n in presets.names()]
    columns = list(rows[0])
    same = [c for c in columns[1:] if len({r[c] for r in rows}) == 1]
    table = Table(title="smolforge presets")
    for col in columns:
        if col not in same:
            table.add_column(col, no_wrap=col == "preset", overflow="fold")
    for r in rows:
        table.add_row(*(r[c] for c in columns if c not in same))
    console.print(table)
    for col in same:
        console.print(f"All presets: {col} = {rows[0][col]}", markup=False)
    for name in presets.names():
        console.print(f"  {name}: {presets.description(name)}", markup=False)
