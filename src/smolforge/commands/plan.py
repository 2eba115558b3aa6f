"""`smolforge plan CONFIG|--preset P [--gpu NAME] [--calibrate] [--json]`: the memory and time a run needs,
before any weights load, and what would fit when it does not fit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from smolforge.config.loading import load_config
from smolforge.console import make_console, print_rows
from smolforge.errors import SmolforgeError
from smolforge.plan import calibrate
from smolforge.plan.configured import plan_config
from smolforge.plan.estimate import Estimate, estimate
from smolforge.plan.gpus import lookup
from smolforge.plan.report import record, table_rows


def plan_command(config: Path | None, preset: str | None, sets: list[str], gpu: str | None, calibrate_now: bool,
                 as_json: bool, console) -> Estimate:
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
    if calibrate_now and cfg.training.method == "grpo":
        raise SmolforgeError("--calibrate measures a few training steps of SFT or DPO; a GRPO step's time is mostly "
                             "sampling, which the plan prices from the model's size and the device's measured matmul "
                             "rate and memory bandwidth instead. Drop --calibrate for a GRPO config.")
    est, inputs, data, key = plan_config(cfg, gpu, say, use_stored=not calibrate_now)
    target, model = est.target, est.model
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
    print_rows(console, table_rows(est), "smolforge plan")
    return est
