"""`smolforge plan` at the terminal, and the plan `smolforge run` shows before it asks to start.

Both read the data the way the run reads it (`data.prepare` + `data.precheck`: the chat-template token
lengths, with only the tokenizer). When the data cannot be read here (a Hub dataset offline, a tokenizer
that is not cached) the plan still gives memory for full micro-batches and says why; a local data file
that is broken is an error, as it would be for the run.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Any

from smolforge.config import SmolforgeConfig
from smolforge.errors import DataError, SmolforgeError
from smolforge.plan.estimate import Estimate, PlanInputs, estimate
from smolforge.plan.target import Target, current_rss, detect, named


def process_baseline() -> int:
    """Resident bytes of this process with the training libraries loaded: what a CPU run starts training from."""
    import peft  # noqa: F401 - loaded by training; its memory is part of the baseline
    import trl  # noqa: F401

    gc.collect()
    return current_rss()


def inputs_from_data(cfg: SmolforgeConfig, data) -> PlanInputs:
    """The plan's inputs from prepared, length-checked data (what `smolforge run` has before it confirms)."""
    return PlanInputs(cfg=cfg, train_lengths=data.lengths.get("train"), eval_lengths=data.lengths.get("eval"),
                      baseline_rss=process_baseline())


def read_inputs(cfg: SmolforgeConfig, console) -> tuple[PlanInputs, Any]:
    """Prepare the data as the run would; (inputs, data), or inputs without lengths and why."""
    from smolforge import processenv
    from smolforge.data import is_local_source, precheck, prepare

    try:
        data = prepare(cfg.data, cfg.training.method)
        precheck(cfg, data)
    except DataError as e:
        if is_local_source(cfg.data.name):
            raise  # the run would stop on it too
        note = f"{cfg.data.name} is not in the local cache and the Hub is offline" if processenv.offline_by_env() \
            else f"{cfg.data.name} cannot be read: {_first_sentence(str(e))}"
    except SmolforgeError as e:  # the tokenizer (a Hub model offline): lengths need it
        note = f"no tokenizer to measure the rows with: {_first_sentence(str(e))}"
    else:
        return inputs_from_data(cfg, data), data
    console.print(f"Data: {note}. Memory is planned for full micro-batches.", markup=False)
    return PlanInputs(cfg=cfg, train_lengths=None, eval_lengths=None, data_note=note,
                      baseline_rss=process_baseline()), None


def _first_sentence(text: str, limit: int = 160) -> str:
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 3] + "..."


def for_run(cfg: SmolforgeConfig, data) -> tuple[Estimate, Estimate | None]:
    """The plan `smolforge run` shows, calibrated when `smolforge plan --calibrate` measured this config on this
    machine; and then also the formula's own estimate (results.json keeps both against the measurement)."""
    from smolforge.plan import calibrate

    target = detect(cfg)
    inputs = inputs_from_data(cfg, data)
    formula = estimate(inputs, target)
    stored = calibrate.load(calibrate.calibration_key(cfg, target.label))
    if stored is None:
        return formula, None
    return estimate(inputs, target, stored, model=formula.model), formula


def plan_command(config: Path | None, preset: str | None, sets: list[str], gpu: str | None, calibrate_now: bool,
                 as_json: bool, console) -> Estimate:
    from smolforge import processenv
    from smolforge.config.loading import load_config
    from smolforge.console import make_console
    from smolforge.plan import calibrate
    from smolforge.plan.gpus import lookup
    from smolforge.plan.model import read_model
    from smolforge.plan.report import record, table_rows

    if config is None and preset is None:
        raise SmolforgeError("smolforge plan needs a config: give a YAML file or --preset, e.g. "
                             "`smolforge plan --preset smollm3-sft --gpu h100`.")
    if gpu is not None:
        lookup(gpu)  # an unknown name fails before anything loads
        if calibrate_now:
            raise SmolforgeError("--calibrate measures this machine, so it cannot be combined with --gpu. Drop "
                                 "--gpu (on the GPU itself the detected device is used), or drop --calibrate.")
    cfg = load_config(config, preset, sets)
    say = make_console(stderr=True) if as_json else console  # with --json, stdout holds only the JSON
    processenv.prepare(cfg, say)
    target: Target = named(cfg, gpu) if gpu else detect(cfg)
    model = read_model(cfg, target.dtype_name)  # config.json only: an uncached model offline stops here
    inputs, data = read_inputs(cfg, say)
    key = calibrate.calibration_key(cfg, target.label)
    stored = calibrate.load(key) if target.detected and not calibrate_now else None
    est = estimate(inputs, target, stored, model=model)
    if calibrate_now:
        if data is None:
            raise SmolforgeError("--calibrate runs real training steps, so it needs the data, which cannot be read "
                                 f"here ({inputs.data_note}).")
        processes = calibrate.CALIBRATION_PROCESSES if target.kind == "cpu" else 1
        say.print(
            f"Calibrating: real training steps on {target.label} (at least {calibrate.CALIBRATION_STEPS}, over "
            f"{calibrate.CALIBRATION_SECONDS:.0f} s or more, in {processes} process{'es' if processes > 1 else ''})...",
            markup=False)
        cal = calibrate.calibrate(cfg, data, est, key)
        calibrate.save(cal)
        formula, est = est, estimate(inputs, target, cal, model=model)
    else:
        formula = None
    if as_json:
        out = record(est)
        if formula is not None:
            out["formula"] = record(formula)  # the same plan before the measured steps corrected it
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return est
    print_table(console, table_rows(est), "smolforge plan")
    return est


def print_table(console, rows: list[tuple[str, str]], title: str) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, Text(value))
    console.print(table)
